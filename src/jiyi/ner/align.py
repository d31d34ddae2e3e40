"""Words to sub-words and back: label the first sub-word of each word (the next one when the first
is a bare ▁ word-start marker), cut long sentences into
overlapping windows at word starts, merge window predictions back to one score row per word, and
split raw text into words with exact character offsets."""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jiyi.data.collate import Encoded, SpecialTemplate

IGNORE = -100  # the label id the loss skips (torch's CrossEntropyLoss ignore_index)


@dataclass
class WordWindows:
    """Encoded windows of N sentences, stored flat: window w is positions offsets[w]:offsets[w+1].

    Every window is framed by the tokenizer's special tokens ([CLS] ... [SEP] for BERT). A short
    sentence is one window; a long one several, overlapping. Labels sit on the first sub-word of
    each word in every window that holds it (each window is a training example of its own);
    `is_context` marks, across all windows of a sentence, exactly one position per predictable
    word: its first sub-word in the window where it has the most context on both sides. Words
    that produce no sub-word (a zero-width space, a control character, an empty or whitespace-only
    word) are listed in `dropped` and appear in no window.
    """

    input_ids: np.ndarray  # (total,) int32
    labels: np.ndarray  # (total,) int64, IGNORE at special tokens, continuations, or if unlabelled
    word_ids: np.ndarray  # (total,) int32, index of the word in its sentence; -1 at special tokens
    is_context: np.ndarray  # (total,) bool, the position merge_windows reads for that word
    offsets: np.ndarray  # (W + 1,) int64
    sentence: np.ndarray  # (W,) int64, which sentence each window comes from
    n_words: list[int]  # per sentence
    dropped: list[list[int]]  # per sentence, indices of the words the tokenizer dropped

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def window(self, w: int) -> slice:
        """The positions of window w in the flat arrays: `windows.input_ids[windows.window(w)]`."""
        return slice(int(self.offsets[w]), int(self.offsets[w + 1]))

    def to_encoded(self) -> Encoded:
        """The windows as an `Encoded` (token_type 0), for `pad_batch` and the batch samplers."""
        return Encoded(self.input_ids, np.zeros(len(self.input_ids), np.int8), self.offsets, 0)


def window_spans(is_start: Sequence[bool], budget: int, stride: int) -> list[tuple[int, int]]:
    """Cut n sub-words into [start, end) windows of at most `budget` sub-words.

    A window ends just before a word start (inside a word only when one word is longer than the
    window), and the next one begins at least `stride` sub-words before that end, moved back to
    the start of the word found there. Windows leave no gap, so every sub-word is in one.
    Ten one-sub-word words, budget 4, stride 1:
    >>> window_spans([True] * 10, 4, 1)
    [(0, 4), (3, 7), (6, 10)]

    Words of 2, 3, 1 and 2 sub-words, budget 4, stride 1: the first window stops before the
    3-sub-word word, and the second cannot start earlier than it without standing still:
    >>> window_spans([True, False, True, False, False, True, True, False], 4, 1)
    [(0, 2), (2, 6), (5, 8)]
    """
    n = len(is_start)
    starts = [p for p in range(n) if is_start[p]]
    spans: list[tuple[int, int]] = []
    s = 0
    while n - s > budget:
        # 1. end at the last word start within (s, s + budget], or mid-word if there is none
        i = bisect.bisect_right(starts, s + budget) - 1
        e = starts[i] if i >= 0 and starts[i] > s else s + budget
        spans.append((s, e))
        # 2. next start: the last word start in (s, e - stride]; failing that the first word
        # start in (s, e]; failing that (inside a long word) e - stride
        t = e - stride
        i = bisect.bisect_right(starts, t) - 1
        if i >= 0 and starts[i] > s:
            s = starts[i]
        else:
            j = bisect.bisect_right(starts, max(t, s))
            s = starts[j] if j < len(starts) and starts[j] <= e else max(t, s + 1)
    spans.append((s, n))
    return spans


