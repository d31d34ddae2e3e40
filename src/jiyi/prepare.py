"""Everything `jiyi train` checks and builds before the first gradient step: read and validate the
data files (all errors surface here, before the run directory exists), carve a validation split,
augment, and tokenize once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jiyi.config import TrainConfig
from jiyi.data.collate import Encoded, encode_cached
from jiyi.data.readers import (
    Example,
    ReadResult,
    check_split_labels,
    label_list,
    read_examples,
    stratified_split,
)
from jiyi.errors import JiyiError


@dataclass
class Split:
    name: str
    examples: list[Example]
    targets: np.ndarray  # (N,) class ids, or (N, C) multi-hot for multilabel
    enc: Encoded | None = None
    source: str = ""

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.examples]


@dataclass
class PreparedData:
    labels: list[str]
    splits: dict[str, Split]
    skipped: dict[str, int] = field(default_factory=dict)
    n_augmented: int = 0


def read_split(config: TrainConfig, flag: str, path: str) -> ReadResult:
    try:
        return read_examples(
            path,
            text_column=config.text_column,
            text_pair_column=config.text_pair_column,
            label_column=config.label_column,
            task=config.task,
            require_labels=True,
            on_bad_rows=config.on_bad_rows,
            label_delimiter=config.label_delimiter,
        )
    except JiyiError as e:
        msg = str(e)
        raise JiyiError(msg if msg.startswith(flag) else f"{flag} {msg}") from None


def targets_for(examples: list[Example], labels: list[str], task: str) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    if task == "multilabel":
        y = np.zeros((len(examples), len(labels)), dtype=np.float32)
        for row, e in enumerate(examples):
            for label in e.label or ():
                y[row, index[label]] = 1.0
        return y
    return np.asarray([index[e.label] for e in examples], dtype=np.int64)


def read_data(config: TrainConfig) -> PreparedData:
    """Read and check train/validation/test; no tokenizer needed, so this runs first and fast."""
    assert config.train is not None
    train = read_split(config, "--train", config.train)
    labels = label_list(train.examples, config.task)
    if config.task == "classification" and len(labels) < 2:
        raise JiyiError(
            f"--train {config.train}: every example has the label {labels[0]!r}; a classifier "
            "needs at least two classes. Check --label-column, or add examples of other classes."
        )
    if config.task == "multilabel" and not labels:
        raise JiyiError(f"--train {config.train}: no example has any label.")
    skipped = {"train": len(train.skipped)}
    splits: dict[str, list[Example]] = {}
    sources = {"train": config.train}
    if config.validation:
        val = read_split(config, "--validation", config.validation)
        check_split_labels(train, val, labels, "--validation")
        splits["train"] = train.examples
        splits["validation"] = val.examples
        skipped["validation"] = len(val.skipped)
        sources["validation"] = config.validation
    else:
        rest, carved = stratified_split(train.examples, config.validation_fraction, config.seed)
        if not carved or not rest:
            raise JiyiError(
                f"--train {config.train}: {len(train.examples)} examples are too few to carve a "
                "validation split; pass --validation FILE."
            )
        splits["train"], splits["validation"] = rest, carved
        sources["validation"] = f"{config.train} (stratified {config.validation_fraction:.0%})"
    if config.test:
        test = read_split(config, "--test", config.test)
        check_split_labels(train, test, labels, "--test")
        splits["test"] = test.examples
        skipped["test"] = len(test.skipped)
        sources["test"] = config.test
    return PreparedData(
        labels=labels,
        splits={
            name: Split(name, ex, targets_for(ex, labels, config.task), source=sources[name])
            for name, ex in splits.items()
        },
        skipped=skipped,
    )


def augment_train(data: PreparedData, config: TrainConfig, tokenizer: Any, model: Any) -> None:
    """Add augmented copies of the training examples (never of validation or test)."""
    if config.augment is None or config.augment.strip().lower() in ("", "none"):
        return
    from jiyi.data.augment import EmbeddingNeighbours, augment_examples, parse_augment

    ops = parse_augment(config.augment)
    if not ops:
        return
    neighbours = None
    if "substitute" in ops or "insert" in ops:
        neighbours = EmbeddingNeighbours(tokenizer, model.get_input_embeddings().weight.detach())
    train = data.splits["train"]
    extra = augment_examples(
        train.examples,
        ops,
        rate=config.augment_rate,
        copies=config.augment_copies,
        seed=config.seed,
        neighbours=neighbours,
    )
    examples = train.examples + extra
    data.splits["train"] = Split(
        "train", examples, targets_for(examples, data.labels, config.task), source=train.source
    )
    data.n_augmented = len(extra)


def tokenize_splits(data: PreparedData, tokenizer: Any, config: TrainConfig) -> None:
    for split in data.splits.values():
        pairs = [e.text_pair or "" for e in split.examples] if config.text_pair_column else None
        split.enc = encode_cached(
            tokenizer, split.texts, pairs, config.max_length, config.truncation
        )
