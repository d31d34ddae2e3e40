"""Question + context -> overlapping windows of token ids, with the character span of every
context token and, for training, the answer's start/end token in each window.

A window is `[CLS] question [SEP] context piece [SEP]` (the tokenizer's own template), cut by
the fast tokenizer with `truncation="only_second"` and `return_overflowing_tokens`: a context
longer than a window continues in the next one, which repeats the last `stride` context tokens
of the previous. A question is cut to at most half of `max_length` tokens, so a window always
has room for context. A window that holds the whole answer points its start and end at those
tokens; a window that does not (and every window of an unanswerable question) points both at
the first token, [CLS] (index 0), the "no answer" position.

Context "x x x the code is 7 x" (a token per word), answer "7", 4 context tokens per window,
stride 2: windows [x x x the], [x the code is], [code is 7 x]; the answer (token 6) lies in the
third only, at window position len([CLS] q [SEP]) + 2; the first two point at 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jiyi.data.collate import Encoded

NO_ANSWER = 0  # the position a window without the answer points at: [CLS]


@dataclass
class QAWindows:
    """W windows of N questions, stored flat: window w is positions offsets[w]:offsets[w+1]."""

    input_ids: np.ndarray  # (total,) int32
    type_ids: np.ndarray  # (total,) int8
    char_start: np.ndarray  # (total,) int32, first character of the token in the context, or -1
    char_end: np.ndarray  # (total,) int32, one past its last character, or -1 outside the context
    offsets: np.ndarray  # (W + 1,) int64
    example: np.ndarray  # (W,) int64, which question each window belongs to
    start_positions: np.ndarray  # (W,) int64, the answer's first token in the window, or 0
    end_positions: np.ndarray  # (W,) int64, the answer's last token in the window, or 0
    n_examples: int
    questions_cut: int = 0  # questions longer than half of max_length, cut

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def window(self, w: int) -> slice:
        """The positions of window w in the flat arrays: `windows.char_start[windows.window(w)]`."""
        return slice(int(self.offsets[w]), int(self.offsets[w + 1]))

    def to_encoded(self) -> Encoded:
        """The windows as an `Encoded`, for `pad_batch` and the batch samplers."""
        return Encoded(self.input_ids, self.type_ids, self.offsets, 0)


def max_question_tokens(max_length: int) -> int:
    return max_length // 2


def cut_questions(tokenizer: Any, questions: Sequence[str], limit: int) -> tuple[list[str], int]:
    """Questions without leading whitespace, each cut after its `limit`-th token; (texts, how
    many were cut)."""
    questions = [q.lstrip() for q in questions]
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    out, cut = [], 0
    for q, offsets in zip(questions, enc["offset_mapping"], strict=True):
        if len(offsets) > limit:
            q, cut = q[: offsets[limit - 1][1]], cut + 1
        out.append(q)
    return out, cut


def answer_tokens(
    char_start: np.ndarray, char_end: np.ndarray, start: int, end: int
) -> tuple[int, int]:
    """(first, last) token of the character span [start, end) among a window's tokens, or
    (NO_ANSWER, NO_ANSWER) when the window's context does not hold the whole span.

    >>> answer_tokens(np.array([-1, 0, 4, 8, -1]), np.array([-1, 3, 7, 11, -1]), 4, 11)
    (2, 3)
    """
    context = np.flatnonzero(char_start >= 0)
    if len(context) == 0:
        return NO_ANSWER, NO_ANSWER
    first, last = int(context[0]), int(context[-1])
    if not (char_start[first] <= start and char_end[last] >= end):
        return NO_ANSWER, NO_ANSWER
    s = first
    while s <= last and char_start[s] <= start:
        s += 1
    e = last
    while e >= first and char_end[e] >= end:
        e -= 1
    first_token, last_token = s - 1, e + 1
    return first_token, max(first_token, last_token)


def encode_windows(
    tokenizer: Any,
    questions: Sequence[str],
    contexts: Sequence[str],
    max_length: int,
    stride: int,
    answers: Sequence[tuple[int, int] | None] | None = None,
) -> QAWindows:
    """Tokenize question/context pairs into windows (see the module docstring).

    `answers`: per question the character span (start, end) of the answer trained on, None
    when it has none; without `answers` (prediction) every window points at 0.
    """
    questions, n_cut = cut_questions(tokenizer, questions, max_question_tokens(max_length))
    enc = tokenizer(
        questions,
        list(contexts),
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_token_type_ids=True,
        padding=False,
    )
    n_windows = len(enc["input_ids"])
    lengths = [len(ids) for ids in enc["input_ids"]]
    offsets = np.zeros(n_windows + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths)
    total = int(offsets[-1])
    char_start = np.full(total, -1, dtype=np.int32)
    char_end = np.full(total, -1, dtype=np.int32)
    starts = np.full(n_windows, NO_ANSWER, dtype=np.int64)
    ends = np.full(n_windows, NO_ANSWER, dtype=np.int64)
    example = np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)
    for w in range(n_windows):
        base = int(offsets[w])
        for t, (seq, (a, b)) in enumerate(
            zip(enc.sequence_ids(w), enc["offset_mapping"][w], strict=True)
        ):
            if seq == 1:
                char_start[base + t], char_end[base + t] = a, b
        span = answers[int(example[w])] if answers is not None else None
        if span is not None:
            window = slice(base, int(offsets[w + 1]))
            starts[w], ends[w] = answer_tokens(char_start[window], char_end[window], *span)
    types = enc.get("token_type_ids") or [[0] * n for n in lengths]
    return QAWindows(
        input_ids=np.fromiter((t for ids in enc["input_ids"] for t in ids), np.int32, total),
        type_ids=np.fromiter((t for ids in types for t in ids), np.int8, total),
        char_start=char_start,
        char_end=char_end,
        offsets=offsets,
        example=example,
        start_positions=starts,
        end_positions=ends,
        n_examples=len(questions),
        questions_cut=n_cut,
    )


def training_span(context: str, start: int, text: str) -> tuple[int, int]:
    """The answer's character span without the whitespace at its ends (which no token covers):
    ("a  b", 1, " b") -> (3, 4)."""
    end = start + len(text)
    while start < end and context[start].isspace():
        start += 1
    while end > start and context[end - 1].isspace():
        end -= 1
    return start, end
