"""`jiyi audit MODEL --data FILE --output DIR`, as one workflow: read the labelled file, get
out-of-sample probabilities (k-fold), run confident learning on them, find texts that repeat
under other labels, write audit.jsonl, audit.html and summary.json (and the cleaned copy).

    1. read        the labelled rows (text, label, the line each came from)
    2. vectors     unit context vectors of every text from MODEL's encoder (a run's head dropped)
    3. predict     out-of-fold probabilities: logistic head on the vectors, or fine-tune per fold
    4. estimate    thresholds, confident joint, estimated joint, noise, suspects, ranking
    5. conflicts   equal or near-equal texts with different labels
    6. write       audit.jsonl (every row, suspects first), audit.html, summary.json, --write-clean
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.audit.confident import RANKINGS, ConfidentLearning, find_label_issues
from jiyi.audit.duplicates import ConflictPair, label_conflicts
from jiyi.errors import JiyiError

METHODS = ("logistic", "finetune")


@dataclass
class AuditOptions:
    """The settings of one audit (flags of `jiyi audit`)."""

    folds: int = 5
    seed: int = 0
    method: str = "logistic"
    ranking: str = "self_confidence"
    duplicate_threshold: float = 0.97
    pooling: str = "mean"
    layers: str = "-1"
    batch_size: int = 64
    max_length: int = 256
    show: int = 200  # rows of audit.html's worst-rows table
    train_args: list[str] = field(default_factory=list)

    def check(self) -> None:
        if self.method not in METHODS:
            raise JiyiError(f"--method {self.method!r}: choose {' or '.join(METHODS)}.")
        if self.ranking not in RANKINGS:
            raise JiyiError(f"--ranking {self.ranking!r}: choose one of {', '.join(RANKINGS)}.")
        if not self.duplicate_threshold > 0:
            raise JiyiError(
                f"--duplicate-threshold {self.duplicate_threshold}: a cosine in (0, 1], or "
                "above 1 (e.g. 2) to report exact duplicates only."
            )
        if self.folds < 2:
            raise JiyiError(f"--folds {self.folds}: cross-validation needs at least 2 folds.")


@dataclass
class LabelledRows:
    texts: list[str]
    labels: np.ndarray  # (N,) indices into names
    names: list[str]
    lines: list[int]  # the file line (CSV/TSV/JSONL) or 1-based row (Parquet) of each row
    skipped: int


def read_rows(
    data: str, text_column: str, label_column: str, on_bad_rows: str = "error"
) -> LabelledRows:
    """The labelled file as texts and label indices (names sorted as `jiyi train` sorts them)."""
    from jiyi.data.readers import label_list, read_examples

    try:
        result = read_examples(
            data, text_column=text_column, label_column=label_column, on_bad_rows=on_bad_rows
        )
    except JiyiError as e:
        message = str(e)
        if "--task multilabel" in message:  # jiyi train's advice; the audit has no such flag
            message = message.split("; for several labels")[0] + (
                ": jiyi audit checks single-label classification data (one label a row)"
            )
        raise JiyiError(f"--data {message}") from None
    names = label_list(result.examples, "classification")
    index = {name: i for i, name in enumerate(names)}
    labels = np.array([index[str(ex.label)] for ex in result.examples], dtype=np.int64)
    return LabelledRows(
        [ex.text for ex in result.examples],
        labels,
        names,
        [ex.line for ex in result.examples],
        len(result.skipped),
    )


def context_vectors(model: str, texts: Sequence[str], options: AuditOptions) -> np.ndarray:
    """(N, H) unit vectors of `texts` from MODEL's encoder (the model's query prompt, if any)."""
    from jiyi.inspect.embeddings import embed_texts, load_encoder

    encoder = load_encoder(model, "MODEL")
    return embed_texts(
        encoder,
        texts,
        pooling=options.pooling,
        layers=options.layers,
        normalize=True,
        batch_size=options.batch_size,
        max_length=options.max_length,
        prompt=encoder.prompt("query"),
    )


def audit_rows(
    rows: LabelledRows,
    probs: np.ndarray,
    vectors: np.ndarray | None,
    options: AuditOptions,
) -> tuple[ConfidentLearning, list[ConflictPair]]:
    """Steps 4-5 on rows whose out-of-sample `probs` are known (the benchmark calls this)."""
    found = find_label_issues(probs, rows.labels, options.ranking)
    conflicts = label_conflicts(rows.texts, rows.labels, vectors, options.duplicate_threshold)
    return found, conflicts


def row_records(
    rows: LabelledRows,
    probs: np.ndarray,
    found: ConfidentLearning,
    conflicts: list[ConflictPair],
) -> list[dict[str, Any]]:
    """One record per row, suspects first (worst first), then the others by score."""
    partners: dict[int, list[int]] = {}
    for pair in conflicts:
        partners.setdefault(pair.a, []).append(pair.b)
        partners.setdefault(pair.b, []).append(pair.a)
    out = []
    for rank, i in enumerate(found.order.tolist(), start=1):
        given, suggested = int(rows.labels[i]), int(found.suggested[i])
        reasons = []
        if found.suspected[i]:
            reasons.append(
                f"labelled {rows.names[given]!r} (p = {probs[i, given]:.3f}) but the held-out "
                f"model gives {rows.names[suggested]!r} p = {probs[i, suggested]:.3f}"
            )
        others = partners.get(i, [])
        if others:
            shown = ", ".join(
                f"line {rows.lines[j]} ({rows.names[int(rows.labels[j])]!r})" for j in others[:3]
            )
            more = f" and {len(others) - 3} more" if len(others) > 3 else ""
            reasons.append(f"same or near-same text labelled otherwise: {shown}{more}")
        out.append(
            {
                "rank": rank,
                "line": rows.lines[i],
                "row": i,
                "text": rows.texts[i],
                "label": rows.names[given],
                "suggested": rows.names[suggested],
                "score": round(float(found.score[i]), 6),
                "suspected": bool(found.suspected[i]),
                "conflicts": [rows.lines[j] for j in others],
                "reason": "; ".join(reasons),
            }
        )
    return out


def summarize(
    rows: LabelledRows,
    found: ConfidentLearning,
    conflicts: list[ConflictPair],
    fit: dict[str, Any],
    options: AuditOptions,
    model: str,
    data: str,
) -> dict[str, Any]:
    counts = np.bincount(rows.labels, minlength=len(rows.names))
    majority = float(counts.max() / max(counts.sum(), 1))
    warnings = []
    if fit["accuracy"] <= majority + 0.02:
        warnings.append(
            f"the held-out model is no better than always saying the commonest label "
            f"(accuracy {fit['accuracy']:.3f} vs {majority:.3f}): its probabilities cannot tell "
            "wrong labels from hard rows, so the suspects are not worth reviewing. Use a "
            "stronger MODEL (or --method finetune) or more data."
        )
    return {
        "model": model,
        "data": data,
        "rows": len(rows.texts),
        "skipped_rows": rows.skipped,
        "labels": rows.names,
        "label_counts": dict(zip(rows.names, counts.tolist(), strict=True)),
        "method": options.method,
        "folds": options.folds,
        "seed": options.seed,
        "ranking": options.ranking,
        "out_of_fold": fit,
        "suspected": int(found.suspected.sum()),
        "noise_rate": round(found.noise_rate, 4),
        "noise_per_class": {
            n: round(float(r), 4) for n, r in zip(rows.names, found.noise_per_class, strict=True)
        },
        "thresholds": {
            n: round(float(t), 4) for n, t in zip(rows.names, found.thresholds, strict=True)
        },
        "confident_joint": found.confident_joint.tolist(),
        "joint": np.round(found.joint, 6).tolist(),
        "conflicts": {
            "exact": sum(p.kind == "exact" for p in conflicts),
            "near": sum(p.kind == "near" for p in conflicts),
            "threshold": options.duplicate_threshold,
        },
        "warnings": warnings,
    }


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """What the terminal shows: suspects, noise, per-class noise, conflicts."""
    per_class = ", ".join(f"{n} {r:.1%}" for n, r in summary["noise_per_class"].items())
    fit = summary["out_of_fold"]
    c = summary["conflicts"]
    return [
        f"{summary['suspected']} of {summary['rows']} rows suspected of a wrong label "
        f"({summary['suspected'] / max(summary['rows'], 1):.1%}); estimated noise rate "
        f"{summary['noise_rate']:.1%} (per class: {per_class})",
        f"out-of-fold accuracy {fit['accuracy']:.4f} ({summary['folds']}-fold, "
        f"{summary['method']})",
        f"texts repeated under another label: {c['exact']} exact pairs, {c['near']} near "
        f"(cosine >= {c['threshold']})",
        *(f"warning: {w}" for w in summary["warnings"]),
    ]


def write_outputs(
    output: Path, records: list[dict[str, Any]], summary: dict[str, Any], show: int
) -> None:
    from jiyi.io import atomic_write_json, atomic_write_text
    from jiyi.render import page_template

    output.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write_text(output / "audit.jsonl", lines)
    atomic_write_json(output / "summary.json", summary)
    names = summary["labels"]
    worst = [r for r in records if r["suspected"]][:show]
    conflicted = [r for r in records if r["conflicts"] and not r["suspected"]][:show]
    html = page_template("audit.html", filters={"pct": lambda x: f"{x:.1%}"}).render(
        s=summary, names=names, worst=worst, conflicted=conflicted, show=show
    )
    atomic_write_text(output / "audit.html", html)


def run_audit(
    model: str,
    data: str,
    output: str | Path,
    options: AuditOptions,
    *,
    text_column: str = "text",
    label_column: str = "label",
    on_bad_rows: str = "error",
    write_clean_to: str | None = None,
) -> dict[str, Any]:
    """Steps 1-6 of the module docstring; returns the summary (also in summary.json)."""
    from jiyi.audit.clean import check_clean_target, write_clean
    from jiyi.audit.crossval import check_folds, logistic_oof
    from jiyi.io import output_folder

    options.check()
    out = output_folder(output)
    if write_clean_to:
        write_clean_to = check_clean_target(data, write_clean_to)
    if options.method == "finetune":  # refuse bad --train-args before any work
        from jiyi.audit.finetune import fold_config

        fold_config(model, Path("fold.csv"), out / "fold", options.seed, options.train_args)
    rows = read_rows(data, text_column, label_column, on_bad_rows)  # 1. read
    check_folds(rows.labels, rows.names, options.folds)
    vectors = context_vectors(model, rows.texts, options)  # 2. vectors
    if options.method == "logistic":  # 3. predict
        probs, fit = logistic_oof(
            vectors, rows.labels, len(rows.names), folds=options.folds, seed=options.seed
        )
    else:
        from jiyi.audit.finetune import finetune_oof

        probs, fit = finetune_oof(
            model,
            rows.texts,
            rows.labels,
            rows.names,
            folds=options.folds,
            seed=options.seed,
            train_args=options.train_args,
            work_dir=out.parent if out.parent.exists() else None,
        )
    found, conflicts = audit_rows(rows, probs, vectors, options)  # 4-5.
    records = row_records(rows, probs, found, conflicts)
    summary = summarize(rows, found, conflicts, fit, options, model, data)
    if write_clean_to:  # 6. write
        drop = {rows.lines[i] for i in np.flatnonzero(found.suspected)}
        summary["clean"] = {"file": write_clean_to, "rows": write_clean(data, write_clean_to, drop)}
    write_outputs(out, records, summary, options.show)
    return summary
