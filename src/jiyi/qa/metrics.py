"""Exact match and F1 for extractive question answering, as the official SQuAD v2.0 evaluation
script (`evaluate-v2.0.py`) defines them.

An answer is normalised (lower case, punctuation removed, the articles a/an/the removed, runs of
whitespace made one space) before it is compared; a question is scored against each of its gold
answers and keeps the best. A question without an answer has the one gold answer "", so only an
empty prediction scores on it. The official script reports percentages (0-100); jiyi reports
fractions (0-1), like every other metric it writes.

>>> normalize_answer("The  Eiffel-Tower!")
'eiffeltower'
>>> exact_match("the Eiffel Tower", "Eiffel Tower"), round(token_f1("Eiffel Tower", "Tower"), 4)
(1, 0.6667)
>>> squad_metrics([["Paris"], []], ["paris", ""])["exact_match"]
1.0
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation, drop the articles a/an/the, collapse whitespace (in that
    order, as the official script does): "The cat's  hat." -> "cats hat"."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def answer_tokens(s: str) -> list[str]:
    """The normalised answer split on whitespace; [] for "" (and for "the", "?!")."""
    return normalize_answer(s).split() if s else []


def exact_match(gold: str, prediction: str) -> int:
    """1 when the normalised strings are equal, else 0."""
    return int(normalize_answer(gold) == normalize_answer(prediction))


def token_f1(gold: str, prediction: str) -> float:
    """Harmonic mean of token precision and recall over the normalised answers (tokens counted
    with multiplicity). When either side has no tokens (no answer), 1 if both have none, else 0.

    "the big red dog" vs "red dog barked": 2 common tokens, precision 2/3, recall 2/3 -> 0.6667.
    """
    gold_tokens, pred_tokens = answer_tokens(gold), answer_tokens(prediction)
    if not gold_tokens or not pred_tokens:
        return float(gold_tokens == pred_tokens)
    common = Counter(gold_tokens) & Counter(pred_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def gold_answers(answers: Sequence[str]) -> list[str]:
    """The gold answers a prediction is scored against: those that survive normalisation, or
    [""] when none does (an unanswerable question)."""
    kept = [a for a in answers if normalize_answer(a)]
    return kept or [""]


def score_question(answers: Sequence[str], prediction: str) -> tuple[int, float]:
    """(exact match, F1) of one prediction: the best over the gold answers."""
    golds = gold_answers(answers)
    return (
        max(exact_match(g, prediction) for g in golds),
        max(token_f1(g, prediction) for g in golds),
    )


def squad_metrics(golds: Sequence[Sequence[str]], predictions: Sequence[str]) -> dict[str, Any]:
    """Corpus exact match and F1 (means over questions), and the same over the questions that
    have an answer (`has_ans_*`) and those that have none (`no_ans_*`; a question has none when
    its list of gold answers is empty). A breakdown with no questions is None.

    >>> m = squad_metrics([["a cat"], ["the dog"], []], ["cat", "dog barked", "cat"])
    >>> [round(m[k], 4) for k in ("exact_match", "f1", "has_ans_f1", "no_ans_exact_match")]
    [0.3333, 0.5556, 0.8333, 0.0]
    """
    if len(golds) != len(predictions):
        raise ValueError(f"{len(golds)} questions but {len(predictions)} predictions")
    scores = [score_question(g, p) for g, p in zip(golds, predictions, strict=True)]
    has_answer = [bool(g) for g in golds]
    out: dict[str, Any] = {}
    for prefix, keep in (
        ("", [True] * len(scores)),
        ("has_ans_", has_answer),
        ("no_ans_", [not h for h in has_answer]),
    ):
        chosen = [s for s, k in zip(scores, keep, strict=True) if k]
        n = len(chosen)
        out[f"{prefix}exact_match"] = sum(em for em, _ in chosen) / n if n else None
        out[f"{prefix}f1"] = sum(f1 for _, f1 in chosen) / n if n else None
        out[f"{prefix}n"] = n
    return out


def metrics_line(metrics: dict[str, Any], title: str) -> str:
    """One console line: "test: exact match 0.9000 · F1 0.9333 · 30 questions · HasAns (20): ..."."""

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    parts = [f"{title}: exact match {fmt(metrics['exact_match'])} · F1 {fmt(metrics['f1'])}"]
    parts.append(f"{metrics['n']} questions")
    for prefix, name in (("has_ans_", "HasAns"), ("no_ans_", "NoAns")):
        if metrics[f"{prefix}n"]:
            parts.append(
                f"{name} ({metrics[f'{prefix}n']}): EM {fmt(metrics[f'{prefix}exact_match'])} "
                f"F1 {fmt(metrics[f'{prefix}f1'])}"
            )
    return " · ".join(parts)
