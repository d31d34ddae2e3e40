"""Few-shot Rotten Tomatoes: `jiyi train --method contrastive` (SetFit's method on jiyi's loop)
against plain fine-tuning and memory-only, the same samples for every arm; SetFit itself as the
anchor when it is importable.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_fewshot.py --output bench/results/fewshot
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_fewshot.py --output bench/results/fewshot \\
        --sizes 16 --seeds 0,1,2 --arms contrastive,memory --threads 1
    .venv/bin/python bench/bench_fewshot.py --output bench/results/fewshot --render

Samples are bench_memory.py's: `per_class_sample(train, K, seed)` for training and
`per_class_sample(validation, 32, seed)` for validation (the fine-tune picks its best epoch on
it, the memory its method, the contrastive run calibrates on it); test = the full test split
(1,275 rows). At K = 16 the samples are the ones bench_memory.py measured memory-only 0.633 and
fine-tuning 0.588 on. Arms:

    contrastive  jiyi train --method contrastive --batch-size 16 (SetFit's; --lr 2e-5, --epochs 1
                 and --pair-iterations 20 are jiyi's defaults for the method, as SetFit's)
    finetune     jiyi train, bench_memory.py's flags (10 epochs, batch 8, lr 5e-5)
    memory       jiyi memory build minilm --validation ..., then jiyi predict --memory
    setfit       setfit.Trainer on the same MiniLM folder (batch 16, num_iterations 20, 1 epoch,
                 max_length 64), if `import setfit` works with --setfit-path on sys.path

Every cell (arm, K, seed) is one JSON file under OUTPUT/cells/, skipped when present, so the
script resumes; --render prints bench/RESULTS.md's section from whatever cells exist.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    JIYI,
    REPO,
    fmt,
    md_table,
    mean_std,
    per_class_sample,
    read_csv,
    read_json,
    run_header,
    worker_env,
    write_csv,
    write_json,
)

ARMS = ("contrastive", "finetune", "memory", "setfit")
VALIDATION_PER_CLASS = 32
MAX_LENGTH = 64
FINETUNE = ["--epochs", "10", "--batch-size", "8", "--lr", "5e-5"]  # bench_memory.py's
CONTRASTIVE = ["--method", "contrastive", "--batch-size", "16"]
TARGETS = {"memory": 5.0, "finetune": 8.0}  # issue 20: contrastive >= arm + points


def run(cmd: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def accuracy(pred: list[str], gold: list[str]) -> float:
    return sum(p == g for p, g in zip(pred, gold, strict=True)) / len(gold)


def samples(
    out: Path, k: int, seed: int, env: dict[str, str], data_set: str = "rotten-tomatoes"
) -> tuple[Path, Path, Path]:
    """(train, validation, test) CSVs of one (K, seed): bench_memory.py's draws (of Rotten
    Tomatoes; of `data_set`'s export otherwise)."""
    rt = out / "data" / ("rt" if data_set == "rotten-tomatoes" else data_set)
    if not (rt / "test.csv").is_file():
        run([*JIYI, "data", "export", data_set, "--output", str(rt)], env)
    d = out / "data" / f"k{k}_s{seed}"
    if not (d / "validation.csv").is_file():
        write_csv(d / "train.csv", per_class_sample(read_csv(rt / "train.csv"), k, seed))
        val = per_class_sample(read_csv(rt / "validation.csv"), VALIDATION_PER_CLASS, seed)
        write_csv(d / "validation.csv", val)
    return d / "train.csv", d / "validation.csv", rt / "test.csv"


def jiyi_train(flags: list[str], data: tuple[Path, Path, Path], run_dir: Path, seed: int,
               threads: int, env: dict[str, str], model: str = "minilm",
               max_length: int = MAX_LENGTH) -> float:  # fmt: skip
    train, val, test = data
    shutil.rmtree(run_dir, ignore_errors=True)
    run([*JIYI, "train", "--model", model, "--train", str(train), "--validation", str(val),
         "--test", str(test), "--output", str(run_dir), "--max-length", str(max_length),
         "--seed", str(seed), "--threads", str(threads), *flags], env)  # fmt: skip
    acc = json.loads((run_dir / "eval" / "metrics.json").read_text())["accuracy"]
    shutil.rmtree(run_dir, ignore_errors=True)  # 90 MB of MiniLM per run
    return float(acc)


