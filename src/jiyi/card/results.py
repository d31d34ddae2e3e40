"""The measured parts of a model card: test metrics with their intervals, per-label and
per-slice tables, calibration, the bias probe, the compression report."""

from __future__ import annotations

from typing import Any

from jiyi.card.facts import CardFacts


def fmt(value: Any) -> str:
    """A metric as the card prints it: 4 decimals; None as undefined."""
    if value is None:
        return "undefined"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def setting(value: Any) -> str:
    """A config.yaml value as the card shows it: None as unset, booleans as YAML writes them."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    return f"`{value}`" if isinstance(value, str) else str(value)


def rate_intervals(
    facts: CardFacts, metrics: dict[str, Any]
) -> dict[str, tuple[float, float, int]]:
    """95% Wilson intervals of the task's rates (`TaskSpec.rates`): {metric: (lo, hi, n)}."""
    from jiyi.evaluate import wilson_interval

    out = {}
    for metric, count in facts.spec.rates:
        value, n = metrics.get(metric), metrics.get(count)
        if isinstance(value, int | float) and isinstance(n, int) and n > 0:
            lo, hi = wilson_interval(round(value * n), n)
            out[metric] = (lo, hi, n)
    return out


def results_section(facts: CardFacts, results: list[dict]) -> str:
    lines = ["## Results", ""]
    if facts.compressed:
        if not results:
            return "## Results\n\nNot measured (`jiyi compress --no-report`, or no "\
                "classification head to measure).\n"  # fmt: skip
        report = facts.compress_report or {}
        lines += [f"Measured by `jiyi compress` on `{report.get('data')}` (compress.json); the "
                  "original beside it under Compression.", "",
                  "| metric | value |", "| --- | --- |"]  # fmt: skip
        lines += [f"| {m['type']} | {fmt(m['value'])} |" for m in results[0]["metrics"]]
        return "\n".join(lines) + "\n"
    if facts.evaluation is None and facts.test is None:
        return "## Results\n\nNo test evaluation: the run was trained without --test and " \
            "`jiyi evaluate` has not been run on it.\n"  # fmt: skip
    blocks: list[tuple[str, dict[str, Any]]] = []
    if facts.evaluation is not None:
        where = f"`{facts.eval_data}`" if facts.eval_data else "data this card did not see named"
        blocks.append((f"On {where} (eval/metrics.json)", facts.evaluation))
    if facts.test and facts.eval_data != facts.config.get("test"):
        blocks.append((f"On the --test file `{facts.config.get('test')}` at the end of "
                       "training (metrics.jsonl)", facts.test))  # fmt: skip
    for title, metrics in blocks:
        lines += [f"{title}:", "", *metric_table(facts, metrics), ""]
        lines += per_label_table(metrics)
        lines += slices_lines(metrics)
    return "\n".join(lines).rstrip("\n") + "\n"


def metric_table(facts: CardFacts, metrics: dict[str, Any]) -> list[str]:
    """The task's metrics with their 95% intervals where the run has them."""
    intervals = rate_intervals(facts, metrics)
    rows = ["| metric | value | 95% interval |", "| --- | --- | --- |"]
    for name in facts.spec.metrics:
        if name not in metrics:
            continue
        ci = intervals.get(name)
        shown = f"{ci[0]:.4f} – {ci[1]:.4f} (Wilson, n = {ci[2]})" if ci else "—"
        rows.append(f"| {name} | {fmt(metrics[name])} | {shown} |")
    counts = {
        k: v for k, v in metrics.items() if k == "n" or (k.startswith("n_") or k.endswith("_n"))
    }
    rows += [
        "",
        "Counts: " + ", ".join(f"{k} = {v}" for k, v in counts.items() if isinstance(v, int)),
    ]
    if not intervals:
        rows.append("No interval: these metrics are not shares of independent items, and the "
                    "run holds no resampled estimate of them.")  # fmt: skip
    return rows


def per_label_table(metrics: dict[str, Any]) -> list[str]:
    """per_class (classification) or per_type (NER entity types): precision, recall, f1, support."""
    table = metrics.get("per_class") or metrics.get("per_type")
    if not isinstance(table, dict) or not table:
        return []
    rows = ["| label | precision | recall | f1 | support |", "| --- | --- | --- | --- | --- |"]
    for label, m in table.items():
        cells = [fmt(m.get(k)) for k in ("precision", "recall", "f1")]
        rows.append(f"| {label} | {' | '.join(cells)} | {m.get('support')} |")
    return [*rows, ""]


