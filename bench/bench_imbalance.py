"""Class imbalance: Rotten Tomatoes with the negatives (rotten) cut to 1 per 10 positives (fresh) in
the training file; MiniLM fine-tuned with plain cross-entropy, `--class-weights balanced` and
`--loss focal` (gamma 2) and both together (the alpha-balanced focal loss), the same training file
and seed for every arm; macro-F1 on the test set.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_imbalance.py --output bench/results/imbalance
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 nice -n 19 .venv/bin/python bench/bench_imbalance.py \\
        --seeds 0 --epochs 1 --positives 3000 --threads 1 --output /tmp/imbalance   # shared machine

Training data: per seed, `--positives` fresh rows (all 5,894 by default) drawn with the seed, and
rotten rows at --ratio (10%) of that number, drawn with the seed; validation and test are the
exported files, untouched (balanced, about 1:1.37), so macro-F1 and the rotten recall measure
whether the minority class was learnt, not how often it occurs. Every run goes through the real
CLI in its own process; OUTPUT/SEED-ARM.json holds each result (a rerun skips those present),
`render_section(OUTPUT)` the Markdown of RESULTS.md.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    export_dataset,
    fmt,
    md_table,
    mean_std,
    read_csv,
    read_json,
    run_header,
    run_jiyi,
    worker_env,
    write_csv,
    write_json,
)

ARMS: dict[str, list[str]] = {  # arm -> the flags that differ
    "ce": [],
    "balanced": ["--class-weights", "balanced"],
    "focal": ["--loss", "focal", "--focal-gamma", "2"],
    "balanced-focal": ["--class-weights", "balanced", "--loss", "focal", "--focal-gamma", "2"],
}
MAJORITY, MINORITY = "fresh", "rotten"


def imbalanced_train(rows: list[dict[str, str]], positives: int | None, ratio: float, seed: int) -> list[dict[str, str]]:  # fmt: skip
    """`positives` fresh rows and round(ratio * positives) rotten rows drawn with `seed`, in
    their file order."""
    rng = random.Random(seed)
    fresh = [i for i, r in enumerate(rows) if r["label"] == MAJORITY]
    rotten = [i for i, r in enumerate(rows) if r["label"] == MINORITY]
    n_pos = len(fresh) if positives is None else min(positives, len(fresh))
    keep = rng.sample(fresh, n_pos) + rng.sample(rotten, round(ratio * n_pos))
    return [rows[i] for i in sorted(keep)]


def run_arm(args: argparse.Namespace, seed: int, arm: str, data: Path) -> dict[str, Any]:
    out = args.output / "runs" / f"{seed}-{arm}"
    shutil.rmtree(out, ignore_errors=True)
    argv = ["train", "--model", args.model, "--train", data / f"train-{seed}.csv",
            "--validation", data / "validation.csv", "--test", data / "test.csv",
            "--output", out, "--epochs", args.epochs, "--max-length", args.max_length,
            "--seed", seed, "--metric", "f1_macro", "--calibration", "none",
            "--threads", args.threads, *ARMS[arm],
            *(["--precision", args.precision] if args.precision else [])]  # fmt: skip
    _, wall, command = run_jiyi(argv, args.threads)
    metrics = read_json(out / "eval" / "metrics.json")
    minority = metrics["per_class"][MINORITY]
    result = {
        "seed": seed,
        "arm": arm,
        "f1_macro": metrics["f1_macro"],
        "accuracy": metrics["accuracy"],
        "minority_recall": minority["recall"],
        "minority_f1": minority["f1"],
        "majority_recall": metrics["per_class"][MAJORITY]["recall"],
        "wall_s": wall,
        "command": command,
        **run_header(),
    }
    shutil.rmtree(out / "model", ignore_errors=True)  # keep eval/, metrics.jsonl, config.yaml
    return result


def render_section(folder: str | Path) -> str:
    """## Class imbalance: one row per arm (mean ± std over the seeds that ran), "" if none."""
    folder = Path(folder)
    results = [read_json(p) for p in sorted(folder.glob("*-*.json"))]
    results = [r for r in results if r and r.get("arm") in ARMS]
    if not results:
        return ""
    setup = read_json(folder / "setup.json") or {}
    by_seed: dict[int, dict[str, dict[str, Any]]] = {}
    for r in results:
        by_seed.setdefault(r["seed"], {})[r["arm"]] = r
    complete = sorted(seed for seed, arms in by_seed.items() if set(arms) == set(ARMS))
    # the seeds every arm ran (the same training files in every row); until one seed has them
    # all, the runs that finished, each arm at the seeds it ran
    seeds = complete or sorted(by_seed)
    rows = []
    for arm in ARMS:
        mine = [by_seed[seed][arm] for seed in seeds if arm in by_seed[seed]]
        if not mine:
            continue
        cells = [arm + (" " + " ".join(ARMS[arm]) if ARMS[arm] else " (plain cross-entropy)")]
        for key in ("f1_macro", "minority_recall", "minority_f1", "majority_recall", "accuracy"):
            m, s = mean_std([r[key] for r in mine])
            cells.append(f"{m:.3f}" + (f" ± {s:.3f}" if len(mine) > 1 else ""))
        cells += [
            ",".join(str(r["seed"]) for r in mine),
            f"{sum(r['wall_s'] for r in mine) / len(mine) / 60:.1f} min",
        ]
        rows.append(cells)
    per_run = "; ".join(
        f"seed {seed}: " + ", ".join(f"{arm} {fmt(r['f1_macro'])}" for arm, r in arms.items())
        for seed, arms in sorted(by_seed.items())
    )
    head = ["arm", "macro-F1", "rotten recall", "rotten F1", "fresh recall", "accuracy", "seeds", "wall / run"]  # fmt: skip
    last = max(results, key=lambda r: r["date"])
    missing = [f"{arm} (seed {seed})" for seed in seeds for arm in ARMS if arm not in by_seed[seed]]
    lines = [
        "## Class imbalance (bench/bench_imbalance.py)",
        "",
        f"Rotten Tomatoes, training file cut to {setup.get('n_fresh', '?')} fresh and "
        f"{setup.get('n_rotten', '?')} rotten rows (1:{1 / setup.get('ratio', 0.1):.0f}, drawn per "
        "seed); validation and test untouched (as exported, about 58% fresh; "
        f"{setup.get('n_test', '?')} test rows). MiniLM, {setup.get('epochs')} epoch(s), "
        f"--max-length {setup.get('max_length')}, jiyi's other defaults (lr 5e-5, batch 32), "
        "--metric f1_macro, --calibration none (it changes no decision), "
        + (
            f"--precision {p}"
            if (p := setup.get("precision", "fp32"))
            else "jiyi's default --precision"
        )
        + '. Test metrics; "rotten" is the minority class.',
        "",
        md_table(head, rows),
        "",
        f"Macro-F1 of every run: {per_run}. "
        + (
            f"Not run yet: {', '.join(missing)}."
            if missing
            else f"Every row is seed {seeds[0]}."
            if len(seeds) == 1
            else f"Every row averages seeds {', '.join(map(str, seeds))}."
        ),
        "",
        f"Conditions: {last['cpu']}, {last['cores']} cores, torch {last['versions'].get('torch')}, "
        f"{setup.get('threads')} thread(s) per run, load average {last['load']:.1f} at the end "
        f"({last['date']}).",
        f"Command: `{setup.get('command', '')}`",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--model", default="minilm")
    p.add_argument("--epochs", default="3")
    p.add_argument("--max-length", default="64")
    p.add_argument("--positives", type=int, default=None, help="fresh rows kept (default all)")
    p.add_argument("--ratio", type=float, default=0.1, help="rotten rows per fresh row kept")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", help="jiyi's --precision (default: jiyi's own default)")
    p.add_argument("--render-only", action="store_true")
    args = p.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    if not args.render_only:
        data = args.output / "data"
        if not (data / "train.csv").is_file():
            export_dataset("rotten-tomatoes", data, worker_env(args.threads))
        rows = read_csv(data / "train.csv")
        seeds = [int(s) for s in args.seeds.split(",")]
        for seed in seeds:
            train = imbalanced_train(rows, args.positives, args.ratio, seed)
            write_csv(data / f"train-{seed}.csv", train)
        write_json(
            args.output / "setup.json",
            {
                "n_fresh": sum(r["label"] == MAJORITY for r in train),
                "n_rotten": sum(r["label"] == MINORITY for r in train),
                "n_test": len(read_csv(data / "test.csv")),
                "ratio": args.ratio,
                "epochs": args.epochs,
                "max_length": args.max_length,
                "threads": args.threads,
                "precision": args.precision,  # None: jiyi's default
                "command": "HF_HUB_OFFLINE=1 python bench/bench_imbalance.py "
                + " ".join(sys.argv[1:] if argv is None else argv),
            },
        )
        for seed in seeds:
            for arm in args.arms.split(","):
                done = args.output / f"{seed}-{arm}.json"
                if done.is_file():
                    continue
                t0 = time.perf_counter()
                result = run_arm(args, seed, arm, data)
                write_json(done, result)
                print(
                    f"seed {seed} {arm}: macro-F1 {fmt(result['f1_macro'])}, rotten recall "
                    f"{fmt(result['minority_recall'])} ({time.perf_counter() - t0:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    print(render_section(args.output))


if __name__ == "__main__":
    main()
