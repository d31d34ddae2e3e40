"""`--engine ray` against `--engine local` (issue 22, item 1): the same outputs, and rows/s.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python bench/bench_scale.py --output bench/results/scale \
        [embed] [predict] [--rows 5000] [--predict-rows 1000]

On Rotten Tomatoes texts (the train split, cycled up to --rows), with --model minilm:
1. `jiyi embed` local (1 torch thread, then 2) and on Ray with 1 and 2 workers (1 CPU each):
   wall time of the whole command (Python start, model load, Ray start-up included), Ray's
   start-up (`ray.init`) from the manifest, rows/s over the whole command and without start-up,
   and the largest absolute difference between the Ray vectors and the local ones.
2. `jiyi predict` of a MiniLM classifier (`jiyi train`, 1 epoch on 500 rows: its accuracy is
   not the point) local (2 threads) and on Ray with 2 workers: the same labels, in order?
Each part writes OUTPUT/PART.json; `render_section(OUTPUT)` turns them into RESULTS.md text.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import (
    JIYI,
    cpu_model,
    fmt,
    md_table,
    read_csv,
    read_json,
    usable_cores,
    write_csv,
    write_json,
)


def jiyi(argv: list[Any], threads: int) -> tuple[float, str]:
    """Run the CLI with `threads` torch threads; (wall seconds, stderr)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads),
           "JIYI_NO_PROGRESS": "1"}  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run([*JIYI, *map(str, argv)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed: jiyi {' '.join(map(str, argv))}\n{done.stderr[-3000:]}")
    return seconds, done.stderr


def texts_file(out: Path, rows: int) -> Path:
    data = out / "data"
    if not (data / "train.csv").is_file():
        subprocess.run([*JIYI, "data", "export", "rotten-tomatoes", "--output", str(data)],
                       check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    train = read_csv(data / "train.csv")
    picked = [train[i % len(train)] for i in range(rows)]
    path = out / "input" / f"texts-{rows}.csv"
    write_csv(path, picked)
    return path


def part_embed(args: argparse.Namespace) -> dict[str, Any]:
    from jiyi.scale.jobs import output_vectors

    out = Path(args.output)
    source = texts_file(out, args.rows)
    result: dict[str, Any] = {"rows": args.rows, "arms": []}
    local = {}
    for threads in (1, 2):
        target = out / "embed" / f"local-{threads}.npy"
        seconds, _ = jiyi(["embed", "minilm", "--input", source, "--output", target], threads)
        local[threads] = np.load(target)
        diff = None if threads == 1 else float(np.abs(local[threads] - local[1]).max())
        result["arms"].append({"arm": f"local, {threads} thread(s)", "seconds": seconds,
                               "startup": 0.0, "max_abs_diff": diff})  # fmt: skip
    for workers in (1, 2):
        target = out / "embed" / f"ray-{workers}"
        seconds, _ = jiyi(["embed", "minilm", "--input", source, "--output", target,
                           "--engine", "ray", "--workers", workers,
                           "--shard-rows", args.shard_rows], 1)  # fmt: skip
        manifest = json.loads((target / "manifest.json").read_text())
        diff = float(np.abs(output_vectors(target) - local[1]).max())
        result["arms"].append({"arm": f"ray, {workers} worker(s) x 1 CPU", "seconds": seconds,
                               "startup": manifest["timing"]["startup_seconds"],
                               "max_abs_diff": diff})  # fmt: skip
    return result


def part_predict(args: argparse.Namespace) -> dict[str, Any]:
    from jiyi.scale.shards import read_output

    out = Path(args.output)
    data = out / "data"
    run = out / "predict" / "run"
    if not (run / "model" / "config.json").is_file():
        write_csv(out / "predict" / "train.csv", read_csv(data / "train.csv")[:TRAIN_ROWS])
        write_csv(out / "predict" / "validation.csv", read_csv(data / "validation.csv")[:200])
        jiyi(["train", "--model", "minilm", "--train", out / "predict" / "train.csv",
              "--validation", out / "predict" / "validation.csv", "--output", run,
              "--epochs", 1, "--max-length", 64, "--seed", 0], 2)  # fmt: skip
    source = texts_file(out, args.predict_rows)
    local_file = out / "predict" / "local.jsonl"
    local_s, _ = jiyi(["predict", run, "--input", source, "--output", local_file], 2)
    expected = [json.loads(line) for line in local_file.read_text().splitlines()]
    target = out / "predict" / "ray-2"
    ray_s, _ = jiyi(["predict", run, "--input", source, "--output", target, "--engine", "ray",
                     "--workers", 2, "--shard-rows", args.shard_rows], 1)  # fmt: skip
    table = read_output(target)
    labels = table.column("label").to_pylist()
    manifest = json.loads((target / "manifest.json").read_text())
    probs = np.asarray(table.column("probabilities").to_pylist())
    want = np.asarray([[r["probabilities"][x] for x in manifest["labels"]] for r in expected])
    return {
        "rows": args.predict_rows,
        "same_labels": sum(a == r["label"] for a, r in zip(labels, expected, strict=True)),
        "max_abs_prob_diff": float(np.abs(probs - want).max()),
        "rows_in_order": table.column("row").to_pylist() == list(range(args.predict_rows)),
        "local_seconds": local_s,
        "ray_seconds": ray_s,
        "ray_startup": manifest["timing"]["startup_seconds"],
    }


PARTS = {"embed": part_embed, "predict": part_predict}
TRAIN_ROWS = 500  # the classifier predict runs: 1 epoch on 500 rows (its accuracy is not the point)


def render_section(folder: Path) -> str:
    embed, predict = read_json(folder / "embed.json"), read_json(folder / "predict.json")
    if embed is None and predict is None:
        return ""
    lines = ["## `--engine ray` against `--engine local` (embed, predict)", ""]
    if embed is not None:
        rows = [
            [a["arm"], fmt(a["seconds"], ".1f"), fmt(a["startup"], ".1f"),
             fmt(embed["rows"] / a["seconds"], ".1f"),
             fmt(embed["rows"] / (a["seconds"] - a["startup"]), ".1f"),
             fmt(a["max_abs_diff"], ".1e", missing="(reference)")]
            for a in embed["arms"]
        ]  # fmt: skip
        header = ["engine", "wall s", "Ray start-up s", "rows/s", "rows/s without start-up",
                  "max abs diff to local, 1 thread"]  # fmt: skip
        lines += [
            f"`jiyi embed minilm` on {embed['rows']:,} Rotten Tomatoes texts (mean pooling, "
            "max length 512, batch 64). Wall time is the whole command: Python start, model "
            "load, Ray start-up.",
            "",
            md_table(header, rows),
            "",
        ]
    if predict is not None:
        lines += [
            f"`jiyi predict` (a MiniLM classifier, 1 epoch on {TRAIN_ROWS} rows) on {predict['rows']:,} "
            f"texts, local against Ray with 2 workers: {predict['same_labels']:,} of "
            f"{predict['rows']:,} labels the same, largest probability difference "
            f"{predict['max_abs_prob_diff']:.1e}, rows in input order: "
            f"{'yes' if predict['rows_in_order'] else 'no'}; {predict['local_seconds']:.1f} s "
            f"local (2 threads), {predict['ray_seconds']:.1f} s on Ray (start-up "
            f"{predict['ray_startup']:.1f} s).",
            "",
        ]
    lines.append(f"Machine: {cpu_model()}, {usable_cores()} usable cores.")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("parts", nargs="*", metavar="PART", help=f"of {', '.join(PARTS)} (default all)")
    p.add_argument("--output", required=True)
    p.add_argument("--rows", type=int, default=5000)
    p.add_argument("--predict-rows", type=int, default=1000)
    p.add_argument("--shard-rows", type=int, default=1000)
    args = p.parse_args()
    unknown = [part for part in args.parts if part not in PARTS]
    if unknown:
        p.error(f"unknown part {unknown[0]!r}; choose from {', '.join(PARTS)}")
    for part in args.parts or list(PARTS):
        write_json(Path(args.output) / f"{part}.json", PARTS[part](args))
    print(render_section(Path(args.output)))


if __name__ == "__main__":
    main()
