"""LoRA adapters (`jiyi train --lora-r`, on peft) against full fine-tuning: MiniLM on Rotten
Tomatoes, the same training subset, validation subset, test split, seed and steps for every arm.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python bench/bench_lora.py --output bench/results/lora
    .venv/bin/python bench/bench_lora.py --output bench/results/lora --render

Arms (each `jiyi train --model minilm` in its own process, --threads 1):

    full       every weight trains (--lr 5e-5, jiyi's default for a small model)
    r8         --lora-r 8 (alpha 16, dropout 0.1, query,value: jiyi's defaults), --lr 2e-3
    r16        --lora-r 16 (alpha 32), --lr 2e-3
    r8-lr5e-4  --lora-r 8 at --lr 5e-4 (jiyi's default --lr for a small model with --lora-r)

Per arm: trainable parameters (jiyi.json's "lora" record; all parameters for full), step time
(batch size / the median `examples_per_s` of metrics.jsonl, which leaves validation and
checkpoints out), peak RSS of the training process (wait4's ru_maxrss), the run folder's size
(model/, adapter/), best validation and test accuracy, wall time. Each arm writes
OUTPUT/ARM.json and is skipped when that exists, so the script resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import JIYI, fmt, md_table, read_csv, read_json, subset, write_csv, write_json

ARMS = {
    "full": ["--lr", "5e-5"],
    "r8": ["--lr", "2e-3", "--lora-r", "8"],
    "r16": ["--lr", "2e-3", "--lora-r", "16"],
    "r8-lr5e-4": ["--lr", "5e-4", "--lora-r", "8"],  # jiyi's default --lr with --lora-r (small)
}
COMMON = ["--batch-size", "32", "--max-length", "64", "--seed", "0", "--threads", "1"]
COMMON += ["--calibration", "none", "--log-every", "5"]


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def data(out: Path, n_train: int, n_validation: int, env: dict[str, str]) -> dict[str, Path]:
    """The Rotten Tomatoes export, a random n_train of train and n_validation of validation."""
    rt = out / "data" / "rt"
    if not (rt / "test.csv").is_file():
        subprocess.run([*JIYI, "data", "export", "rotten-tomatoes", "--output", str(rt)],
                       check=True, env=env, capture_output=True)  # fmt: skip
    files = {"train": out / "data" / "train.csv", "validation": out / "data" / "validation.csv"}
    write_csv(files["train"], subset(read_csv(rt / "train.csv"), n_train, seed=0))
    write_csv(files["validation"], subset(read_csv(rt / "validation.csv"), n_validation, seed=0))
    files["test"] = rt / "test.csv"
    return files


def run_arm(arm: str, files: dict[str, Path], out: Path, epochs: str, env: dict[str, str]) -> dict:
    run_dir = out / "runs" / arm
    argv = [*JIYI, "train", "--model", "minilm", "--output", str(run_dir), "--epochs", epochs]
    argv += [f"--{k}={v}" for k, v in files.items()] + COMMON + ARMS[arm]
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(logs / f"{arm}.out", "w") as o, open(logs / f"{arm}.err", "w") as e:
        proc = subprocess.Popen(argv, env=env, stdout=o, stderr=e)
        _, status, usage = os.wait4(proc.pid, 0)  # reaps it: its own peak RSS in ru_maxrss
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        err = (logs / f"{arm}.err").read_text()[-3000:]
        raise SystemExit(f"{arm}: `{' '.join(argv)}` failed:\n{err}")
    summary = json.loads((logs / f"{arm}.out").read_text().strip().splitlines()[-1])
    events = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [e["examples_per_s"] for e in events if e.get("event") == "train"]
    meta = json.loads((run_dir / "model" / "jiyi.json").read_text())
    test = json.loads((run_dir / "eval" / "metrics.json").read_text())
    lora = meta.get("lora")
    if lora:
        trainable, total = lora["trainable_parameters"], lora["total_parameters"]
    else:
        from safetensors import safe_open

        with safe_open(str(run_dir / "model" / "model.safetensors"), "np") as f:
            total = sum(int(f.get_tensor(k).size) for k in f.keys())  # noqa: SIM118
        trainable = total
    return {
        "arm": arm,
        "argv": argv[2:],
        "trainable": trainable,
        "total": total,
        "steps": summary["steps"],
        "step_seconds": 32 / statistics.median(rates),
        "train_seconds": summary["train_seconds"],
        "wall_seconds": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # Linux: kilobytes
        "run_bytes": folder_bytes(run_dir),
        "model_bytes": folder_bytes(run_dir / "model"),
        "adapter_bytes": folder_bytes(run_dir / "adapter"),
        "best_validation": summary["best_validation"],
        "test_accuracy": test["accuracy"],
        "test_n": test["n"],
        "load_average": os.getloadavg(),
    }


def render_section(folder: str | Path) -> str:
    """bench/RESULTS.md's section from OUTPUT/ARM.json ("" when no arm has run)."""
    folder = Path(folder)
    found = {a: r for a in ARMS if (r := read_json(folder / f"{a}.json")) is not None}
    if not found:
        return ""
    head = ["arm", "trainable params", "% of all", "step (s)", "peak RSS (MB)", "run folder (MB)",
            "model/ (MB)", "adapter/ (MB)", "best val acc", "test acc", "wall (s)"]  # fmt: skip
    rows = [
        [
            a,
            f"{r['trainable']:,}",
            fmt(100 * r["trainable"] / r["total"], ".2f"),
            fmt(r["step_seconds"], ".2f"),
            fmt(r["peak_rss_mb"], ".0f"),
            fmt(r["run_bytes"] / 1e6, ".1f"),
            fmt(r["model_bytes"] / 1e6, ".1f"),
            fmt(r["adapter_bytes"] / 1e6, ".2f"),
            fmt(r["best_validation"], ".4f"),
            fmt(r["test_accuracy"], ".4f"),
            fmt(r["wall_seconds"], ".0f"),
        ]
        for a, r in found.items()
    ]
    return md_table(head, rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", required=True)
    p.add_argument("--arms", default="full,r8,r16")
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--validation-size", type=int, default=500)
    p.add_argument("--epochs", default="2")
    p.add_argument("--render", action="store_true", help="print the RESULTS.md section only")
    args = p.parse_args()
    out = Path(args.output)
    if not args.render:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "JIYI_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
        files = data(out, args.train_size, args.validation_size, env)
        for arm in args.arms.split(","):
            if (out / f"{arm}.json").is_file():
                continue
            result = run_arm(arm, files, out, args.epochs, env)
            write_json(out / f"{arm}.json", result)
            print(json.dumps(result), flush=True)
    print(render_section(out))


if __name__ == "__main__":
    main()
