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
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import results_md
from common import (
    JIYI,
    agreement,
    cpu_model,
    export_dataset,
    fmt,
    matmul_peak_gflops,
    md_table,
    mean_std,
    parameter_counts,
    per_class_sample,
    read_csv,
    read_json,
    run_checked,
    run_worker,
    subset,
    timed,
    token_lengths,
    train_tokens,
    usable_cores,
    verdict,
    versions,
    worker_env,
    write_csv,
    write_json,
)
from train_hf import trainer_row

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
RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"


# --- workers: each runs in its own process and returns the dict written to OUTPUT/ROW.json ------


def worker_peak(cfg: dict[str, Any]) -> dict[str, Any]:
    return matmul_peak_gflops(cfg["threads"])


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
        extra=["--precision", "bf16" if row == "jiyi_bf16" else "fp32"],  # fp32: as the Trainer
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
    export_dataset("rotten-tomatoes", export, env)
    sizes = QUICK if quick else FULL
    paths, counts = {}, {}
    for split in ("train", "validation", "test"):
        rows = subset(read_csv(export / f"{split}.csv"), sizes[split], seed=0)
        paths[split] = str(out / "data" / "bench" / f"{split}.csv")
        counts[split] = len(rows)
        write_csv(paths[split], rows)
    return {"data": paths, "n_rows": counts}


