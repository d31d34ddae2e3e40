"""From start/end logits to an answer: the best span over all windows of a question, or none.

Per window, the `N_BEST` context tokens with the highest start logits are paired with the
`N_BEST` with the highest end logits; a pair (s, e) is a candidate when both are context tokens,
e >= s and the span has at most `max_answer_length` tokens. Its score is start[s] + end[e]. The
null score of a window is start[0] + end[0] (the [CLS] "no answer" position); a question's null
score is the lowest over its windows (the window most sure an answer exists somewhere), its best
span the highest-scoring candidate of any window. The answer is "" when

    null score - best span score > null_threshold

(threshold 0: whichever scores higher wins; a large threshold never abstains, as SQuAD v1.1
data with an answer to every question wants; a negative one abstains more). Character offsets
come from the tokens' offset mapping: the answer is context[char_start[s]:char_end[e]].

The reported score is a probability: softmax(start logits)[s] * softmax(end logits)[e] over the
tokens of the span's window (for no answer, the same at [CLS] in the window of the null score).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jiyi.qa.windows import NO_ANSWER, QAWindows

N_BEST = 20  # start and end candidates per window, as in Hugging Face's run_qa.py


@dataclass(frozen=True)
class AnswerSpan:
    text: str  # "" for no answer
    start: int | None  # character offsets into the context; None for no answer
    end: int | None
    score: float  # the probability described in the module docstring
    null_margin: float  # null score - best span score (logits); > threshold means no answer


def window_candidates(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    is_context: np.ndarray,
    max_answer_length: int,
    n_best: int = N_BEST,
) -> list[tuple[float, int, int]]:
    """(start[s] + end[e], s, e) for the valid spans among a window's n-best starts and ends.

    >>> window_candidates(np.array([0., 5, 1, 0]), np.array([0., 1, 4, 2]),
    ...                   np.array([False, True, True, False]), max_answer_length=2)
    [(9.0, 1, 2), (6.0, 1, 1), (5.0, 2, 2)]
    """
    k = min(n_best, int(is_context.sum()))
    if k == 0:
        return []
    masked_start = np.where(is_context, start_logits, -np.inf)
    masked_end = np.where(is_context, end_logits, -np.inf)
    top_starts = np.argsort(-masked_start, kind="stable")[:k]
    top_ends = np.argsort(-masked_end, kind="stable")[:k]
    out = [
        (float(start_logits[s] + end_logits[e]), int(s), int(e))
        for s in top_starts
        for e in top_ends
        if s <= e < s + max_answer_length
    ]
    return sorted(out, key=lambda c: -c[0])


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def best_answer(
    context: str,
    windows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    max_answer_length: int,
    null_threshold: float,
) -> AnswerSpan:
    """The answer of one question from its windows: (start logits (T,), end logits (T,),
    char_start (T,), char_end (T,)) each; see the module docstring."""
    best: tuple[float, int, int, int] | None = None  # (score, window, s, e)
    null: tuple[float, int] | None = None  # (score, window)
    for w, (start_logits, end_logits, char_start, _) in enumerate(windows):
        null_score = float(start_logits[NO_ANSWER] + end_logits[NO_ANSWER])
        if null is None or null_score < null[0]:
            null = (null_score, w)
        cands = window_candidates(start_logits, end_logits, char_start >= 0, max_answer_length)
        if cands and (best is None or cands[0][0] > best[0]):
            best = (cands[0][0], w, cands[0][1], cands[0][2])
    assert null is not None, "a question has at least one window"
    margin = null[0] - best[0] if best is not None else float("inf")
    if best is None or margin > null_threshold:
        start_logits, end_logits = windows[null[1]][:2]
        p = np.exp(_log_softmax(start_logits)[NO_ANSWER] + _log_softmax(end_logits)[NO_ANSWER])
        return AnswerSpan("", None, None, float(p), margin)
    _, w, s, e = best
    start_logits, end_logits, char_start, char_end = windows[w]
    p = np.exp(_log_softmax(start_logits)[s] + _log_softmax(end_logits)[e])
    a, b = int(char_start[s]), int(char_end[e])
    return AnswerSpan(context[a:b], a, b, float(p), margin)


def decode_answers(
    windows: QAWindows,
    logits: Sequence[tuple[np.ndarray, np.ndarray]],
    contexts: Sequence[str],
    max_answer_length: int,
    null_threshold: float,
) -> list[AnswerSpan]:
    """One answer per question from the (start, end) logits of every window, in window order."""
    per_example: list[list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = [
        [] for _ in range(windows.n_examples)
    ]
    for w, (start_logits, end_logits) in enumerate(logits):
        span = windows.window(w)
        per_example[int(windows.example[w])].append(
            (start_logits, end_logits, windows.char_start[span], windows.char_end[span])
        )
    return [
        best_answer(context, parts, max_answer_length, null_threshold)
        for context, parts in zip(contexts, per_example, strict=True)
    ]
