"""`jiyi compress` on MiniLM fine-tuned on Rotten Tomatoes: every method, measured side by side.

    python bench/bench_compress.py --run bench/results/runs/jiyi --output bench/results/compress

Each method runs through the CLI (`jiyi compress RUN --method M --no-report`); then one process
measures the original and every artifact one after another (`jiyi.compress.report.measure`:
size, parameters, test accuracy and macro-F1, p50/p95 latency of one 32-token text, batch-64
throughput, peak RSS), with 2 threads and again with 1 thread (ONNX Runtime's published BERT
int8 anchor is single-threaded). Writes OUTPUT/compress.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import JIYI, read_json

METHODS: dict[str, list[str]] = {
    "dynamic-int8": ["--method", "dynamic-int8"],
    "bf16": ["--method", "bf16"],
    "onnx": ["--method", "onnx"],
    "onnx-int8": ["--method", "onnx-int8"],
    "distill-3": ["--method", "distill", "--layers", "3", "--epochs", "3", "--lr", "1e-4"],
    "prune-0.3": ["--method", "prune-heads", "--ratio", "0.3", "--recover-epochs", "1"],
    "distill-3+onnx-int8": ["--method", "distill,onnx-int8", "--layers", "3", "--epochs", "3"],
}
TARGETS = {  # speed-up at batch 1, at batch 64, accuracy drop allowed (points), size share
    "onnx-int8": (2.0, 1.8, 1.0, 0.30),
    "distill-3": (1.8, 1.8, 2.0, None),
    "prune-0.3": (1.0, 1.0, 1.0, None),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", default="bench/results/runs/jiyi", help="the fine-tuned MiniLM run")
    p.add_argument("--output", default="bench/results/compress")
    p.add_argument("--only", help="comma list of " + ", ".join(METHODS))
    p.add_argument("--measure-only", action="store_true", help="reuse the artifacts in --output")
    p.add_argument("--threads", default="2,1", help="thread counts to measure with")
    args = p.parse_args(argv)
    out = Path(args.output)
    names = args.only.split(",") if args.only else list(METHODS)
    steps: dict[str, Any] = {}
    for name in names:
        folder = out / name
        if args.measure_only and (folder / "jiyi.json").is_file():
            continue
        cmd = [*JIYI, "compress", args.run, *METHODS[name], "--output", str(folder),
               "--overwrite", "--no-report"]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"`{shlex.join(cmd)}` failed:\n{proc.stderr[-3000:]}")
        steps[name] = {"command": shlex.join(cmd), "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{name}: {steps[name]['seconds']} s", file=sys.stderr, flush=True)

    from jiyi.compress.artifacts import model_dir_of
    from jiyi.compress.pipeline import report_data
    from jiyi.compress.report import measure, table

    source = model_dir_of(args.run)
    data, texts, gold = report_data(source, None)
    results: dict[str, Any] = {"data": data, "steps": steps, "threads": {}}
    for threads in (int(t) for t in args.threads.split(",")):
        rows = []
        for name, folder in [("original", source), *((n, out / n) for n in names)]:
            print(f"measuring {name} with {threads} threads", file=sys.stderr, flush=True)
            rows.append(measure(name, folder, texts, gold, threads=threads))
        base = rows[0]["predictions"]
        for r in rows:
            preds = r.pop("predictions")
            r["agreement"] = round(
                sum(a == b for a, b in zip(preds, base, strict=True)) / len(base), 4
            )
        results["threads"][str(threads)] = {"rows": rows, "table": table(rows)}
        print(f"\n{threads} thread(s):\n{table(rows)}\n")
    results["targets"] = verdicts(results["threads"][args.threads.split(",")[0]]["rows"])
    results["command"] = shlex.join([sys.executable, *sys.argv])
    (out / "compress.json").write_text(json.dumps(results, indent=2))
    for name, v in results["targets"].items():
        print(f"{name}: {v}")
    return 0


def verdicts(rows: list[dict[str, Any]]) -> dict[str, str]:
    base = rows[0]
    out = {}
    for r in rows[1:]:
        if r["name"] not in TARGETS:
            continue
        b1, b64, drop, size = TARGETS[r["name"]]
        up1 = base["latency_ms_p50"] / r["latency_ms_p50"]
        up64 = r["throughput_texts_per_s"] / base["throughput_texts_per_s"]
        lost = 100 * (base["accuracy"] - r["accuracy"])  # > 0: accuracy went down
        share = r["size_mb"] / base["size_mb"]
        checks = [
            f"b=1 {up1:.2f}× (target ≥ {b1}×{'' if b1 > 1 else ', i.e. faster'}): "
            f"{'met' if up1 >= b1 and up1 > 1 else 'missed'}",
            f"b=64 {up64:.2f}× (≥ {b1 if b64 == 1.0 else b64}×): "
            f"{'met' if up64 >= b64 and up64 > 1 else 'missed'}",
            f"accuracy {-lost:+.2f} points (loss ≤ {drop}): {'met' if lost <= drop else 'missed'}",
        ]
        if size is not None:
            checks.append(
                f"size {share:.0%} (≤ {size:.0%}): {'met' if share <= size else 'missed'}"
            )
        out[r["name"]] = "; ".join(checks)
    return out


def render_section(folder: Path) -> str:
    """This benchmark's section of RESULTS.md, from FOLDER/compress.json ("" when absent)."""
    r = read_json(folder / "compress.json")
    if r is None:
        return ""
    lines = [
        "## Compression: `jiyi compress` (bench/bench_compress.py)\n",
        f"MiniLM fine-tuned on Rotten Tomatoes (the `jiyi` row's run); test file `{r['data']}`; "
        "every artifact measured in one process, one after another, warm. Speed-ups are "
        "against the original in the same table. `agree` = same label as the original.\n",
    ]
    for threads, t in r["threads"].items():
        lines += [f"### {threads} thread(s)\n", t["table"], ""]
        lines += [
            "| model | agree |",
            "| --- | ---: |",
            *(f"| {row['name']} | {row['agreement']:.1%} |" for row in t["rows"][1:]),
            "",
        ]
    first = next(iter(r["threads"].values()))["rows"]
    lines += ["Targets (2 threads):\n", *(f"- {k}: {v}" for k, v in verdicts(first).items()), ""]
    lines += [f"Command: `{r['command']}`; compression steps: "]
    lines += [f"- {k}: `{v['command']}` ({v['seconds']} s)" for k, v in r["steps"].items()]
    return "\n".join([*lines, ""])


if __name__ == "__main__":
    sys.exit(main())