def encode_words(
    tokenizer: Any,
    words: list[list[str]],
    max_length: int,
    stride: int,
    label_ids: list[list[int]] | None = None,
) -> WordWindows:
    """Tokenize pre-split sentences and cut them into windows of at most `max_length` tokens.

    `tokenizer` is a fast Hugging Face tokenizer (it must report `word_ids()`; a byte-level BPE
    such as RoBERTa's needs `add_prefix_space=True` for pre-split words). Consecutive windows of a
    long sentence share at least `stride` sub-words (see `window_spans`), so a word near a cut is
    also seen with context on both sides. For "washington is" with labels [3, 0], one window:

    input_ids [CLS] w ##ash ##ington is [SEP]
    labels    -100  3 -100   -100    0  -100
    word_ids   -1   0   0      0     1   -1
    """
    from jiyi.models import quiet_transformers

    template = SpecialTemplate.from_tokenizer(tokenizer)
    budget = max_length - template.n_special(pair=False)
    if budget < 1:
        raise ValueError(f"max_length {max_length} leaves no room between the special tokens")
    if not 0 <= stride < budget:
        raise ValueError(
            f"stride {stride} must be at least 0 and below max_length {max_length} minus "
            f"{template.n_special(pair=False)} special tokens ({budget})"
        )
    if label_ids is not None:
        if len(label_ids) != len(words):
            raise ValueError(f"{len(label_ids)} label rows for {len(words)} sentences")
        for i, (ws, ls) in enumerate(zip(words, label_ids, strict=True)):
            if len(ws) != len(ls):
                raise ValueError(f"sentence {i}: {len(ws)} words but {len(ls)} labels")
    ids: list[int] = []
    labels: list[int] = []
    word_ids: list[int] = []
    is_context: list[bool] = []
    offsets = [0]
    sentence: list[int] = []
    dropped: list[list[int]] = []
    tokenized: list[tuple[list[int], list[int]]] = []  # per sentence: sub-word ids, word ids
    bare = bare_marker_ids(tokenizer)
    if words:
        with quiet_transformers():  # "longer than the maximum": we window below
            enc = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
        # no special tokens were added, so word_ids() holds no None
        tokenized = [
            drop_cjk_markers(enc["input_ids"][k], list(enc.word_ids(k)), words[k], bare)
            for k in range(len(words))
        ]
    for k, (sentence_words, (sub_ids, wid)) in enumerate(zip(words, tokenized, strict=True)):
        present = set(wid)
        dropped.append([j for j in range(len(sentence_words)) if j not in present])
        if not wid:
            continue  # nothing to predict; its words are all in `dropped`
        is_start = [p == 0 or wid[p] != wid[p - 1] for p in range(len(wid))]
        is_label = label_positions(sub_ids, wid, is_start, bare)
        spans = window_spans(is_start, budget, stride)
        # 1. owner of each word: the window where its labelled sub-word is farthest from an edge,
        # min(left, right) + 0.01 * window length; ties go to the earlier window (as HF SQuAD)
        best: dict[int, tuple[float, int]] = {}
        for w, (s, e) in enumerate(spans):
            for p in range(s, e):
                if is_label[p]:
                    score = min(p - s, e - 1 - p) + 0.01 * (e - s)
                    if wid[p] not in best or score > best[wid[p]][0]:
                        best[wid[p]] = (score, w)
        # 2. one framed window per span
        row = label_ids[k] if label_ids is not None else None
        for w, (s, e) in enumerate(spans):
            ids += template.prefix + sub_ids[s:e] + template.suffix
            word_ids += [-1] * len(template.prefix) + wid[s:e] + [-1] * len(template.suffix)
            labels += [IGNORE] * len(template.prefix)
            labels += [
                row[wid[p]] if row is not None and is_label[p] else IGNORE for p in range(s, e)
            ]
            labels += [IGNORE] * len(template.suffix)
            is_context += [False] * len(template.prefix)
            is_context += [is_label[p] and best[wid[p]][1] == w for p in range(s, e)]
            is_context += [False] * len(template.suffix)
            offsets.append(len(ids))
            sentence.append(k)
    return WordWindows(
        input_ids=np.asarray(ids, dtype=np.int32),
        labels=np.asarray(labels, dtype=np.int64),
        word_ids=np.asarray(word_ids, dtype=np.int32),
        is_context=np.asarray(is_context, dtype=bool),
        offsets=np.asarray(offsets, dtype=np.int64),
        sentence=np.asarray(sentence, dtype=np.int64),
        n_words=[len(ws) for ws in words],
        dropped=dropped,
    )


