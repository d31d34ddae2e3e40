"""FAQ answering from a memory: the nearest stored question's answer, or an honest abstention.

>>> answers = ask(Memory.open("runs/faq"), ["how long does delivery take?"])
>>> answers[0]["answer"], answers[0]["score"], answers[0]["matched_question"]

The abstention threshold is calibrated on validation questions, each with the id (or answer) it
should match, or none when the FAQ cannot answer it: the threshold maximises the share of
questions handled right, where answering right or abstaining on a question the best match would
get wrong (or that has no answer) both count as right.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jiyi.memory.knn import Memory


def answer_column(memory: Memory) -> str | None:
    m = memory.manifest
    columns = m.get("payload_columns") or []
    return m.get("answer_column") or (columns[0] if columns else None)


def ask(
    memory: Memory,
    questions: Sequence[str],
    *,
    top_k: int = 1,
    threshold: float | None = None,
) -> list[dict[str, Any]]:
    """For each question: answer (None when abstaining), score, matched_question, id, answered,
    threshold, and up to top_k - 1 alternatives."""
    if threshold is None:
        threshold = memory.manifest.get("ask", {}).get("threshold")
    column = answer_column(memory)
    out = []
    for question, hits in zip(questions, memory.query(questions, k=max(top_k, 1)), strict=True):
        best = hits[0]
        answered = threshold is None or best["score"] >= threshold
        out.append(
            {
                "question": question,
                "answered": answered,
                "answer": _answer(best, column) if answered else None,
                "score": best["score"],
                "matched_question": best["text"],
                "id": best["id"],
                "threshold": threshold,
                "alternatives": [
                    {
                        "answer": _answer(h, column),
                        "score": h["score"],
                        "matched_question": h["text"],
                        "id": h["id"],
                    }
                    for h in hits[1:top_k]
                ],
            }
        )
    return out


def _answer(hit: dict[str, Any], column: str | None) -> Any:
    payload = hit.get("payload") or {}
    return payload.get(column) if column else payload or hit["text"]


def calibrate(
    memory: Memory, questions: Sequence[str], expected: Sequence[str | None], *, by: str = "id"
) -> dict[str, Any]:
    """Choose the abstention threshold on validation questions; `expected[i]` is the id (or,
    with by="answer", the answer text) question i should get, None when it has none."""
    column = answer_column(memory)
    hits = [h[0] for h in memory.query(questions, k=1)]
    scores = np.array([h["score"] for h in hits], dtype=np.float64)
    found = [h["id"] if by == "id" else _answer(h, column) for h in hits]
    right = np.array(
        [e is not None and str(f) == str(e) for f, e in zip(found, expected, strict=True)]
    )
    ordered = np.sort(np.unique(scores))
    cuts = np.concatenate([[-np.inf], (ordered[:-1] + ordered[1:]) / 2, [ordered[-1] + 1e-6]])
    best_t, best_acc = -np.inf, -1.0
    for t in cuts:
        answered = scores >= t
        acc = float(np.mean(np.where(answered, right, ~right)))
        if acc > best_acc + 1e-12:
            best_t, best_acc = float(t), acc
    answered = scores >= best_t
    n_answerable = int(sum(e is not None for e in expected))
    return {
        # unrounded: a rounded midpoint can fall onto a (6-decimal) score and flip a decision
        "threshold": None if not np.isfinite(best_t) else best_t,
        "accuracy": round(best_acc, 4),
        "answered": round(float(answered.mean()), 4),
        "precision": round(float(right[answered].mean()), 4) if answered.any() else None,
        "top1_accuracy_answerable": round(float(right.sum() / n_answerable), 4)
        if n_answerable
        else None,
        "n_validation": len(questions),
        "n_unanswerable": len(questions) - n_answerable,
        "matched_by": by,
    }
