"""The adapter of seq2seq runs (`jiyi.seq2seq`: summarization, translation): the functions
every task adapter has (ADAPTER_FUNCTIONS)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError


def defaults(config: Any) -> None:
    """seq2seq's generation flags default in `TrainConfig` itself (greedy, no length penalty,
    --max-new-tokens from --max-target-length at generation time)."""


def validate(config: Any) -> None:
    """The seq2seq flags, consistent with each other (given with another --task, they are
    refused through `TaskSpec.own_flags`)."""
    for flag, value, least in (
        ("--max-target-length", config.max_target_length, 2),
        ("--num-beams", config.num_beams, 1),
        ("--max-new-tokens", 1 if config.max_new_tokens is None else config.max_new_tokens, 1),
        ("--no-repeat-ngram-size", config.no_repeat_ngram_size or 0, 0),
    ):
        if value < least:
            raise JiyiError(f"{flag} must be at least {least}, got {value}.")
    if config.length_penalty is not None and config.num_beams == 1:
        raise JiyiError(
            "--length-penalty only applies to beam search: give --num-beams N > 1 with it."
        )
    if config.source_column == config.target_column:
        raise JiyiError(
            f"--source-column and --target-column are both {config.source_column!r}: name "
            "the column of the source text and the column of the target text."
        )
    if config.augment not in (None, "none"):
        raise JiyiError("--augment applies to classification; --task seq2seq has none.")


def train(config: Any, console: Any = None, explicit: set[str] = frozenset()) -> dict[str, Any]:
    from jiyi.seq2seq.train import train_seq2seq

    return train_seq2seq(config, console, explicit)


def load_predictor(run_or_model: str | Path, batch_size: int = 32) -> Any:
    from jiyi.seq2seq.predict import Seq2SeqGenerator

    return Seq2SeqGenerator(run_or_model, batch_size=batch_size)


def predict(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One {"source", "prediction"} row per input text (--text-column names the source column
    when it differs from the run's)."""
    from jiyi.seq2seq.predict import predict_rows

    return predict_rows(
        args.run_dir, args.input, source_column=args.text_column, batch_size=args.batch_size
    )


def evaluate(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    """--text-column / --label-column name the source / target columns when they differ from
    the run's."""
    from jiyi.seq2seq.predict import evaluate_seq2seq_run

    return evaluate_seq2seq_run(
        args.run_dir, args.data, output=args.output, on_bad_rows=args.on_bad_rows,
        source_column=args.text_column, target_column=args.label_column,
        batch_size=args.batch_size,
    )  # fmt: skip


def show_metrics(metrics: dict[str, Any], title: str) -> None:
    """ROUGE, BLEU, chrF, exact match and loss as a small table on stderr."""
    from jiyi.seq2seq.predict import print_metrics

    print_metrics(metrics, title)
