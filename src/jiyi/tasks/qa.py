"""The adapter of extractive question-answering runs (`jiyi.qa`): the functions every task
adapter has (ADAPTER_FUNCTIONS)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError


def context_room(max_length: int) -> int:
    """Context tokens a window holds beside a question of half its length.

    >>> context_room(128)
    61
    """
    return max_length - max_length // 2 - 3


def defaults(config: Any) -> None:
    """--stride defaults to half the context room of a window, at most 128."""
    if config.stride is None:
        config.stride = min(128, max(0, context_room(config.max_length)) // 2)


def validate(config: Any) -> None:
    """A window must have room for the context (the question takes at most half of
    --max-length), and the settings that would move answer offsets are refused."""
    room = context_room(config.max_length)
    if config.stride >= room:
        raise JiyiError(
            f"--stride {config.stride} must be smaller than {room}, the context tokens a window "
            f"of --max-length {config.max_length} holds next to a question of half its length; "
            "lower --stride or raise --max-length."
        )
    if config.max_answer_length < 1:
        raise JiyiError(f"--max-answer-length must be at least 1, got {config.max_answer_length}.")
    if config.null_threshold != config.null_threshold:  # NaN
        raise JiyiError("--null-threshold must be a number, got nan.")
    if config.augment not in (None, "none"):
        raise JiyiError(
            "--augment does not apply to --task qa: editing the words would move the answers."
        )


def train(config: Any, console: Any = None, explicit: set[str] = frozenset()) -> dict[str, Any]:
    from jiyi.qa.train import train_qa

    return train_qa(config, console, explicit)


def load_predictor(run_or_model: str | Path, batch_size: int = 64) -> Any:
    from jiyi.qa.predict import QuestionAnswerer

    return QuestionAnswerer(run_or_model, batch_size=batch_size)


def predict(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows with a question and a context (JSONL, CSV, SQuAD JSON, or stdin) -> one answer row
    each, in input order."""
    from jiyi.qa.predict import predict_rows

    return predict_rows(args.run_dir, args.input, batch_size=args.batch_size)


def evaluate(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    from jiyi.qa.predict import evaluate_qa_run

    return evaluate_qa_run(
        args.run_dir, args.data, output=args.output, on_bad_rows=args.on_bad_rows,
        batch_size=args.batch_size,
    )  # fmt: skip


def show_metrics(metrics: dict[str, Any], title: str) -> None:
    """Exact match and F1 (overall, HasAns, NoAns) on one line of stderr."""
    from jiyi.qa.metrics import metrics_line

    print(metrics_line(metrics, title), file=sys.stderr)
