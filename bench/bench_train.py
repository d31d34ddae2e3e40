"""jiyi against the Hugging Face Trainer and pipeline: MiniLM on Rotten Tomatoes, one CPU machine.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_train.py --output bench/results          # full
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_train.py --quick --output /tmp/bench-quick

Rows, run one after the other, each in its own subprocess (this script re-invoked with the
hidden `--worker NAME`), all with the same torch thread count:

    peak     fp32 matmul GFLOP/s of this machine (the denominator of MFU)
    a        HF Trainer as run_classification.py uses it: pad to max_length, default collator
    b        HF Trainer with dynamic padding and train_sampling_strategy="group_by_length"
    jiyi     `jiyi train` through its CLI
    infer    jiyi.load(...).predict and `jiyi predict` against transformers.pipeline
    fewshot  16 examples per class, jiyi with and without --augment all

Each row writes OUTPUT/ROW.json (or the error that stopped it); then every ROW.json present in
OUTPUT is rendered into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from common import (
    agreement,
    matmul_peak_gflops,
    mean_std,
    parameter_counts,
    per_class_sample,
    read_csv,
    render,
    run_checked,
    subset,
    timed,
    token_lengths,
    train_tokens,
    usable_cores,
    write_csv,
    write_json,
)

ROWS = ("a", "b", "jiyi", "jiyi_bf16", "infer", "fewshot")
TITLES = {
    "a": "HF Trainer (a): pad to max_length",
    "b": "HF Trainer (b): dynamic padding + group_by_length",
    "jiyi": "jiyi train (CLI)",
    "jiyi_bf16": "jiyi train --bf16 (bfloat16 autocast: other arithmetic)",
}
HPARAMS = {
    "batch_size": 32,
    "lr": 5e-5,
    "max_length": 64,
    "warmup_ratio": 0.06,
    "weight_decay": 0.01,
    "seed": 42,
}
FULL = {
    "train": None,
    "validation": None,
    "test": None,
    "fewshot_seeds": [0, 1, 2],
    "fewshot_epochs": 10,
}
QUICK = {"train": 512, "validation": 256, "test": 256, "fewshot_seeds": [0], "fewshot_epochs": 2}
FEWSHOT = {"per_class": 16, "batch_size": 8, "augment_copies": 4, "augment_rate": 0.1}
INFER_REPEATS = 3
JIYI = [sys.executable, "-m", "jiyi"]  # the CLI, in this interpreter
RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"


# --- workers: each runs in its own process and returns the dict written to OUTPUT/ROW.json ------


def worker_peak(cfg: dict[str, Any]) -> dict[str, Any]:
    return matmul_peak_gflops(cfg["threads"])


def worker_hf(cfg: dict[str, Any], variant: str) -> dict[str, Any]:
    """The HF Trainer, set up as examples/pytorch/text-classification/run_classification.py does."""
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
        set_seed,
    )

    from jiyi.models import resolve_model

    torch.set_num_threads(cfg["threads"])
    hp, dynamic = cfg["hparams"], variant == "b"
    splits = {s: read_csv(p) for s, p in cfg["data"].items()}
    labels = sorted({r["label"] for r in splits["train"]})
    label2id = {label: i for i, label in enumerate(labels)}
    model_path = resolve_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(model_path)

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, Any]:
        padding = False if dynamic else "max_length"
        enc = tokenizer(
            batch["text"], padding=padding, truncation=True, max_length=hp["max_length"]
        )
        enc["label"] = [label2id[y] for y in batch["label"]]
        return enc

    data = {
        s: Dataset.from_dict(
            {"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]}
        ).map(tokenize, batched=True, remove_columns=["text", "label"])
        for s, rows in splits.items()
    }
    set_seed(hp["seed"])
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
    )
    args = TrainingArguments(
        output_dir=str(Path(cfg["output"]) / "runs" / f"hf_{variant}"),
        num_train_epochs=cfg["epochs"],
        per_device_train_batch_size=hp["batch_size"],
        learning_rate=hp["lr"],
        warmup_steps=hp["warmup_ratio"],  # a float < 1 is a ratio of the total steps in 5.x
        weight_decay=hp["weight_decay"],
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="epoch",
        report_to=[],
        seed=hp["seed"],
        use_cpu=True,
        disable_tqdm=True,
        train_sampling_strategy="group_by_length" if dynamic else "random",
    )

    def accuracy(pred: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer) if dynamic else default_data_collator,
        compute_metrics=accuracy,
    )
    t0 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t0
    pred = trainer.predict(data["test"])
    lengths = token_lengths(tokenizer, [r["text"] for r in splits["train"]], hp["max_length"])
    steps = trainer.state.global_step
    return {
        "system": TITLES[variant],
        "test_accuracy": accuracy(pred)["accuracy"],
        "train_seconds": train_seconds,
        "steps": steps,
        "validations": sum("eval_accuracy" in h for h in trainer.state.log_history),
        "validation_accuracy": [
            h["eval_accuracy"] for h in trainer.state.log_history if "eval_accuracy" in h
        ],
        "train_tokens": train_tokens(lengths, cfg["epochs"], steps, hp["batch_size"]),
        "params": parameter_counts(model),
        "eval_batch_size": args.per_device_eval_batch_size,
    }


def worker_jiyi(cfg: dict[str, Any], row: str = "jiyi") -> dict[str, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    hp = cfg["hparams"]
    run_dir = Path(cfg["output"]) / "runs" / row
    result = jiyi_train(
        cfg,
        run_dir,
        cfg["data"]["train"],
        epochs=cfg["epochs"],
        batch_size=hp["batch_size"],
        seed=hp["seed"],
        extra=["--bf16"] if row == "jiyi_bf16" else None,
    )
    model_dir = run_dir / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = [r["text"] for r in read_csv(cfg["data"]["train"])]
    lengths = token_lengths(tokenizer, texts, hp["max_length"])
    steps = result["summary"]["steps"]
    return {
        "system": TITLES[row],
        "test_accuracy": result["test"]["accuracy"],
        "train_seconds": result["summary"]["train_seconds"],
        "steps": steps,
        "validations": result["validations"],
        "train_tokens": train_tokens(lengths, cfg["epochs"], steps, hp["batch_size"]),
        "params": parameter_counts(AutoModelForSequenceClassification.from_pretrained(model_dir)),
        **{k: result[k] for k in ("summary", "process_wall_seconds", "command")},
    }


def worker_infer(cfg: dict[str, Any]) -> dict[str, Any]:
    """jiyi's Python API and CLI against transformers.pipeline on the test texts of the jiyi run."""
    import torch
    from transformers import pipeline

    try:
        from jiyi import load
    except ImportError:  # jiyi 0.1.0 does not re-export load at the top level
        from jiyi.predict import load

    torch.set_num_threads(cfg["threads"])
    run_dir = Path(cfg["output"]) / "runs" / "jiyi"
    if not (run_dir / "model" / "config.json").is_file():
        raise RuntimeError(
            f"{run_dir} holds no trained model: run the jiyi row first (--only jiyi,infer)."
        )
    rows = read_csv(cfg["data"]["test"])
    texts, gold = [r["text"] for r in rows], [r["label"] for r in rows]
    max_length = cfg["hparams"]["max_length"]
    results: dict[str, Any] = {"n_texts": len(texts), "repeats": INFER_REPEATS}

    # 1. jiyi Python API: load, warm up, time predict(texts)
    clf = load(run_dir, threads=cfg["threads"])
    clf.predict(texts[:64])
    out, times = timed(lambda: clf.predict(texts), INFER_REPEATS)
    jiyi_labels = [r["label"] for r in out]
    results["jiyi_api"] = {"batch_size": clf.batch_size, "seconds": times, "labels": jiyi_labels}

    # 2. transformers.pipeline on the same folder, same truncation, default and 64 batch size
    pipe = pipeline("text-classification", model=str(run_dir / "model"), device=-1)
    pipe(texts[:64], truncation=True, max_length=max_length)
    for name, kwargs in (("pipeline_default", {}), ("pipeline_bs64", {"batch_size": 64})):
        out, times = timed(
            lambda kw=kwargs: pipe(texts, truncation=True, max_length=max_length, **kw),
            INFER_REPEATS,
        )
        results[name] = {
            "batch_size": kwargs.get("batch_size", 1),
            "seconds": times,
            "labels": [r["label"] for r in out],
        }

    # 3. the CLI, timed from outside: start-up, loading, reading and writing included
    out_file = Path(cfg["output"]) / "runs" / "predict_cli.jsonl"
    cmd = [
        *JIYI,
        "predict",
        str(run_dir),
        "--input",
        cfg["data"]["test"],
        "--output",
        str(out_file),
    ]
    cmd += ["--batch-size", "64"]
    t0 = time.perf_counter()
    run_checked(cmd)
    wall = time.perf_counter() - t0
    cli_labels = [
        json.loads(line)["label"] for line in out_file.read_text(encoding="utf-8").splitlines()
    ]
    results["jiyi_cli"] = {
        "batch_size": 64,
        "seconds": [wall],
        "labels": cli_labels,
        "command": shlex.join(cmd),
    }

    for name in ("jiyi_api", "jiyi_cli", "pipeline_default", "pipeline_bs64"):
        r = results[name]
        r["best_seconds"] = min(r["seconds"])  # best of N: the least disturbed by other load
        r["texts_per_second"] = len(texts) / r["best_seconds"]
        r["same_label_as_jiyi_api"] = agreement(r["labels"], jiyi_labels)
        r["accuracy"] = agreement(r["labels"], gold)
    return results


