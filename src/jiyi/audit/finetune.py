"""`jiyi audit --method finetune`: out-of-sample probabilities from a jiyi classifier fine-tuned
per fold, through `jiyi train`'s own function (every flag of `--train-args` parsed as `jiyi train`
parses it), each fold's run predicting the rows it was not trained on.

Costs k trainings: on a CPU, use it on small sets or with few epochs; the logistic head on
frozen vectors (the default) is minutes on 10k rows.
"""

from __future__ import annotations

import csv
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from jiyi.audit.crossval import stratified_folds
from jiyi.errors import JiyiError

if TYPE_CHECKING:
    from jiyi.config import TrainConfig

OWNED_FLAGS = ("--model", "--train", "--output", "--validation", "--test", "--task")


def parse_train_args(text: str | None) -> list[str]:
    """`--train-args "--epochs 2 --lr 3e-5"` -> ["--epochs", "2", "--lr", "3e-5"]; the flags the
    audit sets itself are refused by name."""
    args = shlex.split(text or "")
    for arg in args:
        if arg.split("=", 1)[0] in OWNED_FLAGS:
            raise JiyiError(
                f"--train-args: {arg.split('=', 1)[0]} is set by jiyi audit for each fold (MODEL "
                "is the model, the fold's rows the training data); leave it out."
            )
    return args


def fold_config(
    model: str, train_file: Path, output: Path, seed: int, train_args: Sequence[str]
) -> TrainConfig:
    """The `jiyi train` settings of one fold: `train_args` parsed as `jiyi train` parses its
    flags (a --config YAML file included), then MODEL, the fold's file and folder set."""
    import argparse

    from jiyi.config import TrainConfig, add_dataclass_flags, build_config

    parser = argparse.ArgumentParser(prog="--train-args", add_help=False, exit_on_error=False)
    add_dataclass_flags(parser, TrainConfig, config_file="YAML file of jiyi train settings")
    try:
        ns, unknown = parser.parse_known_args(list(train_args))
    except (argparse.ArgumentError, SystemExit) as e:
        raise JiyiError(f"--train-args: {e}; give flags of `jiyi train`.") from None
    if unknown:
        raise JiyiError(
            f"--train-args: {' '.join(unknown)} is not a `jiyi train` flag (see jiyi train --help)."
        )
    values = vars(ns)
    values.update(model=str(model), train=str(train_file), output=str(output))
    values["seed"] = values.get("seed") if values.get("seed") is not None else seed
    return build_config(TrainConfig, values, values.get("config"))


def _write_fold(path: Path, texts: Sequence[str], labels: Sequence[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels, strict=True))


def finetune_oof(
    model: str,
    texts: Sequence[str],
    labels: np.ndarray,
    names: Sequence[str],
    *,
    folds: int = 5,
    seed: int = 0,
    train_args: Sequence[str] = (),
    work_dir: str | Path | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """(N, M) out-of-fold probabilities (columns in `names`' order) of `jiyi train --model model`
    run once per fold, and {"accuracy": out-of-fold accuracy, "log_loss": ...}."""
    from rich.console import Console

    from jiyi.predict import load
    from jiyi.train import train as train_run

    n, m = len(texts), len(names)
    probs = np.zeros((n, m))
    with tempfile.TemporaryDirectory(dir=work_dir, prefix=".jiyi-audit-") as tmp:
        for k, test in enumerate(stratified_folds(labels, folds, seed)):
            train = np.setdiff1d(np.arange(n), test, assume_unique=True)
            fold_csv = Path(tmp) / f"fold-{k}.csv"
            _write_fold(fold_csv, [texts[i] for i in train], [names[y] for y in labels[train]])
            run = Path(tmp) / f"fold-{k}"
            config = fold_config(model, fold_csv, run, seed, train_args)
            print(
                f"jiyi audit: fold {k + 1}/{folds}: fine-tuning on {len(train)} rows",
                file=sys.stderr,
            )
            train_run(config, console=Console(stderr=True, soft_wrap=True))
            clf = load(run)
            fold_probs = clf.predict_proba([texts[i] for i in test])  # (Q, C) in clf.labels order
            column = {name: c for c, name in enumerate(clf.labels)}
            for j, name in enumerate(names):
                if name in column:
                    probs[test, j] = fold_probs[:, column[name]]
    rows = np.arange(n)
    loss = float(-np.log(np.clip(probs[rows, labels], 1e-12, 1)).mean())
    accuracy = float((probs.argmax(axis=1) == labels).mean())
    return probs, {"log_loss": round(loss, 4), "accuracy": round(accuracy, 4)}