def bare_marker_ids(tokenizer: Any) -> frozenset[int]:
    """Ids of the pieces that only mark a word start and carry no character of it: SentencePiece's
    "▁" and byte-level BPE's "Ġ". XLM-R splits a pre-split Chinese character 江 into ▁ + 江,
    so its first sub-word is the same "▁" for every character."""
    vocab = tokenizer.get_vocab()
    return frozenset(vocab[m] for m in ("\u2581", "\u0120") if m in vocab)


def drop_cjk_markers(
    sub_ids: Sequence[int], wid: Sequence[int], words: Sequence[str], bare: frozenset[int]
) -> tuple[list[int], list[int]]:
    """Drop the bare word-start marker (▁) a SentencePiece tokenizer puts before each pre-split
    CJK character. Chinese is written without spaces, so the model never read "▁ 美 ▁ 国" in
    pretraining, only "美国"; the markers double the sequence and put a space between every two
    characters. A character whose only piece is "▁美" keeps it. Other words keep their marker:
    for them it is a real word boundary.

    >>> drop_cjk_markers([5, 20, 5, 21, 5, 30], [0, 0, 1, 1, 2, 2], ["美", "国", "ok"], {5})
    ([20, 21, 5, 30], [0, 1, 2, 2])
    """
    keep = [
        not (
            sub_ids[p] in bare
            and (p == 0 or wid[p - 1] != wid[p])
            and p + 1 < len(wid)
            and wid[p + 1] == wid[p]
            and is_cjk(words[wid[p]])
        )
        for p in range(len(sub_ids))
    ]
    return (
        [i for i, k in zip(sub_ids, keep, strict=True) if k],
        [w for w, k in zip(wid, keep, strict=True) if k],
    )


def is_cjk(word: str) -> bool:
    """Whether every character of `word` is a CJK ideograph (the characters `split_words` makes a
    word each)."""
    return bool(word) and all(_cjk_pattern().fullmatch(ch) for ch in word)


@functools.cache
def _cjk_pattern() -> re.Pattern[str]:
    return re.compile(f"[{_CJK}]")


def label_positions(
    sub_ids: Sequence[int], wid: Sequence[int], is_start: Sequence[bool], bare: frozenset[int]
) -> list[bool]:
    """Where each word's label sits: its first sub-word, or the next one when the first is a
    bare word-start marker (▁) and the word has more pieces, so the label sits on a piece that
    holds the word's own characters.

    >>> label_positions([5, 9, 5, 7], [0, 0, 1, 1], [True, False, True, False], frozenset({5}))
    [False, True, False, True]
    >>> label_positions([5, 8], [0, 1], [True, True], frozenset({5}))  # a lone ▁ keeps it
    [True, True]
    """
    is_label = list(is_start)
    for p in range(len(wid) - 1):
        if is_start[p] and sub_ids[p] in bare and wid[p + 1] == wid[p]:
            is_label[p], is_label[p + 1] = False, True
    return is_label


def merge_windows(
    windows: WordWindows,
    logits_or_probs: Sequence[np.ndarray],
    n_words_per_sentence: Sequence[int] | None = None,
    *,
    n_labels: int | None = None,
) -> list[np.ndarray]:
    """Per sentence, a (n_words, n_labels) array: each word's first-sub-word scores, read from
    the window that owns it (`is_context`), so a word that two windows overlap counts once.

    `logits_or_probs` holds one (n_positions, n_labels) array per window, n_positions at least
    the window's length (rows past it, padding, are ignored); a padded (W, T, n_labels) array
    works too. A dropped word (no sub-word, see `WordWindows.dropped`) gets a row of NaN: the
    caller predicts "O" for it and still counts it in the evaluation. `n_words_per_sentence`
    defaults to the counts the windows were built from; `n_labels` is needed only when there is
    no window at all.
    """
    n_words = list(windows.n_words if n_words_per_sentence is None else n_words_per_sentence)
    if len(n_words) != len(windows.n_words):
        raise ValueError(f"{len(n_words)} sentence sizes for {len(windows.n_words)} sentences")
    if len(logits_or_probs) != len(windows):
        raise ValueError(f"{len(logits_or_probs)} score arrays for {len(windows)} windows")
    if len(windows):
        first = np.asarray(logits_or_probs[0])
        n_labels = first.shape[-1]
        dtype = first.dtype if np.issubdtype(first.dtype, np.floating) else np.float64
    else:
        dtype = np.float64
    out = [np.full((n, n_labels or 0), np.nan, dtype=dtype) for n in n_words]
    for w in range(len(windows)):
        span = windows.window(w)
        scores = np.asarray(logits_or_probs[w])  # (n_positions, n_labels)
        if scores.shape[0] < span.stop - span.start:
            raise ValueError(
                f"window {w}: {scores.shape[0]} score rows for {span.stop - span.start} positions"
            )
        pos = np.flatnonzero(windows.is_context[span])  # (n_owned,)
        out[int(windows.sentence[w])][windows.word_ids[span][pos]] = scores[pos]
    return out


