"""`jiyi tune` against the Hugging Face Trainer's `hyperparameter_search` (Optuna backend) on
Rotten Tomatoes with MiniLM: the same space, budget, sampler (TPE) and pruner (median), then the
best model's test accuracy.

    python bench/bench_tune.py --budget 60m --trials 100                  # the issue's comparison
    python bench/bench_tune.py --parts jiyi --train-rows 2000 --validation-rows 500 --budget 20m

Part `jiyi` runs the real command (`jiyi tune ... --space SPACE`), then `jiyi evaluate
OUT/best --data test.csv`. Part `hf` runs `Trainer.hyperparameter_search(backend="optuna")`
with the study in SQLite (to count pruned trials); the Trainer keeps no model of its best trial
(transformers #10550), so its best settings are trained once more and that retraining's time is
reported beside the search. Each part writes OUT/PART.json; `render_section` makes the
RESULTS.md section from them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from common import JIYI, md_table, read_csv, run_checked, run_header, subset, write_csv, write_json

SPACE = {  # the one space of both parts: jiyi's YAML, and the Trainer's hp_space below
    "lr": ("loguniform", 1e-5, 3e-4),
    "batch_size": ("choice", 16, 32),
    "epochs": ("int", 1, 3),
    "warmup_ratio": ("uniform", 0.0, 0.2),
}


def space_yaml() -> str:
    lines = []
    for name, (kind, a, b) in SPACE.items():
        lines.append(f"{name}: [{a}, {b}]" if kind == "choice" else f"{name}: {kind}({a}, {b})")
    return "\n".join(lines) + "\n"


def prepare_data(out: Path, train_rows: int | None, validation_rows: int | None) -> dict[str, Path]:
    full = out / "data" / "rotten-tomatoes"
    if not (full / "train.csv").is_file():
        run_checked([*JIYI, "data", "export", "rotten-tomatoes", "--output", str(full)])
    paths = {"test": full / "test.csv"}
    for split, n in (("train", train_rows), ("validation", validation_rows)):
        paths[split] = out / "data" / f"{split}-{n or 'all'}.csv"
        if not paths[split].is_file():  # the parts may run side by side: written once
            write_csv(paths[split], subset(read_csv(full / f"{split}.csv"), n, seed=0))
    return paths


def run_jiyi(args: argparse.Namespace, data: dict[str, Path], out: Path) -> dict[str, Any]:
    study = out / "jiyi-study"
    (out / "space.yaml").write_text(space_yaml(), encoding="utf-8")
    cmd = [*JIYI, "tune", "--model", "minilm", "--train", str(data["train"]),
           "--validation", str(data["validation"]), "--space", str(out / "space.yaml"),
           "--budget", args.budget, "--trials", str(args.trials), "--seed", "42",
           "--max-length", str(args.max_length), "--evals-per-epoch", str(args.evals_per_epoch),
           "--calibration", "none", "--precision", args.precision,
           "--output", str(study)]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    header, t0 = run_header(), time.perf_counter()
    summary = json.loads(run_checked(cmd).stdout.strip().splitlines()[-1])
    seconds = time.perf_counter() - t0
    result: dict[str, Any] = {"header": header, "header_at": "start", "command": " ".join(cmd[2:]),
                              "seconds": round(seconds, 1), "trials": summary["trials"]}  # fmt: skip
    if "best" in summary:
        run_checked([*JIYI, "evaluate", str(study / "best"), "--data", str(data["test"]),
                     "--output", str(out / "jiyi-best-test")])  # fmt: skip
        test = json.loads((out / "jiyi-best-test" / "metrics.json").read_text())
        result |= {"best_validation": summary["best"]["value"],
                   "best_params": summary["best"]["params"], "test_accuracy": test["accuracy"]}  # fmt: skip
    return result


def run_hf(args: argparse.Namespace, data: dict[str, Path], out: Path) -> dict[str, Any]:
    import numpy as np
    import optuna
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from jiyi.models import resolve_model

    if args.threads:
        torch.set_num_threads(args.threads)
    splits = {s: read_csv(p) for s, p in data.items()}
    labels = sorted({r["label"] for r in splits["train"]})
    label2id = {label: i for i, label in enumerate(labels)}
    model_path = resolve_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(model_path)

    def encode(rows: list[dict[str, str]]) -> Any:
        ds = Dataset.from_dict({"text": [r["text"] for r in rows],
                                "label": [label2id[r["label"]] for r in rows]})  # fmt: skip
        return ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=args.max_length),
                      batched=True, remove_columns=["text"])  # fmt: skip

    encoded = {s: encode(rows) for s, rows in splits.items()}

    def model_init(trial: Any = None) -> Any:
        return AutoModelForSequenceClassification.from_pretrained(
            model_path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
        )

    def accuracy(pred: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    def hp_space(trial: Any) -> dict[str, Any]:
        (_, lr_lo, lr_hi), (_, b1, b2) = SPACE["lr"], SPACE["batch_size"]
        (_, e_lo, e_hi), (_, w_lo, w_hi) = SPACE["epochs"], SPACE["warmup_ratio"]
        return {
            "learning_rate": trial.suggest_float("lr", lr_lo, lr_hi, log=True),
            "per_device_train_batch_size": trial.suggest_categorical("batch_size", [b1, b2]),
            "num_train_epochs": trial.suggest_int("epochs", e_lo, e_hi),
            "warmup_steps": trial.suggest_float("warmup_ratio", w_lo, w_hi),  # < 1: a ratio
        }

    # evaluations as often as jiyi's --evals-per-epoch at batch 32 (the Trainer counts steps)
    eval_steps = max(1, len(splits["train"]) // 32 // args.evals_per_epoch)
    targs = TrainingArguments(output_dir=str(out / "hf-runs"), eval_strategy="steps",
                              eval_steps=eval_steps, save_strategy="no", logging_strategy="no",
                              report_to=[], seed=42, use_cpu=not torch.cuda.is_available(),
                              disable_tqdm=True, bf16=args.precision == "bf16",
                              warmup_steps=0.06, weight_decay=0.01)  # fmt: skip
    trainer = Trainer(model_init=model_init, args=targs, train_dataset=encoded["train"],
                      eval_dataset=encoded["validation"], processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer),
                      compute_metrics=accuracy)  # fmt: skip
    storage = f"sqlite:///{(out / 'hf-study.db').absolute()}"
    header, t0 = run_header(), time.perf_counter()
    best = trainer.hyperparameter_search(
        hp_space=hp_space,
        compute_objective=lambda metrics: metrics["eval_accuracy"],
        n_trials=args.trials,
        direction="maximize",
        backend="optuna",
        timeout=parse_budget(args.budget),
        sampler=optuna.samplers.TPESampler(seed=42, n_startup_trials=5),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5),
        storage=storage,
        study_name="hf",
        load_if_exists=True,
    )
    seconds = time.perf_counter() - t0
    study = optuna.load_study(study_name="hf", storage=storage)
    counts: dict[str, int] = {}
    for t in study.trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    # the search keeps no model: train the best settings again, then test
    t1 = time.perf_counter()
    final = Trainer(model=model_init(), args=targs, train_dataset=encoded["train"],
                    eval_dataset=encoded["validation"], processing_class=tokenizer,
                    data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=accuracy)  # fmt: skip
    for key, value in hp_space(optuna.trial.FixedTrial(study.best_params)).items():
        setattr(final.args, key, value)
    final.train()
    test = final.predict(encoded["test"]).metrics["test_accuracy"]
    return {"header": header, "header_at": "start", "seconds": round(seconds, 1), "trials": counts,
            "best_validation": best.objective, "best_params": study.best_params,
            "test_accuracy": test, "retrain_seconds": round(time.perf_counter() - t1, 1)}  # fmt: skip


def parse_budget(text: str) -> float:
    from jiyi.tune.study import parse_duration

    return parse_duration(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--output", type=Path, default=Path("bench/results/tune"))
    parser.add_argument("--parts", nargs="+", default=["jiyi", "hf"], choices=["jiyi", "hf"])
    parser.add_argument("--budget", default="60m", help="each part's time budget")
    parser.add_argument("--trials", type=int, default=100, help="at most this many trials")
    parser.add_argument("--train-rows", type=int, help="a seeded subset of the training split")
    parser.add_argument("--validation-rows", type=int, help="a seeded subset of validation")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--evals-per-epoch", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="both parts train in it (the Trainer: bf16=True)",
    )
    args = parser.parse_args(argv)
    out: Path = args.output
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_data(out, args.train_rows, args.validation_rows)
    settings = {k: v for k, v in vars(args).items() if k not in ("output", "parts")}
    for part in args.parts:
        result = (run_jiyi if part == "jiyi" else run_hf)(args, data, out)
        result["settings"] = settings
        write_json(out / f"{part}.json", result)
        print(json.dumps(result, default=str), file=sys.stderr)
    sys.stdout.write(render_section(out))
    return 0


def study_trials(db: Path) -> list[Any]:
    """The trials of the one study in the SQLite file DB (none when it is absent)."""
    if not db.is_file():
        return []
    import optuna

    storage = f"sqlite:///{db.absolute()}"
    name = optuna.get_all_study_names(storage)[0]
    return optuna.load_study(study_name=name, storage=storage).trials


def same_start(folder: Path) -> str:
    """Whether both studies began with the same settings (TPE's seeded random start)."""
    jiyi, hf = (
        study_trials(folder / "jiyi-study" / "study.db"),
        study_trials(folder / "hf-study.db"),
    )
    n = min(len(jiyi), len(hf), 5)
    if not n:
        return ""
    same = sum(a.params == b.params for a, b in zip(jiyi[:n], hf[:n], strict=True))
    return (
        f"Of the first {n} trials (TPE's random start, seed 42), {same} drew the same settings in "
        "both studies, so the start compares the two trainers on equal settings."
    )


def render_section(folder: Path) -> str:
    """The `## Hyperparameter search` section of bench/RESULTS.md from FOLDER/{jiyi,hf}.json."""
    parts = {p: json.loads((folder / f"{p}.json").read_text()) for p in ("jiyi", "hf")
             if (folder / f"{p}.json").is_file()}  # fmt: skip
    if not parts:
        return ""
    rows = []
    for name, r in parts.items():
        t = r["trials"]
        rows.append([
            "`jiyi tune`" if name == "jiyi" else "Trainer.hyperparameter_search",
            f"{r['seconds'] / 60:.1f} min" + (f" (+{r['retrain_seconds'] / 60:.1f} retrain)"
                                              if "retrain_seconds" in r else ""),
            t.get("complete", 0), t.get("pruned", 0), t.get("fail", 0),
            f"{r['best_validation']:.4f}" if "best_validation" in r else "n/a",
            f"{r['test_accuracy']:.4f}" if "test_accuracy" in r else "n/a",
            ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in r.get("best_params", {}).items()),
        ])  # fmt: skip
    first = next(iter(parts.values()))
    s, h = first["settings"], first["header"]
    headers = ["search", "time", "completed", "pruned", "failed", "best validation accuracy",
               "its test accuracy", "best settings"]  # fmt: skip
    return "\n".join([
        "## Hyperparameter search: `jiyi tune` (bench/bench_tune.py)",
        "",
        f"Rotten Tomatoes, MiniLM, --max-length {s['max_length']}, training rows "
        f"{s['train_rows'] or 'all'}, validation rows {s['validation_rows'] or 'all'}; space "
        f"`{space_yaml().strip().replace(chr(10), '; ')}`; TPE (seed 42, 5 random startup "
        f"trials), median pruner at {s['evals_per_epoch']} validation passes per epoch; budget "
        f"{s['budget']}, at most {s['trials']} trials; {s.get('precision', 'fp32')} in both; "
        f"{s['threads'] or 'all'} thread(s); "
        f"{h['cpu']}; the first part's conditions when it "
        f"{'started' if first.get('header_at') == 'start' else 'ended'}: load {h['load']:.1f}, "
        f"{h['date']}.",
        "",
        md_table(headers, rows),
        "",
        f"Validation passes: jiyi {s['evals_per_epoch']} per epoch of every trial; the Trainer "
        "counts steps, so every "
        f"{max(1, (s['train_rows'] or 10201) // 32 // s['evals_per_epoch'])} steps "
        f"({s['evals_per_epoch']} per epoch at batch 32, twice as many at batch 16). At the "
        "budget, jiyi stops the trial in flight at its next validation pass (counted as "
        f"pruned); Optuna's timeout lets the Trainer's trial in flight run to its end. A "
        "trial's value: jiyi's best validation pass (the model it keeps and `best/` holds); the "
        "Trainer's last pass (`hyperparameter_search` reports the final evaluation and keeps no "
        f"model, so its best settings are trained again and that model is tested). "
        f"{same_start(folder)}",
        "",
        *(["The Trainer's `hyperparameter_search` part has not run with these settings yet "
           "(`--parts hf`).", ""] if "hf" not in parts else []),
    ])  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
