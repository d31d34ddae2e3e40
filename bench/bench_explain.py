"""`jiyi explain` on MiniLM: (a) how long integrated gradients take on one 64-token text, and
(b) whether the attributions are faithful on the Rotten Tomatoes test split (deletion test).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_explain.py                     # (a) only
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_explain.py --run runs/rt --n 200   # (a) + (b)

(a) uses `--run` when given, else MiniLM with a fresh 2-label head (timing does not depend on
the head's weights). It times `--repeats` calls after a warm-up (best and median): IG alone
(50 steps, internal batch 16 and 50) and the whole `explain_text` (attention, rollout,
gradient × input, IG and the deletion test). Target: IG under 2 s.
(b) needs a fine-tuned run (`--run`): the first `--n` texts of a seeded shuffle of the test
split (`--data`, else exported with `jiyi data export rotten-tomatoes`), each explained for its
predicted label; AOPC per method against random deletion, as a Markdown table and JSON
(OUTPUT/explain.json, default bench/results/explain/, beside OUTPUT/explain/: the verb's own
output).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import cpu_model, md_table, read_csv, read_json, usable_cores, versions, write_json

TEXT = (
    "an intelligent, beautifully acted drama whose quiet second half never quite earns the "
    "big emotional payoff it reaches for, though the leads are terrific and the score is lovely"
)


def text_of_tokens(tokenizer: Any, n_tokens: int) -> str:
    """A review-like text of exactly `n_tokens` tokens with [CLS] and [SEP]."""
    ids: list[int] = []
    while len(ids) < n_tokens - 2:
        ids += tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    text = tokenizer.decode(ids[: n_tokens - 2])
    assert len(tokenizer(text)["input_ids"]) == n_tokens, "decode/encode round trip changed length"
    return text


def timed_runs(fn: Any, repeats: int) -> dict[str, Any]:
    """Seconds of `repeats` calls after a warm-up: best (least disturbed by other load), median."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"best": min(times), "median": statistics.median(times), "times": times}


def load_classifier(run: str | None, tmp: Path) -> Any:
    import jiyi
    from jiyi.io import atomic_write_json
    from jiyi.models import load_for_classification, resolve_model, save_model

    if run:
        return jiyi.load(run)
    model, tokenizer = load_for_classification(resolve_model("minilm"), ["rotten", "fresh"])
    save_model(model, tokenizer, tmp / "fresh")
    atomic_write_json(tmp / "fresh" / "jiyi.json", {"task": "classification", "max_length": 128})
    return jiyi.load(tmp / "fresh")


def time_ig(clf: Any, repeats: int) -> dict[str, Any]:
    import torch

    from jiyi.inspect.attention import frozen
    from jiyi.inspect.attribution import integrated_gradients, pad_baseline
    from jiyi.inspect.explain import explain_text

    text = text_of_tokens(clf.tokenizer, 64)
    ids = torch.tensor([clf.tokenizer(text)["input_ids"]])  # (1, 64)
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[0, [0, -1]] = True
    baseline = pad_baseline(ids, special, clf.tokenizer.pad_token_id)
    result: dict[str, Any] = {
        "tokens": int(ids.shape[1]),
        "steps": 50,
        "threads": torch.get_num_threads(),
    }
    with frozen(clf.model):
        for ibs in (16, 50):
            result[f"ig_internal_batch_{ibs}"] = timed_runs(
                lambda ibs=ibs: integrated_gradients(
                    clf.model, ids, 1, baseline_ids=baseline, n_steps=50, internal_batch_size=ibs
                ),
                repeats,
            )
    result["explain_text"] = timed_runs(lambda: explain_text(clf, text, n_steps=50), repeats)
    result["target_s"] = 2.0
    result["meets_target"] = result["ig_internal_batch_16"]["best"] < 2.0
    return result