def worker_fewshot(cfg: dict[str, Any]) -> dict[str, Any]:
    fs = cfg["fewshot"]
    augment = ["--augment", "all", "--augment-rate", str(fs["augment_rate"])]
    augment += ["--augment-copies", str(fs["augment_copies"])]
    train_rows = read_csv(cfg["data"]["train"])
    runs: list[dict[str, Any]] = []
    for seed in fs["seeds"]:
        train_file = Path(cfg["output"]) / "data" / "fewshot" / f"seed{seed}.csv"
        write_csv(train_file, per_class_sample(train_rows, fs["per_class"], seed))
        for augmented in (False, True):
            run_dir = (
                Path(cfg["output"]) / "runs" / f"fewshot_seed{seed}{'_aug' if augmented else ''}"
            )
            r = jiyi_train(
                cfg,
                run_dir,
                str(train_file),
                epochs=fs["epochs"],
                batch_size=fs["batch_size"],
                seed=seed,
                extra=augment if augmented else None,
            )
            runs.append(
                {
                    "seed": seed,
                    "augmented": augmented,
                    "test_accuracy": r["test"]["accuracy"],
                    "f1_macro": r["test"].get("f1_macro"),
                    "train_seconds": r["summary"]["train_seconds"],
                    "steps": r["summary"]["steps"],
                    "command": r["command"],
                }
            )
            print(
                f"fewshot seed {seed} augmented={augmented}: {r['test']['accuracy']:.4f}",
                file=sys.stderr,
            )
    summary = {}
    for augmented in (False, True):
        accs = [r["test_accuracy"] for r in runs if r["augmented"] == augmented]
        mean, std = mean_std(accs)
        summary["augmented" if augmented else "plain"] = {
            "mean": mean,
            "std": std,
            "accuracies": accs,
        }
    return {"settings": {**fs, "train_seed_is_sample_seed": True}, "runs": runs, "summary": summary}


