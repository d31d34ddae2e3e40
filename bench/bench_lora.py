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


def interleaved_steps(files: dict[str, Path], rounds: int, steps: int) -> dict:
    """Step time of full fine-tuning, r 8 and r 16 in ONE process on the same batches, the arms
    taking turns (`rounds` x `steps` optimizer steps each), so that a shared machine's load
    falls on every arm alike: forward, backward, clip, AdamW step. Median seconds per step."""
    import torch

    from jiyi.config import TrainConfig
    from jiyi.lora import apply_lora
    from jiyi.models import load_for_classification, resolve_model

    torch.set_num_threads(1)
    rows = read_csv(files["train"])[: 32 * steps]
    path = resolve_model("minilm")
    arms: dict[str, tuple] = {}
    for arm, r in (("full", None), ("r8", 8), ("r16", 16)):
        torch.manual_seed(0)
        model, tok = load_for_classification(path, ["fresh", "rotten"])
        model = apply_lora(model, TrainConfig(train="x", lora_r=r), lambda *a: None)
        params = [p for p in model.parameters() if p.requires_grad]
        arms[arm] = (model.train(), torch.optim.AdamW(params, lr=1e-5), params)
    batches = []
    for i in range(steps):
        chunk = rows[32 * i : 32 * (i + 1)]
        enc = tok([x["text"] for x in chunk], truncation=True, max_length=64, padding=True,
                  return_tensors="pt")  # fmt: skip
        labels = torch.tensor([x["label"] == "rotten" for x in chunk], dtype=torch.long)
        batches.append((enc, labels))
    times: dict[str, list[float]] = {a: [] for a in arms}
    for _ in range(rounds):
        for arm, (model, opt, params) in arms.items():
            for enc, labels in batches:
                t0 = time.perf_counter()
                loss = model(**enc, labels=labels).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                times[arm].append(time.perf_counter() - t0)
    state = {
        a: sum(t.numel() * t.element_size() for st in opt.state.values() for t in st.values()
               if torch.is_tensor(t))
        for a, (_, opt, _) in arms.items()
    }  # fmt: skip
    return {
        "median_step_seconds": {a: statistics.median(t) for a, t in times.items()},
        "optimizer_state_bytes": state,
        "rounds": rounds,
        "steps": steps,
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
    table = md_table(head, rows)
    steps = read_json(folder / "steps.json")
    if steps:
        med = steps["median_step_seconds"]
        table += (
            f"\n\nInterleaved in one process (`--steps`; {steps['rounds']} rounds x "
            f"{steps['steps']} steps per arm, the same batches): median step "
            + ", ".join(f"{a} {fmt(v, '.2f')} s" for a, v in med.items())
            + "; AdamW state "
            + ", ".join(
                f"{a} {fmt(v / 1e6, '.1f')} MB" for a, v in steps["optimizer_state_bytes"].items()
            )
            + "."
        )
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", required=True)
    p.add_argument("--arms", default="full,r8,r16")
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--validation-size", type=int, default=500)
    p.add_argument("--epochs", default="2")
    p.add_argument("--render", action="store_true", help="print the RESULTS.md section only")
    p.add_argument("--steps", action="store_true", help="the interleaved step-time part only")
    args = p.parse_args()
    out = Path(args.output)
    if not args.render:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "JIYI_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
        files = data(out, args.train_size, args.validation_size, env)
        if args.steps:
            write_json(out / "steps.json", interleaved_steps(files, rounds=4, steps=5))
        for arm in args.arms.split(",") if not args.steps else []:
            if (out / f"{arm}.json").is_file():
                continue
            result = run_arm(arm, files, out, args.epochs, env)
            write_json(out / f"{arm}.json", result)
            print(json.dumps(result), flush=True)
    print(render_section(out))


if __name__ == "__main__":
    main()