def char_offsets(text: str, words: Sequence[str]) -> list[tuple[int, int]]:
    """Character [start, end) of each word, found in order in `text`; whatever lies between two
    words (whitespace, characters the words left out) is skipped. Each search starts where the
    previous word ended, so a repeated word maps to its next occurrence:
    >>> char_offsets("a cat, a hat", ["a", "cat", ",", "a", "hat"])
    [(0, 1), (2, 5), (5, 6), (7, 8), (9, 12)]

    The search is greedy: a word also matches inside a longer one ("at" in "cat at" is found in
    "cat"), which cannot happen when `text` is the words joined by spaces or `split_words` made
    them. Raises ValueError if a word is not in the rest of the text.
    """
    out: list[tuple[int, int]] = []
    pos = 0
    for i, word in enumerate(words):
        start = text.find(word, pos)
        if start < 0:
            raise ValueError(f"word {i} {word!r} is not in the text after character {pos}")
        pos = start + len(word)
        out.append((start, pos))
    return out


# The CJK ideographs BERT's tokenizer splits into single characters (`_is_chinese_char`).
_CJK = (
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0002a6df\U0002a700-\U0002ceaf\U0002f800-\U0002fa1f"
)


def _char_class(categories: tuple[str, ...]) -> str:
    """A regex character class body of every code point whose Unicode category starts with one
    of `categories`. Built from this Python's own tables, the same ones `re`'s \\w uses."""
    ranges: list[list[int]] = []
    for cp in [*range(0x20000), *range(0xE0000, 0xE0200)]:  # no marks or format chars elsewhere
        if unicodedata.category(chr(cp)).startswith(categories):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
    return "".join(
        re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "") for a, b in ranges
    )


@functools.cache
def _word_pattern() -> re.Pattern[str]:
    marks = _char_class(("M",))  # combining accents, Indic vowel signs, variation selectors
    invisible = _char_class(("Cc", "Cf"))  # control and zero-width characters: never words
    letter = rf"[^\W{_CJK}][{marks}]*"  # a word character (not CJK) and its combining marks
    return re.compile(
        rf"[{_CJK}][{marks}]*"  # one CJK character
        rf"|(?:{letter})+(?:[-'’.](?:{letter})+)*"  # a word, with inner - ' ’ .
        rf"|[^\w\s{invisible}](?:[{marks}]|\u200d[^\w\s{invisible}])*",  # a symbol; emoji + ZWJ
        re.UNICODE,
    )


def split_words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Split raw text into NER words and their character [start, end) (text[start:end] == word).

    Words are runs of letters and digits, joined across an inner hyphen, apostrophe or period
    ("don't", "state-of-the-art", "U.S", "3.14"); every other visible character is a word of its
    own (punctuation, "$", an emoji with its modifiers and zero-width-joined parts); each CJK
    ideograph is a word of its own, since Chinese NER labels characters. Combining marks stay on
    their letter ("हिन्दी", "e" + U+0301). Whitespace, control and zero-width characters separate
    words and are never words themselves.

    >>> split_words("我在北京Apple工作。")[0]
    ['我', '在', '北', '京', 'Apple', '工', '作', '。']
    >>> split_words("Mr. O'Neil's")
    (['Mr', '.', "O'Neil's"], [(0, 2), (2, 3), (4, 12)])
    """
    words: list[str] = []
    offsets: list[tuple[int, int]] = []
    for m in _word_pattern().finditer(text):
        words.append(m.group())
        offsets.append(m.span())
    return words, offsets
