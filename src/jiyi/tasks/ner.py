"""The adapter of NER runs (`jiyi.ner`): the functions every task adapter has (ADAPTER_FUNCTIONS)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError

PRETOKENISED_SUFFIXES = (".conll", ".bio", ".iob", ".iob2", ".bioes")


def defaults(config: Any) -> None:
    """NER's --stride default is the general one (a quarter of --max-length, at most 32)."""


def validate(config: Any) -> None:
    """A window of --max-length sub-words ([CLS] and [SEP] included) must advance past --stride."""
    if config.stride >= config.max_length - 2:
        raise JiyiError(
            f"--stride {config.stride} must be smaller than --max-length {config.max_length} - 2."
        )


def train(config: Any, console: Any = None, explicit: set[str] = frozenset()) -> dict[str, Any]:
    from jiyi.ner.train import train_ner

    return train_ner(config, console, explicit)


def load_predictor(run_or_model: str | Path, batch_size: int = 64) -> Any:
    from jiyi.ner.predict import NerTagger

    return NerTagger(run_or_model, batch_size=batch_size)


def is_pretokenised(path: Path) -> bool:
    """CoNLL-style files, or JSONL whose first row has a `tokens` list."""
    if path.suffix.lower() in PRETOKENISED_SUFFIXES:
        return True
    if path.suffix.lower() not in (".jsonl", ".json") or not path.is_file():
        return False
    with open(path, encoding="utf-8-sig") as f:
        first = next((line for line in f if line.strip()), "{}")
    try:
        row = json.loads(first)
    except ValueError:
        return False
    return isinstance(row, dict) and "tokens" in row


def predict(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Raw text (one per line, or a text column) -> entities with character offsets; CoNLL files
    or JSONL with a `tokens` list -> tags and entities with token indices."""
    from jiyi.data.readers import read_inputs
    from jiyi.ner.data import read_ner

    tagger = load_predictor(args.run_dir, batch_size=args.batch_size)
    path = Path(args.input)
    if is_pretokenised(path):
        sentences = [ex.tokens for ex in read_ner(path, labelled=None).examples]
        return tagger.predict_tokens(sentences) if sentences else []
    try:
        texts = [e.text for e in read_inputs(args.input, text_column=args.text_column or "text")]
    except JiyiError as e:
        raise JiyiError(f"--input {e}") from None
    return [{"text": t, **r} for t, r in zip(texts, tagger.predict_texts(texts), strict=True)]


def evaluate(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    from jiyi.ner.predict import evaluate_ner_run

    return evaluate_ner_run(
        args.run_dir, args.data, output=args.output, on_bad_rows=args.on_bad_rows,
        batch_size=args.batch_size,
    )  # fmt: skip


def show_metrics(metrics: dict[str, Any], title: str) -> None:
    """Entity-level precision, recall and F1 per type, as a table on stderr."""
    from rich.console import Console

    from jiyi.ner.metrics import ner_table

    Console(stderr=True).print(ner_table(metrics, title))