def memory_only(data: tuple[Path, Path, Path], work: Path, env: dict[str, str],
                model: str = "minilm", max_length: int = MAX_LENGTH) -> float:  # fmt: skip
    train, val, test = data
    mem, pred = work / "memory", work / "pred.jsonl"
    shutil.rmtree(mem, ignore_errors=True)
    run([*JIYI, "memory", "build", model, "--data", str(train), "--validation", str(val),
         "--output", str(mem), "--max-length", str(max_length)], env)  # fmt: skip
    run([*JIYI, "predict", "--memory", str(mem), "--input", str(test), "--output", str(pred)], env)
    labels = [json.loads(line)["label"] for line in pred.read_text().splitlines() if line]
    shutil.rmtree(mem, ignore_errors=True)
    return accuracy(labels, [r["label"] for r in read_csv(test)])


def setfit_worker(args: argparse.Namespace) -> None:
    """In its own process (sys.path has --setfit-path): SetFit on the cell's samples."""
    import torch
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from jiyi.models import resolve_model

    torch.set_num_threads(args.threads)
    train, test = read_csv(args.train), read_csv(args.test)
    model = SetFitModel.from_pretrained(resolve_model("minilm"))
    scratch = tempfile.mkdtemp(prefix="setfit-")  # its checkpoints, not the current folder
    targs = TrainingArguments(batch_size=16, num_iterations=20, num_epochs=1, max_length=MAX_LENGTH,
                              seed=args.seed, report_to="none", output_dir=scratch)  # fmt: skip
    data = Dataset.from_dict(
        {"text": [r["text"] for r in train], "label": [r["label"] for r in train]}
    )
    try:
        Trainer(model=model, args=targs, train_dataset=data).train()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    pred = [str(p) for p in model.predict([r["text"] for r in test])]
    print(json.dumps({"accuracy": accuracy(pred, [r["label"] for r in test])}))


def setfit_arm(data: tuple[Path, Path, Path], seed: int, threads: int, setfit_path: str,
               env: dict[str, str]) -> float:  # fmt: skip
    env = {**env, "PYTHONPATH": os.pathsep.join([setfit_path, str(REPO / "src")])}
    out = run([sys.executable, __file__, "--setfit-worker", "--train", str(data[0]), "--test",
               str(data[2]), "--seed", str(seed), "--threads", str(threads)], env)  # fmt: skip
    return float(json.loads(out.strip().splitlines()[-1])["accuracy"])


def measure(args: argparse.Namespace) -> None:
    out = Path(args.output)
    env = worker_env(args.threads)
    cells = out / "cells"
    write_json(out / "header.json", {**run_header(), "threads": args.threads,
                                     "command": " ".join(sys.argv), "data_set": args.data_set,
                                     "model": args.model, "max_length": args.max_length})  # fmt: skip
    tuned = {"model": args.model, "max_length": args.max_length}
    for k in args.sizes:
        for seed in args.seeds:
            data = samples(out, k, seed, env, args.data_set)
            for arm in args.arms:
                cell = cells / f"{arm}_k{k}_s{seed}.json"
                if cell.is_file():
                    continue
                t0 = time.perf_counter()
                work = out / "work"
                if arm == "contrastive":
                    acc = jiyi_train(
                        CONTRASTIVE, data, work / "run", seed, args.threads, env, **tuned
                    )
                elif arm == "finetune":
                    acc = jiyi_train(FINETUNE, data, work / "run", seed, args.threads, env, **tuned)
                elif arm == "memory":
                    acc = memory_only(data, work, env, **tuned)
                else:
                    try:
                        acc = setfit_arm(data, seed, args.threads, args.setfit_path, env)
                    except SystemExit as e:  # not importable, or broken: the other arms go on
                        print(f"setfit arm failed, dropped: {str(e)[-800:]}", flush=True)
                        args.arms = [a for a in args.arms if a != "setfit"]
                        continue
                seconds = time.perf_counter() - t0
                write_json(cell, {"arm": arm, "k": k, "seed": seed, "accuracy": acc,
                                  "seconds": round(seconds, 1), "load": os.getloadavg()[0]})  # fmt: skip
                print(f"{arm} K={k} seed={seed}: {acc:.4f} ({seconds:.0f} s)", flush=True)