def run_row(name: str, out: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run one worker in a fresh process; its ROW.json, or the error that stopped it (written)."""
    result = run_worker(__file__, name, out, env)
    if "error" in result:
        write_json(out / f"{name}.json", result)
    return result


def worker_main(name: str, out: Path) -> int:
    cfg = json.loads((out / "bench_config.json").read_text())
    workers = {
        "peak": worker_peak,
        "a": lambda c: {"system": TITLES["a"], **trainer_row(c, "a")},
        "b": lambda c: {"system": TITLES["b"], **trainer_row(c, "b")},
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
        report = render(out)
        Path(args.results_md).write_text(report, encoding="utf-8")
        return 0

    only = [r.strip() for r in args.only.split(",") if r.strip()]
    if unknown := sorted(set(only) - set(ROWS)):
        parser.error(f"--only: unknown rows {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    env = worker_env(args.threads)
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
    report = render(out)
    for path in (Path(args.results_md), out / "RESULTS.md"):
        path.write_text(report, encoding="utf-8")
    print(report)
    return 0


# --- RESULTS.md: this benchmark's header and tables, every other benchmark's section, failures --


def render(out: Path) -> str:
    """bench/RESULTS.md from the results in `out`: this benchmark's header and tables (from
    OUT/bench_config.json and every OUT/ROW.json), then the section of every other benchmark
    (`results_md.SECTIONS`), then the rows that failed."""
    rows = {
        p.stem: json.loads(p.read_text())
        for p in sorted(out.glob("*.json"))
        if p.stem != "bench_config"
    }
    parts = [
        render_header(json.loads((out / "bench_config.json").read_text()), rows),
        render_section(out),
        *results_md.render_sections(out),
        render_failures(rows),
    ]
    return "\n".join(part for part in parts if part).rstrip() + "\n"


def render_section(folder: Path) -> str:
    """The fine-tuning, inference and few-shot tables, from FOLDER/ROW.json ("" when none)."""
    rows = {name: read_json(folder / f"{name}.json") for name in ("peak", *ROWS)}
    peak = (rows["peak"] or {}).get("gflops")
    lines = render_training({k: r for k, r in rows.items() if r is not None}, peak)
    lines += render_infer(rows["infer"]) + render_fewshot(rows["fewshot"])
    return "\n".join(lines)


def render_header(cfg: dict[str, Any], rows: dict[str, Any]) -> str:
    hp, n = cfg["hparams"], cfg["n_rows"]
    ver = versions()
    parts = []
    if cfg["quick"]:
        parts.append(
            "> **Quick smoke run, not the benchmark.** Subsets of the data (train "
            f"{n['train']}, validation {n['validation']}, test {n['test']}), {cfg['epochs']:g} epoch, "
            "few-shot with 1 seed and 2 epochs, on a shared machine: the numbers only show "
            "that every row runs. Run `make bench` for the real table.\n"
        )
    parts += [
        "# Fine-tuning benchmark: jiyi vs the Hugging Face Trainer and pipeline\n",
        f"- Command: `{cfg['command']}`",
        f"- Date: {cfg['started']}; rows finished: "
        + ", ".join(f"`{k}` {r.get('finished', 'failed')}" for k, r in rows.items()),
        f"- Machine: {usable_cores()} cores, {cpu_model()}; torch threads {cfg['threads']} in every run",
        f"- Versions: python {ver['python']}, torch {ver['torch']}, transformers {ver['transformers']}, "
        f"jiyi {ver['jiyi']}",
        f"- Model: MiniLM (all-MiniLM-L6-v2). Data: Rotten Tomatoes via `jiyi data export` — train "
        f"{n['train']}, validation {n['validation']}, test {n['test']} rows",
        f"- Settings: {cfg['epochs']:g} epoch{'' if cfg['epochs'] == 1 else 's'}, batch {hp['batch_size']}, lr {hp['lr']}, max length "
        f"{hp['max_length']}, warmup {hp['warmup_ratio']:.0%}, weight decay {hp['weight_decay']}, seed "
        f"{hp['seed']}, fp32, validation once per epoch; jiyi with `--truncation head` like the Trainer",
    ]
    peak = rows.get("peak", {}).get("gflops")
    if peak:
        p = rows["peak"]
        parts.append(
            f"- fp32 matmul peak: **{peak:.1f} GFLOP/s** ({p['n']}×{p['n']} matmul, "
            f"{p['threads']} threads, {p['seconds']:.1f} s)"
        )
    parts.append("")
    return "\n".join(parts)


def render_failures(rows: dict[str, Any]) -> str:
    parts = []
    errors = {k: v for k, v in rows.items() if "error" in v}
    if errors:
        parts.append("## Rows that failed\n")
        for name, r in errors.items():
            tail = "\n".join(r.get("log_tail", [])[-8:])
            parts.append(f"- `{name}`: {r['error']} (log `{r.get('log')}`)\n\n```\n{tail}\n```\n")
    return "\n".join(parts)


def render_training(rows: dict[str, Any], peak: float | None) -> list[str]:
    done = {
        k: rows[k] for k in ("a", "b", "jiyi", "jiyi_bf16") if k in rows and "error" not in rows[k]
    }
    if not done:
        return []
    jiyi = done.get("jiyi")
    table = []
    for r in done.values():
        tok_s = r["train_tokens"] / r["train_seconds"]
        mfu = 6 * r["params"]["non_embedding"] * tok_s / (peak * 1e9) if peak else None
        ratio = jiyi["train_seconds"] / r["train_seconds"] if jiyi else None
        table.append(
            [
                r["system"],
                fmt(r["test_accuracy"], ".4f"),
                fmt(r["train_seconds"], ".1f"),
                fmt(ratio, ".2f") + ("×" if ratio else ""),
                fmt(tok_s, ",.0f"),
                fmt(mfu and 100 * mfu, ".1f") + ("%" if mfu else ""),
                r["steps"],
                r["validations"],
            ]
        )
    lines = [
        "## Fine-tuning\n",
        md_table(
            [
                "system",
                "test accuracy",
                "train s",
                "jiyi time ÷ this",
                "real tokens/s",
                "MFU",
                "steps",
                "validations",
            ],
            table,
        ),
        "",
    ]
    lines.append(
        "Train s: wall time of `trainer.train()` / jiyi's training loop, validation passes "
        "included. Real tokens: non-pad tokens of the training texts seen. MFU: 6 × "
        f"{next(iter(done.values()))['params']['non_embedding']:,} non-embedding parameters × "
        "real tokens/s ÷ the matmul peak.\n"
    )
    if peak and any(
        6 * r["params"]["non_embedding"] * r["train_tokens"] / r["train_seconds"] > peak * 1e9
        for r in done.values()
    ):
        lines.append(
            "MFU above 100% means the peak was measured low (the 2048² matmul shared the cores, "
            "or runs slower than the model's smaller matmuls): read the column as relative only.\n"
        )
    if jiyi:
        lines.append("Targets:\n")
        for key, limit in (("a", 0.5), ("b", 0.85)):
            if key in done:
                ratio = jiyi["train_seconds"] / done[key]["train_seconds"]
                diff = 100 * (jiyi["test_accuracy"] - done[key]["test_accuracy"])
                lines.append(
                    f"- jiyi time ≤ {limit}× Trainer ({key}): {ratio:.2f}× — {verdict(ratio <= limit)}"
                )
                lines.append(
                    f"- jiyi accuracy no worse than Trainer ({key}) by more than 0.5 points: "
                    f"{diff:+.2f} points — {verdict(diff >= -0.5)}"
                )
        bf16 = done.get("jiyi_bf16")
        if bf16 and "b" in done:
            ratio = bf16["train_seconds"] / done["b"]["train_seconds"]
            diff = 100 * (bf16["test_accuracy"] - done["b"]["test_accuracy"])
            lines.append(
                f"- not a like-for-like row: jiyi `--bf16` takes {ratio:.2f}× Trainer (b)'s "
                f"time (fp32), at {diff:+.2f} points of test accuracy"
            )
        lines.append("")
    return lines


def render_infer(r: dict[str, Any] | None) -> list[str]:
    if not r or "error" in r:
        return []
    names = {
        "jiyi_api": "jiyi `load(run).predict(texts)` (Python API)",
        "jiyi_cli": "`jiyi predict` CLI (whole process: start-up, load, read, write)",
        "pipeline_default": "`pipeline('text-classification')`, default batch size",
        "pipeline_bs64": "`pipeline('text-classification')`, batch_size=64",
    }
    api = r["jiyi_api"]["texts_per_second"]
    table = [
        [
            label,
            r[k]["batch_size"],
            fmt(r[k]["best_seconds"], ".2f"),
            fmt(r[k]["texts_per_second"], ",.0f"),
            fmt(api / r[k]["texts_per_second"], ".2f") + "×",
            fmt(100 * r[k]["same_label_as_jiyi_api"], ".1f") + "%",
            fmt(r[k]["accuracy"], ".4f"),
        ]
        for k, label in names.items()
    ]
    lines = [
        f"## Inference ({r['n_texts']} test texts, same model folder)\n",
        md_table(
            [
                "predictor",
                "batch",
                "seconds",
                "texts/s",
                "jiyi API speed ÷ this",
                "same label as jiyi",
                "accuracy",
            ],
            table,
        ),
        "",
        f"Best of {r['repeats']} timed calls after a warm-up, inside one process (the CLI: one "
        "run, timed from outside). The pipeline gets `truncation=True, max_length=64`.\n",
        "Targets:\n",
    ]
    for k in ("pipeline_default", "pipeline_bs64"):
        speed = api / r[k]["texts_per_second"]
        lines.append(f"- jiyi ≥ 2× faster than {names[k]}: {speed:.2f}× — {verdict(speed >= 2)}")
        same = r[k]["same_label_as_jiyi_api"]
        lines.append(
            f"- identical labels vs {names[k]}: {100 * same:.1f}% — {verdict(same == 1.0)}"
        )
    return [*lines, ""]


def render_fewshot(r: dict[str, Any] | None) -> list[str]:
    if not r or "error" in r:
        return []
    s = r["settings"]
    table = []
    for key, label in (
        ("plain", "jiyi"),
        ("augmented", f"jiyi `--augment all --augment-copies {s['augment_copies']}`"),
    ):
        m = r["summary"][key]
        secs = [x["train_seconds"] for x in r["runs"] if x["augmented"] == (key == "augmented")]
        table.append(
            [
                label,
                f"{m['mean']:.4f} ± {m['std']:.4f}",
                ", ".join(f"{a:.4f}" for a in m["accuracies"]),
                fmt(sum(secs) / len(secs), ".1f"),
            ]
        )
    return [
        f"## Few-shot ({s['per_class']} examples per class, seeds {s['seeds']}, {s['epochs']} epochs, "
        f"batch {s['batch_size']})\n",
        md_table(["system", "test accuracy mean ± std", "per seed", "train s (mean)"], table),
        "",
        "The seed draws the examples and seeds the run; validation is this benchmark's validation set.\n",
    ]


def command_line() -> str:
    exe = sys.executable
    if exe.startswith(os.getcwd() + os.sep):
        exe = os.path.relpath(exe)
    prefix = "HF_HUB_OFFLINE=1 " if os.environ.get("HF_HUB_OFFLINE") else ""
    return prefix + shlex.join([exe, sys.argv[0], *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