# --- helpers of the workers -----------------------------------------------------------------------


def jiyi_train(
    cfg: dict[str, Any],
    run_dir: Path,
    train: str,
    *,
    epochs: float,
    batch_size: int,
    seed: int,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    """`jiyi train` in a subprocess; its stdout summary, test metrics and validation count."""
    hp = cfg["hparams"]
    shutil.rmtree(run_dir, ignore_errors=True)  # jiyi refuses a non-empty --output
    flags = {
        "--model": "minilm", "--train": train, "--validation": cfg["data"]["validation"],
        "--test": cfg["data"]["test"], "--output": str(run_dir), "--epochs": epochs,
        "--batch-size": batch_size, "--lr": hp["lr"], "--max-length": hp["max_length"],
        "--warmup-ratio": hp["warmup_ratio"], "--weight-decay": hp["weight_decay"], "--seed": seed,
        "--truncation": "head", "--threads": cfg["threads"],
    }  # fmt: skip
    cmd = [*JIYI, "train", *(str(x) for kv in flags.items() for x in kv)]
    cmd += extra or []
    t0 = time.perf_counter()
    proc = run_checked(cmd)
    wall = time.perf_counter() - t0
    events = [
        json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line
    ]
    return {
        "command": shlex.join(cmd),
        "summary": json.loads(proc.stdout.strip().splitlines()[-1]),
        "test": json.loads((run_dir / "eval" / "metrics.json").read_text()),
        "validations": sum(e.get("event") == "eval" for e in events),
        "process_wall_seconds": wall,
    }


# --- the parent: data, dispatch ---------------------------------------------------------


def prepare_data(out: Path, quick: bool, env: dict[str, str]) -> dict[str, Any]:
    """Export Rotten Tomatoes with jiyi, then write the (sub)sets every row reads."""
    export = out / "data" / "export"
    shutil.rmtree(export, ignore_errors=True)
    cmd = [*JIYI, "data", "export", "rotten-tomatoes", "--output", str(export)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"`{shlex.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr.strip()}")
    sizes = QUICK if quick else FULL
    paths, counts = {}, {}
    for split in ("train", "validation", "test"):
        rows = subset(read_csv(export / f"{split}.csv"), sizes[split], seed=0)
        paths[split] = str(out / "data" / "bench" / f"{split}.csv")
        counts[split] = len(rows)
        write_csv(paths[split], rows)
    return {"data": paths, "n_rows": counts}


def run_row(name: str, out: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run one worker in a fresh process; its ROW.json, or the error that stopped it."""
    result_file, log_file = out / f"{name}.json", out / "logs" / f"{name}.log"
    result_file.unlink(missing_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--output", str(out)]
    t0 = time.perf_counter()
    with open(log_file, "w", encoding="utf-8") as log:
        rc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    if rc == 0 and result_file.is_file():
        return json.loads(result_file.read_text())
    tail = log_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-20:]
    result = {
        "error": f"worker exited {rc}",
        "log": str(log_file),
        "log_tail": tail,
        "wall_seconds": wall,
    }
    write_json(result_file, result)
    return result


def worker_main(name: str, out: Path) -> int:
    cfg = json.loads((out / "bench_config.json").read_text())
    workers = {
        "peak": worker_peak,
        "a": lambda c: worker_hf(c, "a"),
        "b": lambda c: worker_hf(c, "b"),
        "jiyi": worker_jiyi,
        "jiyi_bf16": lambda c: worker_jiyi(c, "jiyi_bf16"),
        "infer": worker_infer,
        "fewshot": worker_fewshot,
    }
    t0 = time.perf_counter()
    try:
        result = workers[name](cfg)
    except Exception:
        traceback.print_exc()
        return 1
    result.update(
        row=name, quick=cfg["quick"], finished=now(), wall_seconds=time.perf_counter() - t0
    )
    write_json(out / f"{name}.json", result)
    return 0


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--output", required=True, help="folder for data, runs, logs and ROW.json files"
    )
    parser.add_argument("--epochs", type=float, default=3, help="fine-tuning epochs (default 3)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: train 512, validation/test 256, 1 epoch, few-shot 1 seed 2 epochs",
    )
    parser.add_argument(
        "--only", default=",".join(ROWS), help=f"comma list of rows to run (of {','.join(ROWS)})"
    )
    parser.add_argument(
        "--threads", type=int, default=usable_cores(), help="torch threads of every run"
    )
    parser.add_argument(
        "--results-md", default=str(RESULTS_MD), help="where to write the Markdown report"
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="run nothing: re-render RESULTS.md from the JSON already in --output",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.output).resolve()
    if args.worker:
        return worker_main(args.worker, out)
    if args.render_only:
        report = render(json.loads((out / "bench_config.json").read_text()), out)
        Path(args.results_md).write_text(report, encoding="utf-8")
        return 0

    only = [r.strip() for r in args.only.split(",") if r.strip()]
    if unknown := sorted(set(only) - set(ROWS)):
        parser.error(f"--only: unknown rows {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "TOKENIZERS_PARALLELISM": "false",
        "JIYI_NO_PROGRESS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.setdefault("HF_HUB_OFFLINE", "1")
    out.mkdir(parents=True, exist_ok=True)
    epochs = 1 if args.quick else args.epochs
    sizes = QUICK if args.quick else FULL
    cfg = {
        "output": str(out),
        "quick": args.quick,
        "epochs": epochs,
        "threads": args.threads,
        "hparams": HPARAMS,
        "command": command_line(),
        "started": now(),
        "fewshot": {**FEWSHOT, "seeds": sizes["fewshot_seeds"], "epochs": sizes["fewshot_epochs"]},
        **prepare_data(out, args.quick, env),
    }
    write_json(out / "bench_config.json", cfg)
    todo = (["peak"] if {"a", "b", "jiyi"} & set(only) else []) + [r for r in ROWS if r in only]
    for name in todo:
        print(f"[{name}] running ...", file=sys.stderr, flush=True)
        result = run_row(name, out, env)
        status = f"failed: {result['error']} (see {result['log']})" if "error" in result else "done"
        print(
            f"[{name}] {status} in {result.get('wall_seconds', 0):.0f} s",
            file=sys.stderr,
            flush=True,
        )
    report = render(cfg, out)
    for path in (Path(args.results_md), out / "RESULTS.md"):
        path.write_text(report, encoding="utf-8")
    print(report)
    return 0


def command_line() -> str:
    exe = sys.executable
    if exe.startswith(os.getcwd() + os.sep):
        exe = os.path.relpath(exe)
    prefix = "HF_HUB_OFFLINE=1 " if os.environ.get("HF_HUB_OFFLINE") else ""
    return prefix + shlex.join([exe, sys.argv[0], *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