def slices_lines(metrics: dict[str, Any]) -> list[str]:
    """`jiyi evaluate --slice-by`: accuracy and f1_macro per slice with their 95% intervals."""
    lines: list[str] = []
    for column, slices in (metrics.get("slices") or {}).items():
        lines += [f"Slices by `{column}` (`jiyi evaluate --slice-by`; 95% intervals: Wilson for "
                  "accuracy, bootstrap for f1_macro; * fewer rows than the small-slice bound):",
                  "", "| slice | n | accuracy | f1_macro |", "| --- | --- | --- | --- |"]  # fmt: skip
        for value, s in slices.items():
            cells = []
            for name in ("accuracy", "f1_macro"):
                ci = (s.get("ci") or {}).get(name)
                cells.append(fmt(s.get(name)) + (f" ({ci[0]:.3f} – {ci[1]:.3f})" if ci else ""))
            star = "*" if s.get("small") else ""
            lines.append(f"| {value}{star} | {s.get('n')} | {' | '.join(cells)} |")
        gap = (metrics.get("slice_gaps") or {}).get(column, {}).get("accuracy")
        if gap:
            lines.append(f"\nAccuracy gap: {gap['gap']:.4f} (best `{gap['best']}`, worst "
                         f"`{gap['worst']}`).")  # fmt: skip
        lines.append("")
    return lines


def calibration_section(facts: CardFacts) -> str:
    m = facts.evaluation or {}
    record = facts.meta.get("calibration")
    if "ece" not in m and "log_loss" not in m and not isinstance(record, dict):
        return ""
    lines = ["## Calibration", ""]
    if "ece" in m or "log_loss" in m:
        lines.append(f"On the evaluation above: expected calibration error {fmt(m.get('ece'))} "
                     f"(15 equal-width confidence bins), log loss {fmt(m.get('log_loss'))}.")  # fmt: skip
        before = (m.get("calibration") or {}).get("before")
        if isinstance(before, dict):  # metrics.json of calibrated probabilities
            lines.append(f"These are the calibrated probabilities ({m['calibration'].get('method')}); "
                         f"the model's own gave ECE {fmt(before.get('ece'))}, log loss "
                         f"{fmt(before.get('log_loss'))} on the same data.")  # fmt: skip
        if facts.run_dir and (facts.folder / "eval" / "reliability.png").is_file():
            lines.append("Reliability diagram: `eval/reliability.png`.")
    if isinstance(record, dict):
        lines += ["", "Calibration stored with the model (`model/jiyi.json`):", ""]
        lines += [f"- {k}: {fmt(v)}" for k, v in record.items() if not isinstance(v, dict | list)]
    else:
        lines.append("The probabilities are the model's own (no calibration is stored with it).")
    return "\n".join(lines) + "\n"


def bias_section(facts: CardFacts) -> str:
    b = facts.bias
    if not b:
        return ""
    ci = b.get("flip_rate_ci95") or [None, None]
    lines = ["## Bias probe (`jiyi bias`)", ""]
    lines.append(f"{b.get('n_affected')} of {b.get('n_texts')} texts of `{b.get('data')}` hold a "
                 f"term of `{b.get('swap_file')}` ({b.get('direction')}). Swapping it flipped the "
                 f"label of {b.get('n_flipped')} (flip rate {fmt(b.get('flip_rate'))}, 95% Wilson "
                 f"{fmt(ci[0])} – {fmt(ci[1])}); mean |change| of the predicted label's "
                 f"probability {fmt(b.get('mean_abs_change'))}.")  # fmt: skip
    groups = b.get("by_group") or {}
    if groups:
        lines += ["", "| group | n | flipped | flip rate (95%) | mean change |",
                  "| --- | --- | --- | --- | --- |"]  # fmt: skip
        for g, s in groups.items():
            lo, hi = s.get("flip_rate_ci95") or [None, None]
            lines.append(f"| {g} | {s['n']} | {s['n_flipped']} | {fmt(s['flip_rate'])} "
                         f"({fmt(lo)} – {fmt(hi)}) | {fmt(s['mean_change'])} |")  # fmt: skip
    lines += ["", "Details: `eval/bias/bias.json`, `eval/bias/bias.html`."]
    return "\n".join(lines) + "\n"


def compression_section(facts: CardFacts) -> str:
    if not facts.compressed:
        return ""
    record = facts.compressed
    lines = ["## Compression (`jiyi compress`)", ""]
    origin = record.get("origin") or {}
    lines.append(f"From `{origin.get('path')}` (weights sha256 `{origin.get('weights_sha256')}`), "
                 f"format `{facts.meta.get('format')}`. Steps:")  # fmt: skip
    for step in record.get("chain") or []:
        params = ", ".join(f"{k} {v}" for k, v in step.items() if k != "method"
                           and not isinstance(v, dict | list))  # fmt: skip
        lines.append(f"- {step.get('method')}" + (f": {params}" if params else ""))
    report = facts.compress_report or {}
    if report.get("table"):
        lines += ["", f"Measured on `{report.get('data')}`:", "", report["table"]]
        agree = report.get("agreement_with_original") or []
        if agree:
            lines.append(f"\nSame label as the original on {agree[-1]:.1%} of the texts.")
    return "\n".join(lines) + "\n"