def faithfulness(run: str, data: str | None, n: int, seed: int, out: Path) -> dict[str, Any]:
    from jiyi.inspect.explain import write_explanations

    if data is None:
        from jiyi.data.adapters import export_dataset

        data = str(export_dataset("rotten-tomatoes", out / "data")["test"][0])
    rows = read_csv(data)
    random.Random(seed).shuffle(rows)
    texts = [r["text"] for r in rows[:n]]
    start = time.perf_counter()
    paths = write_explanations(
        run,
        texts,
        out / "explain",
        n_steps=50,
        max_texts=n,
        faithfulness=True,
        progress=lambda done, total: print(f"\r{done}/{total}", end="", file=sys.stderr),
    )
    print(file=sys.stderr)
    summary = json.loads(paths["faithfulness.json"].read_text(encoding="utf-8"))
    summary["seconds"] = time.perf_counter() - start
    summary["data"] = data
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run", help="a fine-tuned run directory (needed for the faithfulness part)"
    )
    parser.add_argument("--data", help="labelled test CSV (default: export rotten-tomatoes)")
    parser.add_argument(
        "--n", type=int, default=200, help="texts for the deletion test (default 200)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the text sample (default 0)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (default 7)")
    parser.add_argument("--skip-timing", action="store_true", help="only the faithfulness part")
    parser.add_argument(
        "--output",
        default="bench/results/explain",
        help="folder for explain.json (default bench/results/explain)",
    )
    args = parser.parse_args()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "machine": {"cpu": cpu_model(), "cores": usable_cores(), **versions()},
        "run": args.run,
    }

    if not args.skip_timing:
        with tempfile.TemporaryDirectory() as tmp:
            clf = load_classifier(args.run, Path(tmp))
            report["timing"] = t = time_ig(clf, args.repeats)
        print(
            f"\n## IG timing: one {t['tokens']}-token text, MiniLM, 50 steps, {t['threads']} threads\n"
        )
        timings = [
            ["IG, internal batch 16", t["ig_internal_batch_16"], "< 2 s"],
            ["IG, internal batch 50", t["ig_internal_batch_50"], ""],
            ["explain_text: all four methods + deletion test", t["explain_text"], ""],
        ]
        print(
            md_table(
                ["what", "best of runs (s)", "median (s)", "target"],
                [
                    [name, f"{r['best']:.3f}", f"{r['median']:.3f}", goal]
                    for name, r, goal in timings
                ],
            )
        )

    if args.run:
        report["faithfulness"] = f = faithfulness(args.run, args.data, args.n, args.seed, out)
        print(f"\n## Deletion test (AOPC), {f['n_texts']} Rotten Tomatoes test texts\n")
        rows = [
            [name, f"{m['aopc']:.4f}", f"{m['random_aopc']:.4f}",
             f"{m['margin']:+.4f} ± {m['margin_stderr'] or 0:.4f}", f"{100 * m['win_rate']:.0f}%"]
            for name, m in f["methods"].items()
        ]  # fmt: skip
        print(md_table(["method", "AOPC", "random AOPC", "margin ± s.e.", "beats random"], rows))
    write_json(out / "explain.json", report)
    print(f"\nwritten: {out / 'explain.json'}", file=sys.stderr)
    return 0


# --- RESULTS.md --------------------------------------------------------------------------------


def render_section(folder: Path) -> str:
    """This benchmark's section of RESULTS.md (IG timing, deletion test) from FOLDER/explain.json;
    "" when it has not run."""
    r = read_json(folder / "explain.json")
    if r is None:
        return ""
    lines = ["## Inspection: `jiyi explain` (bench/bench_explain.py)\n"]
    t = r.get("timing")
    if t:
        lines += [
            f"One {t['tokens']}-token text, the benchmark's MiniLM run, integrated gradients with "
            f"{t['steps']} steps, {t['threads']} threads; best and median of the timed runs.\n",
            "| what | best (s) | median (s) |",
            "| --- | ---: | ---: |",
        ]
        for key, name in (
            ("ig_internal_batch_16", "IG, internal batch 16"),
            ("ig_internal_batch_50", "IG, internal batch 50"),
            ("explain_text", "everything for one text (4 methods + deletion test)"),
        ):
            lines.append(f"| {name} | {t[key]['best']:.2f} | {t[key]['median']:.2f} |")
        lines.append(f"\nTarget: IG under {t['target_s']:g} s for one 64-token text.\n")
    f = r.get("faithfulness")
    if f:
        lines += [
            f"Deletion test (AOPC over k = 1..K top-attributed tokens removed, against k random "
            f"tokens), {f['n_texts']} Rotten Tomatoes test texts:\n",
            "| method | AOPC | random AOPC | margin ± s.e. | beats random on |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, m in f["methods"].items():
            lines.append(
                f"| {name} | {m['aopc']:.4f} | {m['random_aopc']:.4f} | "
                f"{m['margin']:+.4f} ± {m['margin_stderr'] or 0:.4f} | {100 * m['win_rate']:.0f}% |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
