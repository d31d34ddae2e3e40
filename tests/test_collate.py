"""Tokenization, truncation strategies, dynamic padding and length-grouped batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from jiyi.data.collate import (
    SpecialTemplate,
    cut,
    encode,
    encode_cached,
    length_grouped_batches,
    pad_batch,
    sorted_batches,
    split_budget,
)
from jiyi.models import load_tokenizer


def test_cut_strategies() -> None:
    ids = list(range(10))
    assert cut(ids, 4, "head") == [0, 1, 2, 3]
    assert cut(ids, 4, "tail") == [6, 7, 8, 9]
    assert cut(ids, 4, "head+tail") == [0, 7, 8, 9]
    assert cut(ids, 20, "head+tail") == ids


@given(st.integers(0, 300), st.integers(0, 300), st.integers(0, 200))
def test_split_budget_fits_and_is_longest_first(a: int, b: int, budget: int) -> None:
    ka, kb = split_budget(a, b, budget)
    assert (ka <= a and kb <= b and ka + kb <= max(budget, 0)) or (
        a + b <= budget and (ka, kb) == (a, b)
    )
    assert abs(ka - kb) <= 1 or ka == a or kb == b


def test_encode_matches_the_tokenizer_when_nothing_is_cut(tiny_model_dir: Path) -> None:
    tok = load_tokenizer(str(tiny_model_dir))
    texts, pairs = ["the film was good", "bad plot"], ["a story", "music"]
    enc = encode(tok, texts, pairs, 32)
    ref = tok(texts, pairs, return_token_type_ids=True)
    for i in range(2):
        s, e = enc.offsets[i], enc.offsets[i + 1]
        assert enc.ids[s:e].tolist() == ref["input_ids"][i]
        assert enc.type_ids[s:e].tolist() == ref["token_type_ids"][i]
    assert enc.truncated == 0


def test_encode_cuts_and_counts(tiny_model_dir: Path) -> None:
    tok = load_tokenizer(str(tiny_model_dir))
    long = " ".join(["film"] * 40)
    enc = encode(tok, [long, "good"], None, 10, "head+tail")
    assert enc.lengths.tolist() == [10, 3] and enc.truncated == 1
    template = SpecialTemplate.from_tokenizer(tok)
    assert enc.ids[0] == template.prefix[0] and enc.ids[9] == template.suffix[-1]


def test_encode_cached_round_trips(tiny_model_dir: Path) -> None:
    tok = load_tokenizer(str(tiny_model_dir))
    a = encode_cached(tok, ["good film", "bad"], None, 16)
    b = encode_cached(tok, ["good film", "bad"], None, 16)
    assert np.array_equal(a.ids, b.ids) and np.array_equal(a.offsets, b.offsets)


def test_pad_batch_is_dynamic(tiny_model_dir: Path) -> None:
    tok = load_tokenizer(str(tiny_model_dir))
    enc = encode(tok, ["good", "the film was really quite good"], None, 32)
    batch = pad_batch(enc, [0, 1], pad_id=0)
    assert batch["input_ids"].shape == (2, int(enc.lengths.max()))
    assert batch["attention_mask"].sum(1).tolist() == enc.lengths.tolist()


def test_length_grouped_batches_cover_everything_once_and_are_deterministic() -> None:
    lengths = np.random.default_rng(0).integers(3, 60, size=1000)
    a = length_grouped_batches(lengths, 32, seed=1, epoch=0)
    assert sorted(i for b in a for i in b) == list(range(1000))
    assert a == length_grouped_batches(lengths, 32, seed=1, epoch=0)
    assert a != length_grouped_batches(lengths, 32, seed=1, epoch=1)
    assert max(lengths[a[0]]) == lengths.max()  # longest batch first
    pad = sum(len(b) * max(lengths[b]) for b in a) - lengths.sum()
    random_pad = sum(32 * max(lengths[i : i + 32]) for i in range(0, 1000, 32)) - lengths.sum()
    assert pad < random_pad / 3


def test_one_batch_pools_are_random_texts() -> None:
    lengths = np.random.default_rng(0).integers(3, 60, size=1000)
    a = length_grouped_batches(lengths, 32, seed=1, epoch=0, mega=1)
    assert sorted(i for b in a for i in b) == list(range(1000))
    assert a == length_grouped_batches(lengths, 32, seed=1, epoch=0, mega=1)
    pad = sum(len(b) * max(lengths[b]) for b in a) - lengths.sum()
    grouped = length_grouped_batches(lengths, 32, seed=1, epoch=0)
    assert pad > 3 * (sum(len(b) * max(lengths[b]) for b in grouped) - lengths.sum())
    spread = np.mean([np.ptp(lengths[b]) for b in a])  # each batch spans most of the lengths
    assert spread > 40


def test_sorted_batches_cover_everything() -> None:
    lengths = np.array([5, 1, 9, 3])
    batches = sorted_batches(lengths, 3)
    assert batches == [[2, 0, 3], [1]]


def test_sorted_batches_by_tokens_are_wide_for_short_texts_and_narrow_for_long() -> None:
    lengths = np.random.default_rng(0).integers(2, 128, size=500)
    batches = sorted_batches(lengths, 64, max_tokens=1024)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for batch in batches:
        widest = max(lengths[i] for i in batch)
        assert len(batch) <= 64 and (len(batch) * widest <= 1024 or len(batch) == 1)
    assert len(batches[0]) == 1024 // lengths.max() and len(batches[-1]) > 5 * len(batches[0])
    for batch in batches[:-1]:  # each batch full: 64 texts, or one more would pass the budget
        assert len(batch) == 64 or (len(batch) + 1) * lengths[batch[0]] > 1024
    assert sorted_batches(np.array([900, 10]), 8, max_tokens=100) == [[0], [1]]  # over: alone
