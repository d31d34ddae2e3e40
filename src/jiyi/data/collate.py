"""Tokenize once (cached on disk), cut long texts head/tail/head+tail, pad each batch only to its
own longest text, and group texts of similar length into batches."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jiyi.io import atomic_write_bytes


@dataclass
class SpecialTemplate:
    """Where a tokenizer puts its special tokens: `[CLS] a [SEP]` and `[CLS] a [SEP] b [SEP]` for
    BERT, `<s> a </s></s> b </s>` for RoBERTa. Read off the tokenizer itself with a probe."""

    prefix: list[int]
    middle: list[int]
    suffix: list[int]  # after a single text
    pair_suffix: list[int]  # after the second text of a pair
    second_type: int  # token_type id of the second segment

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> SpecialTemplate:
        a = tokenizer("a", add_special_tokens=False)["input_ids"]
        b = tokenizer("b", add_special_tokens=False)["input_ids"]
        single = tokenizer("a")
        pair = tokenizer("a", "b", return_token_type_ids=True)
        ids, pids = single["input_ids"], pair["input_ids"]
        i = _find(ids, a)
        prefix, suffix = ids[:i], ids[i + len(a) :]
        j = _find(pids, a)
        k = _find(pids, b, start=j + len(a))
        types = pair.get("token_type_ids") or [0] * len(pids)
        return cls(prefix, pids[j + len(a) : k], suffix, pids[k + len(b) :], int(types[k]))

    def n_special(self, pair: bool) -> int:
        return len(self.prefix) + (
            len(self.middle) + len(self.pair_suffix) if pair else len(self.suffix)
        )

    def build(self, a: list[int], b: list[int] | None) -> tuple[list[int], list[int]]:
        if b is None:
            ids = self.prefix + a + self.suffix
            return ids, [0] * len(ids)
        first = self.prefix + a + self.middle
        second = b + self.pair_suffix
        return first + second, [0] * len(first) + [self.second_type] * len(second)


def _find(seq: list[int], sub: list[int], start: int = 0) -> int:
    for i in range(start, len(seq) - len(sub) + 1):
        if seq[i : i + len(sub)] == sub:
            return i
    raise ValueError("tokenizer probe failed: content tokens not found in its output")


def cut(ids: list[int], budget: int, strategy: str) -> list[int]:
    """Cut token ids to `budget` tokens.

    head keeps the start, tail the end, head+tail the first quarter and the last three quarters
    (Sun et al. 2019, "How to fine-tune BERT for text classification"):
    >>> cut(list(range(10)), 4, "head+tail")
    [0, 7, 8, 9]
    """
    if len(ids) <= budget:
        return ids
    if budget <= 0:
        return []
    if strategy == "head":
        return ids[:budget]
    if strategy == "tail":
        return ids[len(ids) - budget :]
    head = budget // 4
    return ids[:head] + ids[len(ids) - (budget - head) :]


def split_budget(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """Longest-first: shorten the longer of two segments until both fit.

    >>> split_budget(100, 10, 50)
    (40, 10)
    """
    a, b = len_a, len_b
    while a + b > budget:
        if a >= b:
            a -= 1
        else:
            b -= 1
    return a, b


@dataclass
class Encoded:
    """Token ids of N texts stored flat: text i is ids[offsets[i]:offsets[i+1]]."""

    ids: np.ndarray  # (total_tokens,) int32
    type_ids: np.ndarray  # (total_tokens,) int8
    offsets: np.ndarray  # (N + 1,) int64
    truncated: int  # how many texts were cut to fit max_length

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def encode(
    tokenizer: Any,
    texts: list[str],
    pairs: list[str] | None,
    max_length: int,
    truncation: str = "head+tail",
) -> Encoded:
    """Tokenize texts (and pairs) once, cut each to max_length with the chosen strategy."""
    from jiyi.hf import quiet_transformers

    if not texts:
        return Encoded(np.zeros(0, np.int32), np.zeros(0, np.int8), np.zeros(1, np.int64), 0)
    template = SpecialTemplate.from_tokenizer(tokenizer)
    with quiet_transformers():  # "sequence longer than the maximum" is expected: we cut below
        first = tokenizer(texts, add_special_tokens=False)["input_ids"]
        second = (
            tokenizer(pairs, add_special_tokens=False)["input_ids"] if pairs is not None else None
        )
    budget = max_length - template.n_special(second is not None)
    all_ids: list[list[int]] = []
    all_types: list[list[int]] = []
    truncated = 0
    for i, a in enumerate(first):
        b = second[i] if second is not None else None
        if b is None:
            keep_a, keep_b = min(len(a), budget), 0
        else:
            keep_a, keep_b = split_budget(len(a), len(b), budget)
        if keep_a < len(a) or (b is not None and keep_b < len(b)):
            truncated += 1
        a = cut(a, keep_a, truncation)
        b = cut(b, keep_b, truncation) if b is not None else None
        ids, types = template.build(a, b)
        all_ids.append(ids)
        all_types.append(types)
    offsets = np.zeros(len(all_ids) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(x) for x in all_ids])
    flat = np.fromiter((t for x in all_ids for t in x), dtype=np.int32, count=int(offsets[-1]))
    flat_types = np.fromiter(
        (t for x in all_types for t in x), dtype=np.int8, count=int(offsets[-1])
    )
    return Encoded(flat, flat_types, offsets, truncated)


def cache_dir() -> Path:
    return Path(os.environ.get("JIYI_CACHE", Path.home() / ".cache" / "jiyi")) / "tokenized"


def encode_cached(
    tokenizer: Any,
    texts: list[str],
    pairs: list[str] | None,
    max_length: int,
    truncation: str = "head+tail",
) -> Encoded:
    """`encode`, memoised on disk by a hash of the texts, the tokenizer's vocabulary and settings,
    so a resumed run or a second run on the same data does not tokenize again."""
    h = hashlib.sha256()
    h.update(json.dumps([max_length, truncation, type(tokenizer).__name__]).encode())
    h.update(json.dumps(tokenizer.get_vocab(), sort_keys=True).encode())
    for group in (texts, pairs or []):
        for t in group:
            h.update(t.encode("utf-8", "surrogatepass"))
            h.update(b"\x00")
        h.update(b"\x01")
    path = cache_dir() / f"{h.hexdigest()[:32]}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return Encoded(z["ids"], z["type_ids"], z["offsets"], int(z["truncated"]))
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt
    enc = encode(tokenizer, texts, pairs, max_length, truncation)
    try:
        import io

        buf = io.BytesIO()
        np.savez(
            buf, ids=enc.ids, type_ids=enc.type_ids, offsets=enc.offsets, truncated=enc.truncated
        )
        atomic_write_bytes(path, buf.getvalue())
    except OSError:
        pass  # a read-only cache only costs speed
    return enc


def pad_batch(
    enc: Encoded, indices: list[int] | np.ndarray, pad_id: int
) -> dict[str, torch.Tensor]:
    """Pad the texts of one batch to the longest among them (dynamic padding)."""
    lengths = [int(enc.offsets[i + 1] - enc.offsets[i]) for i in indices]
    T = max(lengths)
    ids = np.full((len(indices), T), pad_id, dtype=np.int64)  # (B, T)
    types = np.zeros((len(indices), T), dtype=np.int64)  # (B, T)
    mask = np.zeros((len(indices), T), dtype=np.int64)  # (B, T)
    for row, (i, n) in enumerate(zip(indices, lengths, strict=True)):
        s = enc.offsets[i]
        ids[row, :n] = enc.ids[s : s + n]
        types[row, :n] = enc.type_ids[s : s + n]
        mask[row, :n] = 1
    return {
        "input_ids": torch.from_numpy(ids),
        "token_type_ids": torch.from_numpy(types),
        "attention_mask": torch.from_numpy(mask),
    }


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, mega: int = 50
) -> list[list[int]]:
    """Shuffled batches of texts of similar length, deterministic in (seed, epoch).

    Shuffle all indices, cut them into mega-batches of `mega` batches, sort each mega-batch by
    length, slice it into batches, then shuffle the batch order. Padding shrinks to a few tokens
    per batch while the order stays random (`mega=1`: batches of random texts). The longest
    batch goes first, so a run that would run out of memory does so at once.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    batches: list[list[int]] = []
    span = batch_size * mega
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size].tolist() for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    longest = max(range(len(batches)), key=lambda i: max(lengths[j] for j in batches[i]), default=0)
    if batches:
        batches[0], batches[longest] = batches[longest], batches[0]
    return batches


def sorted_batches(
    lengths: np.ndarray, batch_size: int, max_tokens: int | None = None
) -> list[list[int]]:
    """Inference batches: texts sorted by length (least padding); callers restore input order.
    With `max_tokens`, a batch also stops before its padded size (texts × its longest text)
    would pass `max_tokens`, so short texts go in wide batches and long ones in narrow ones; a
    text longer than `max_tokens` is a batch of its own.

    >>> sorted_batches(np.array([3, 50, 4, 48, 5]), 4, max_tokens=100)
    [[1, 3], [4, 2, 0]]
    """
    order = np.argsort(-lengths, kind="stable").tolist()
    if max_tokens is None:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches: list[list[int]] = []
    for i in order:
        batch = batches[-1] if batches else None
        # sorted longest first: the batch's first text sets its padded width
        if batch and len(batch) < batch_size and (len(batch) + 1) * lengths[batch[0]] <= max_tokens:
            batch.append(i)
        else:
            batches.append([i])
    return batches