def render_section(out: Path) -> str:
    """bench/RESULTS.md's section from OUTPUT/cells/*.json."""
    header = read_json(out / "header.json") or {}
    cells = [read_json(p) for p in sorted((out / "cells").glob("*.json"))]
    lines = ["## Few-shot: contrastive fine-tuning (SetFit's method) (bench/bench_fewshot.py)", ""]
    if not cells:
        return ""
    data_set, model = header.get("data_set", "rotten-tomatoes"), header.get("model", "minilm")
    lines += [
        f"{data_set}, {model}, K training examples per class drawn per seed "
        f"(bench_memory.py's way; validation {VALIDATION_PER_CLASS} per class), test accuracy "
        f"on the whole test split; max length {header.get('max_length', MAX_LENGTH)}. "
        f"Conditions: {header.get('cpu', '?')}, "
        f"{header.get('cores', '?')} cores, {header.get('threads', '?')} thread(s) per process, "
        f"load average {header.get('load', float('nan')):.1f} at the start, {header.get('date')}; "
        "seconds are the wall time of a cell (training + test predictions).",
        "",
    ]
    for k in sorted({c["k"] for c in cells}, reverse=True):
        mine = [c for c in cells if c["k"] == k]
        by_arm = {a: {c["seed"]: c for c in mine if c["arm"] == a} for a in ARMS}
        rows = []
        for arm in ARMS:
            got = by_arm[arm]
            if not got:
                continue
            accs = [got[s]["accuracy"] for s in sorted(got)]
            m, sd = mean_std(accs)
            shown = f"{m:.4f} ± {sd:.4f}" if len(accs) > 1 else f"{m:.4f} (1 seed)"
            rows.append([arm, shown, ", ".join(f"{a:.3f}" for a in accs),
                         ", ".join(map(str, sorted(got))),
                         fmt(mean_std([got[s]["seconds"] for s in got])[0], ".0f")])  # fmt: skip
        lines += [f"K = {k} per class:", "",
                  md_table(["arm", "accuracy mean ± std", "per seed", "seeds", "s per cell"], rows),
                  ""]  # fmt: skip
        con = by_arm["contrastive"]
        for arm, need in TARGETS.items():
            seeds = sorted(set(con) & set(by_arm[arm]))
            if not seeds:
                continue
            gap = (
                100 * mean_std([con[s]["accuracy"] - by_arm[arm][s]["accuracy"] for s in seeds])[0]
            )
            ok = "met" if gap >= need else "missed"
            lines.append(f"- contrastive − {arm}: {gap:+.1f} points over seeds {seeds} "
                         f"(target ≥ +{need:g}): **{ok}**")  # fmt: skip
        if by_arm["contrastive"] and by_arm["setfit"]:
            seeds = sorted(set(con) & set(by_arm["setfit"]))
            gap = (
                100
                * mean_std([con[s]["accuracy"] - by_arm["setfit"][s]["accuracy"] for s in seeds])[0]
            )
            lines.append(f"- contrastive − SetFit (anchor): {gap:+.1f} points over seeds {seeds}")
        lines.append("")
    lines.append(f"Command: `{header.get('command', 'python bench/bench_fewshot.py')}`.")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--output", default="bench/results/fewshot")
    p.add_argument("--sizes", default="16,8", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--seeds", default="0,1,2,3,4", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--arms", default=",".join(ARMS), type=lambda s: s.split(","))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-set", default="rotten-tomatoes", help="a `jiyi data export` name")
    p.add_argument("--model", default="minilm", help="--model of every jiyi arm (not setfit)")
    p.add_argument("--max-length", type=int, default=MAX_LENGTH)
    p.add_argument(
        "--setfit-path",
        default="/tmp/setfit_pkgs",
        help="a folder holding setfit, sentence-transformers and evaluate (pip --target)",
    )
    p.add_argument("--render", action="store_true", help="print the RESULTS.md section only")
    p.add_argument("--setfit-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--train", help=argparse.SUPPRESS)
    p.add_argument("--test", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.setfit_worker:
        return setfit_worker(args)
    if not args.render:
        bad = [a for a in args.arms if a not in ARMS]
        if bad:
            raise SystemExit(f"--arms: unknown {bad}; choose from {', '.join(ARMS)}")
        measure(args)
    print(render_section(Path(args.output)))


if __name__ == "__main__":
    main()
