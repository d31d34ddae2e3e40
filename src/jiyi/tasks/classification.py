"""The adapter of classification and multilabel runs (`jiyi.train`, `jiyi.predict`,
`jiyi.evaluate_run`, `jiyi.report`); the functions every task adapter has (ADAPTER_FUNCTIONS).

Imports nothing heavy at module level: the verbs import what they call.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError


def defaults(config: Any) -> None:
    """Classification's flags need no task-specific defaults (the general ones apply)."""


def validate(config: Any) -> None:
    """Classification and multilabel settings are the general ones `TrainConfig.validate`
    checks (--label-delimiter is multilabel's own flag: `TaskSpec.own_flags`); the labels are
    checked on the data by `jiyi.prepare`. --method and --pair-iterations: `jiyi.fewshot`;
    --pooling mean takes no --lora-r (peft's head of a Hugging Face sequence classifier)."""
    from jiyi.fewshot import check_flags

    check_flags(config)
    if config.pooling != "cls" and config.lora_r is not None:
        raise JiyiError(
            f"--pooling {config.pooling} does not combine with --lora-r: LoRA trains the head of "
            "a Hugging Face sequence classifier (--pooling cls). Drop one of the two."
        )


def train(config: Any, console: Any = None, explicit: set[str] = frozenset()) -> dict[str, Any]:
    from jiyi.fewshot import method_of

    if method_of(config) == "contrastive":  # few-shot, SetFit's two phases (jiyi.fewshot)
        from jiyi.fewshot.train import train_contrastive

        return train_contrastive(config, console, explicit)
    from jiyi.train import train_classifier

    return train_classifier(config, console, explicit)


def load_predictor(run_or_model: str | Path, batch_size: int = 64) -> Any:
    from jiyi.predict import load

    return load(run_or_model, batch_size=batch_size)


def predict(args: argparse.Namespace) -> list[dict[str, Any]]:
    """`jiyi predict [RUN_DIR] [--memory MEM_DIR]`: text, label, score, probabilities per input
    (kNN-augmented with --memory; memory-only without RUN_DIR)."""
    from jiyi.data.readers import read_inputs

    meta: dict[str, Any] = {}
    clf = None
    if args.run_dir is not None:
        clf = load_predictor(args.run_dir, batch_size=args.batch_size)
        meta = clf.meta
    text_column = args.text_column or meta.get("text_column", "text")
    pair_column = args.text_pair_column or meta.get("text_pair_column")
    try:
        examples = read_inputs(args.input, text_column=text_column, text_pair_column=pair_column)
    except JiyiError as e:
        raise JiyiError(f"--input {e}") from None
    texts = [e.text for e in examples]
    pairs = [e.text_pair or "" for e in examples] if pair_column else None
    if args.memory is not None:
        from jiyi.memory.cli import predict_with_memory

        rows = predict_with_memory(args, texts, pairs)
    else:
        assert clf is not None
        rows = clf.predict(texts, pairs) if texts else []
    return [{"text": t, **r} for t, r in zip(texts, rows, strict=True)]


def evaluate(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    from jiyi.evaluate_run import evaluate_run

    return evaluate_run(
        args.run_dir,
        args.data,
        output=args.output,
        on_bad_rows=args.on_bad_rows,
        text_column=args.text_column,
        label_column=args.label_column,
        batch_size=args.batch_size,
        slice_by=args.slice_by,
    )


def show_metrics(metrics: dict[str, Any], title: str) -> None:
    """The classification report table on stderr, then one table per --slice-by column."""
    from rich.console import Console

    from jiyi.report import metrics_table, slice_table

    console = Console(stderr=True)
    console.print(metrics_table(metrics, title=title))
    for column, slices in metrics.get("slices", {}).items():
        console.print(slice_table(column, slices, metrics["slice_gaps"][column]))
