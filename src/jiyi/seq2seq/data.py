"""Source/target pairs from CSV, TSV, JSONL (or any file `jiyi.data.readers` reads), tokenized
for an encoder-decoder and padded into batches whose labels are -100 past each target's end.

>>> pairs = read_pairs("data/train.jsonl")            # {"source": "...", "target": "..."} lines
>>> enc = encode_pairs(tokenizer, pairs.examples, max_length=512, max_target_length=64)
>>> pad_pairs(enc, [0, 1], pad_id=0)["labels"]       # (B, T): target ids, then -100
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jiyi.data.reading import bad_row_advice
from jiyi.errors import JiyiError

IGNORE = -100  # label of the padding after a target: no loss there


@dataclass(frozen=True)
class Pair:
    source: str
    target: str | None  # None: unlabelled (prediction input)
    line: int = 0  # 1-based line (CSV/TSV/JSONL) or row (Parquet/datasets)


@dataclass
class PairData:
    path: Path
    examples: list[Pair]
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)


def read_pairs(
    path: str | Path,
    *,
    source_column: str = "source",
    target_column: str = "target",
    on_bad_rows: str = "error",
) -> PairData:
    """Labelled pairs; the first bad row (empty source or target, ...) in file order is named
    by file and line, or, with on_bad_rows="skip", every bad row is skipped and counted."""
    from jiyi.data.readers import read_examples

    try:
        read = read_examples(
            path,
            text_column=source_column,
            label_column="",  # the target is read as raw text below, not as a label name
            require_labels=False,
            on_bad_rows="skip",  # collected here, to report the first bad row of either column
            extra_columns={target_column: "--target-column"},
        )
    except JiyiError as e:
        raise JiyiError(str(e).replace("--text-column", "--source-column")) from None
    examples, skipped = [], list(read.skipped)
    for ex in read.examples:
        target = (ex.extra or {}).get(target_column)
        if isinstance(target, int | float) and not isinstance(target, bool):
            target = None if isinstance(target, float) and math.isnan(target) else str(target)
        if isinstance(target, str) and target.strip():
            examples.append(Pair(ex.text, target, ex.line))
        elif target is None or isinstance(target, str):
            skipped.append((ex.line, f'empty target in column "{target_column}"'))
        else:
            skipped.append((ex.line, f'target in column "{target_column}" is not text'))
    skipped.sort()
    if skipped and on_bad_rows == "error":
        p = Path(path)
        unit = "row" if p.is_dir() or p.suffix.lower() == ".parquet" else "line"
        line, reason = skipped[0]
        raise JiyiError(f"{path} {unit} {line}: {reason}. {bad_row_advice()}")
    if not examples:
        raise JiyiError(
            f"{path}: no row has both a source and a target ({len(skipped)} bad rows skipped)."
        )
    return PairData(read.path, examples, skipped)


def read_sources(path: str, source_column: str = "source") -> list[str]:
    """Texts to translate or summarise: "-" (stdin) or .txt one per line, or a data file's
    source column."""
    from jiyi.data.readers import read_inputs

    try:
        return [ex.text for ex in read_inputs(path, text_column=source_column)]
    except JiyiError as e:
        raise JiyiError(f"--input {e}".replace("--text-column", "--source-column")) from None


@dataclass
class EncodedPairs:
    """Token ids per example: `sources[i]`, and `labels[i]` (empty lists when unlabelled)."""

    sources: list[list[int]]
    labels: list[list[int]]
    truncated_sources: int = 0
    truncated_targets: int = 0

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def lengths(self) -> np.ndarray:
        """Source plus label tokens per example: what a batch costs (for length grouping)."""
        return np.asarray([len(s) + len(t) for s, t in zip(self.sources, self.labels, strict=True)])

    @property
    def source_lengths(self) -> np.ndarray:
        return np.asarray([len(s) for s in self.sources])


def _tokenize(
    tokenizer: Any, texts: list[str], max_length: int, target: bool
) -> tuple[list[list[int]], int]:
    """Ids of each text with the tokenizer's special tokens; texts over `max_length` tokens are
    re-tokenized with truncation (the special tokens, e.g. the final </s>, stay). Returns the
    ids and how many texts were cut."""
    key = "text_target" if target else "text"
    ids = tokenizer(**{key: texts}, add_special_tokens=True)["input_ids"]
    long = [i for i, row in enumerate(ids) if len(row) > max_length]
    if long:
        cut = tokenizer(**{key: [texts[i] for i in long]}, truncation=True, max_length=max_length)[
            "input_ids"
        ]
        for i, row in zip(long, cut, strict=True):
            ids[i] = row
    return [list(row) for row in ids], len(long)


def encode_pairs(
    tokenizer: Any,
    examples: list[Pair],
    *,
    max_length: int,
    max_target_length: int,
    decoder_start_id: int | None = None,
) -> EncodedPairs:
    """Tokenize sources (at most `max_length` tokens) and targets (`max_target_length`).

    A target that starts with the decoder's start token loses it: the decoder is fed that token
    and must not learn to predict it. BERT2BERT: "[CLS] b c [SEP]" -> labels "b c [SEP]", the
    decoder input "[CLS] b c". T5 ("b c </s>", start <pad>) and BART ("<s> b c </s>", start
    </s>) keep their targets whole.
    """
    sources, cut_sources = _tokenize(tokenizer, [ex.source for ex in examples], max_length, False)
    labels: list[list[int]] = [[] for _ in examples]
    cut_targets = 0
    labelled = [i for i, ex in enumerate(examples) if ex.target is not None]
    if labelled:
        targets = [examples[i].target or "" for i in labelled]
        ids, cut_targets = _tokenize(tokenizer, targets, max_target_length, True)
        for i, row in zip(labelled, ids, strict=True):
            if decoder_start_id is not None and len(row) > 1 and row[0] == decoder_start_id:
                row = row[1:]
            labels[i] = row
    return EncodedPairs(sources, labels, cut_sources, cut_targets)


def pad_pairs(
    enc: EncodedPairs, indices: list[int] | np.ndarray, pad_id: int, with_labels: bool = True
) -> dict[str, torch.Tensor]:
    """One batch, padded to its longest source (and target): input_ids, attention_mask and,
    with_labels, labels with -100 after each target's end."""
    S = max(len(enc.sources[i]) for i in indices)
    ids = np.full((len(indices), S), pad_id, dtype=np.int64)  # (B, S)
    mask = np.zeros((len(indices), S), dtype=np.int64)  # (B, S)
    for row, i in enumerate(indices):
        n = len(enc.sources[i])
        ids[row, :n] = enc.sources[i]
        mask[row, :n] = 1
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if with_labels:
        T = max(1, max(len(enc.labels[i]) for i in indices))
        labels = np.full((len(indices), T), IGNORE, dtype=np.int64)  # (B, T)
        for row, i in enumerate(indices):
            labels[row, : len(enc.labels[i])] = enc.labels[i]
        batch["labels"] = torch.from_numpy(labels)
    return batch
