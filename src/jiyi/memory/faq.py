"""FAQ answering from a memory: the best entry's answer, or an honest abstention.

>>> answers = ask(Memory.open("runs/faq"), ["how long does delivery take?"])
>>> answers[0]["answer"], answers[0]["score"], answers[0]["matched_question"]

The abstention is calibrated on validation questions, each with the id (or answer) it should
match, or none when the FAQ cannot answer it. The threshold maximises the share of questions
handled right, where answering right or abstaining on a question the best match would get wrong
(or that has no answer) both count as right.

With an answer column and enough validation questions (`MIN_FOR_MODEL` of them, at least
`MIN_EACH` handled right and as many not), an entry is matched by its question AND its answer,
and a small confidence model decides when to answer:

- an entry's score is max(cosine to its question, cosine to its answer): a paraphrase whose key
  word appears only in the answer ("price protection") still finds its entry;
- the confidence is P(right) from a logistic model of three numbers, fitted on the validation
  questions: the best entry's question cosine, its answer cosine, and the margin of its score
  over the next entry's (a question close to one entry and far from the rest is answered more
  readily than one close to many), i.e. sigmoid(w_q·q + w_a·a + w_m·margin + b);
- the threshold on that confidence is chosen as above.

The answers are embedded (as passages) the first time a memory is asked, once per process.
Otherwise (no answer column, or too few validation questions of either outcome) entries are
matched by their questions alone and the threshold applies to the cosine score.

Without validation questions (`entry_threshold`, an uncalibrated threshold on the score): each
stored question is asked of the memory itself, and its score on its nearest OTHER entry (one
with another answer) is kept. FAQ entries are written to be distinct topics of one domain, so
that leave-one-out score is what an in-domain question on a topic the FAQ does not cover gets;
it is a best-of-N score like a real question's, and in the model's own cosine scale (MiniLM's
pairs of different entries score 0.0-0.6, while e5 models put even unrelated texts at 0.7-1.0,
as their model card says: no fixed number would do). `ask`
abstains below the lower quartile of those scores: a question less similar to its best entry
than three quarters of the FAQ's own questions are to a neighbouring topic is not about this
FAQ. The quartile, not the minimum (one isolated entry) nor the median (which also abstains on
paraphrases of the FAQ's most isolated topics). Measured on MiniLM: on a ten-entry shop FAQ the
quartile is 0.33, unrelated questions score 0.04-0.15, paraphrases 0.36-0.71; on examples/faq
(46 entries) it is 0.48, the test paraphrases answered right score 0.40-0.85 (all but one above
it). It rejects questions unrelated to every entry; telling an in-domain question the FAQ cannot
answer from one it can takes validation questions (`calibrate`). It is measured once, at build;
rows added later do not move it (`jiyi memory tune --validation` replaces it).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from jiyi.errors import JiyiError
from jiyi.memory.knn import Memory

FEATURES = ("question", "answer", "margin")
MIN_FOR_MODEL = 20  # validation questions needed to fit the confidence model
MIN_EACH = 3  # ... of which at least this many handled right, and this many not
ENTRY_QUANTILE = 0.25  # uncalibrated threshold: this quantile of the nearest-other-entry scores
ENTRY_SAMPLE = 2000  # ... measured on at most this many stored questions
ENTRY_NEIGHBOURS = 32  # ... looking this far for an entry with another answer

# slot -> answer vector, per open memory (answers are embedded once per process)
_ANSWER_VECTORS: weakref.WeakKeyDictionary[Memory, dict[int, np.ndarray]] = (
    weakref.WeakKeyDictionary()
)


def answer_column(memory: Memory) -> str | None:
    m = memory.manifest
    columns = m.get("payload_columns") or []
    return m.get("answer_column") or (columns[0] if columns else None)


def _answer(payload: Any, text: str, column: str | None) -> Any:
    payload = payload or {}
    return payload.get(column) if column else payload or text


def answer_vectors(memory: Memory, positions: np.ndarray) -> np.ndarray:
    """(len(positions), D) unit vectors of the answers of the rows at `positions`, embedded as
    passages; a row without an answer gets its question's vector (its answer adds nothing)."""
    rows = memory.state.rows
    column = answer_column(memory)
    cache = _ANSWER_VECTORS.setdefault(memory, {})
    missing = [int(p) for p in positions if rows.slots[p] not in cache]
    texts = [(rows.payloads[p] or {}).get(column) if column else None for p in missing]
    todo = [(p, str(t)) for p, t in zip(missing, texts, strict=True) if t and str(t).strip()]
    if todo:
        vectors = memory.embed([t for _, t in todo], role="passage")
        for (p, _), v in zip(todo, vectors, strict=True):
            cache[rows.slots[p]] = np.asarray(v, dtype=np.float32)
    question = rows.vectors()
    return np.stack([cache.get(rows.slots[p], question[p]) for p in positions])


def entry_scores(memory: Memory, questions: Sequence[str], with_answers: bool) -> dict[str, Any]:
    """Cosines of every question with every live entry: its question's ("question", (Q, N)),
    its answer's ("answer", (Q, N), only `with_answers`) and the entry score ("score": their
    max, or the question's cosine alone); "positions" (N,) are the rows' positions."""
    questions = list(questions)
    if not questions or any(not str(t).strip() for t in questions):
        raise JiyiError("ask: a question is empty; give some text.")
    memory.refresh()
    if len(memory) == 0:
        raise JiyiError(f"{memory.path}: the memory is empty; add rows first.")
    positions = memory.state.rows.live()
    query = memory.embed(questions)  # (Q, D)
    q = query @ memory.state.rows.vectors()[positions].T  # (Q, N)
    out = {"positions": positions, "question": q, "score": q}
    if with_answers:
        a = query @ answer_vectors(memory, positions).T  # (Q, N)
        out |= {"answer": a, "score": np.maximum(q, a)}
    return out


def _features(s: dict[str, Any], best: np.ndarray) -> np.ndarray:
    """(Q, 3): the best entry's question cosine, answer cosine, margin over the next entry."""
    n = np.arange(len(best))
    score = s["score"]
    if score.shape[1] > 1:
        top2 = -np.partition(-score, 1, axis=1)[:, :2]  # (Q, 2) best, second
        margin = top2[:, 0] - top2[:, 1]
    else:
        margin = np.zeros(len(best))
    return np.stack([s["question"][n, best], s["answer"][n, best], margin], axis=1)


def confidence(model: dict[str, Any], features: np.ndarray) -> np.ndarray:
    """P(right) = sigmoid(features · weights + bias) for (Q, 3) features."""
    z = features @ np.asarray(model["weights"], dtype=np.float64) + float(model["bias"])
    return 1.0 / (1.0 + np.exp(-z))


def ask(
    memory: Memory,
    questions: Sequence[str],
    *,
    top_k: int = 1,
    threshold: float | None = None,
) -> list[dict[str, Any]]:
    """For each question: answer (None when abstaining), score, matched_question, id, answered,
    threshold, threshold_from, calibrated, confidence (None without a confidence model), and up
    to top_k - 1 alternatives. The threshold applies to the confidence when the memory has a
    confidence model, else to the score. `threshold_from` says where it came from: "validation"
    (calibrated, `calibrate`), "entries" (uncalibrated, `entry_threshold`), "given" (the
    `threshold` argument) or None (no threshold: every question is answered); `calibrated` is
    true for "validation" only."""
    settings = memory.manifest.get("ask", {})
    if threshold is None:
        threshold = settings.get("threshold")
        source = threshold_source(settings) if threshold is not None else None
    else:
        source = "given"
    model = settings.get("confidence")
    column = answer_column(memory)
    k = max(top_k, 1)
    conf: list[float | None] = [None] * len(questions)
    if model is None:  # by question alone: the memory's index, as `jiyi memory query` finds
        ranked = [
            [
                {
                    "answer": _answer(h["payload"], h["text"], column),
                    "score": h["score"],
                    "matched_question": h["text"],
                    "id": h["id"],
                }
                for h in hits
            ]
            for hits in memory.query(questions, k=k)
        ]
    else:  # by question and answer: every entry's two cosines
        s = entry_scores(memory, questions, with_answers=True)
        order = np.argsort(-s["score"], axis=1, kind="stable")[:, :k]  # (Q, k)
        conf = [round(float(c), 6) for c in confidence(model, _features(s, order[:, 0]))]
        rows = memory.state.rows
        ranked = [
            [
                {
                    "answer": _answer(rows.payloads[p], rows.texts[p], column),
                    "score": round(float(s["score"][i, j]), 6),
                    "matched_question": rows.texts[p],
                    "id": rows.ids[p],
                }
                for j in order[i]
                for p in [s["positions"][j]]
            ]
            for i in range(len(questions))
        ]
    out = []
    for question, hits, c in zip(questions, ranked, conf, strict=True):
        best = hits[0]
        answered = threshold is None or (c if c is not None else best["score"]) >= threshold
        out.append(
            {
                "question": question,
                "answered": answered,
                "answer": best["answer"] if answered else None,
                "score": best["score"],
                "confidence": c,
                "matched_question": best["matched_question"],
                "id": best["id"],
                "threshold": threshold,
                "threshold_from": source,
                "calibrated": source == "validation",
                "alternatives": hits[1:top_k],
            }
        )
    return out


def threshold_source(settings: dict[str, Any]) -> str:
    """Where a memory's recorded `ask` threshold came from: "entries" or "validation" (memories
    calibrated before `threshold_from` was recorded have only the validation counts)."""
    return str(settings.get("threshold_from") or "validation")


def entry_threshold(memory: Memory, *, quantile: float = ENTRY_QUANTILE) -> dict[str, Any]:
    """An uncalibrated abstention threshold measured on the FAQ's own questions (no labels):
    the `quantile` of each stored question's score on its nearest entry with another answer,
    the question embedded as `ask` embeds one (see the module docstring for why). Returns the
    `ask` settings to record; the threshold is None when the memory has fewer than two answers.

    >>> entry_threshold(Memory.open("runs/shop-faq"))["threshold"]  # 10 entries, MiniLM
    0.326...
    """
    memory.refresh()
    rows = memory.state.rows
    live = rows.live()
    column = answer_column(memory)
    # rows that share an answer are one entry (several phrasings of one question)
    entry = {
        int(p): ("answer", str(a).strip())
        if a is not None and str(a).strip()
        else ("id", rows.ids[p])
        for p in live
        for a in [(rows.payloads[p] or {}).get(column) if column else None]
    }
    settings: dict[str, Any] = {
        "threshold": None,
        "threshold_on": "score",
        "threshold_from": "entries",
        "confidence": None,
        "quantile": quantile,
        "n_entries": len(set(entry.values())),
    }
    if settings["n_entries"] < 2:
        return settings
    picked = live
    if len(live) > ENTRY_SAMPLE:
        picked = np.sort(np.random.default_rng(0).choice(live, ENTRY_SAMPLE, replace=False))
    prompts = memory.manifest.get("prompts") or {}
    if (prompts.get("query") or "") == (prompts.get("passage") or ""):
        vectors = rows.vectors()[picked]  # a question embeds as its row did
    else:  # asked with the query prompt, as `ask` embeds a question
        vectors = memory.embed([rows.texts[p] for p in picked])
    scores, positions = memory.search(vectors, min(len(live), ENTRY_NEIGHBOURS))  # (S, k)
    nearest_other = [
        float(next(s for s, p in zip(row_s, row_p, strict=True) if p >= 0 and entry[p] != own))
        for row_s, row_p, own in zip(
            scores, positions, [entry[int(p)] for p in picked], strict=True
        )
        if any(p >= 0 and entry[p] != own for p in row_p)
    ]
    if not nearest_other:
        return settings
    values = np.asarray(nearest_other)
    settings |= {
        "threshold": round(float(np.quantile(values, quantile)), 6),
        "n_measured": len(values),
        "nearest_other": {
            name: round(float(np.quantile(values, q)), 4)
            for name, q in (("min", 0.0), ("q25", 0.25), ("median", 0.5), ("max", 1.0))
        },
    }
    return settings


def best_threshold(values: np.ndarray, right: np.ndarray) -> tuple[float, float]:
    """(threshold, share handled right): answer when value >= threshold. Cuts lie midway
    between neighbouring values; ties keep the lowest threshold (answer the most).

    >>> best_threshold(np.array([0.2, 0.4, 0.8]), np.array([False, False, True]))
    (0.6000000000000001, 1.0)
    """
    ordered = np.sort(np.unique(values))
    cuts = np.concatenate([[-np.inf], (ordered[:-1] + ordered[1:]) / 2, [ordered[-1] + 1e-6]])
    best_t, best_acc = -np.inf, -1.0
    for t in cuts:
        answered = values >= t
        acc = float(np.mean(np.where(answered, right, ~right)))
        if acc > best_acc + 1e-12:
            best_t, best_acc = float(t), acc
    return best_t, best_acc


def fit_confidence(features: np.ndarray, right: np.ndarray) -> dict[str, Any]:
    """A logistic model of P(right) from (Q, 3) features, fitted on standardised features
    (C = 1) and written back in the features' own units: {"features", "weights", "bias"}."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = features.mean(axis=0), features.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    lr = LogisticRegression(C=1.0, max_iter=1000).fit((features - mean) / scale, right)
    weights = lr.coef_[0] / scale
    bias = float(lr.intercept_[0] - weights @ mean)
    return {
        "features": list(FEATURES),
        "weights": [round(float(w), 6) for w in weights],
        "bias": round(bias, 6),
    }


def calibrate(
    memory: Memory, questions: Sequence[str], expected: Sequence[str | None], *, by: str = "id"
) -> dict[str, Any]:
    """Choose how `ask` abstains, on validation questions; `expected[i]` is the id (or, with
    by="answer", the answer text) question i should get, None when it has none. See the module
    docstring: matching by question and answer with a confidence model when the memory has
    answers and the validation set is large enough, by question and score alone otherwise."""
    column = answer_column(memory)

    def is_right(found: Sequence[Any]) -> np.ndarray:
        return np.array(
            [e is not None and str(f) == str(e) for f, e in zip(found, expected, strict=True)]
        )

    hits = [h[0] for h in memory.query(questions, k=1)]  # by question alone, as `ask` then
    right = is_right([h["id"] if by == "id" else _answer(h["payload"], "", column) for h in hits])
    values = np.array([h["score"] for h in hits], dtype=np.float64)
    model = None
    if column is not None and len(questions) >= MIN_FOR_MODEL:
        both = entry_scores(memory, questions, with_answers=True)
        rows = memory.state.rows  # as caught up by entry_scores
        best_qa = both["score"].argmax(axis=1)
        positions = both["positions"][best_qa]
        right_qa = is_right(
            [
                rows.ids[p] if by == "id" else _answer(rows.payloads[p], "", column)
                for p in positions
            ]
        )
        if min(right_qa.sum(), (~right_qa).sum()) >= MIN_EACH:
            features = _features(both, best_qa)
            model = fit_confidence(features, right_qa)
            right, values = right_qa, confidence(model, features)
    values = np.round(values, 6)  # as `ask` reports and compares them
    t, acc = best_threshold(values, right)
    answered = values >= t
    n_answerable = int(sum(e is not None for e in expected))
    return {
        # unrounded: a rounded midpoint can fall onto a (6-decimal) score and flip a decision
        "threshold": None if not np.isfinite(t) else t,
        "threshold_on": "confidence" if model is not None else "score",
        "threshold_from": "validation",
        "confidence": model,
        "accuracy": round(acc, 4),
        "answered": round(float(answered.mean()), 4),
        "precision": round(float(right[answered].mean()), 4) if answered.any() else None,
        "top1_accuracy_answerable": round(float(right.sum() / n_answerable), 4)
        if n_answerable
        else None,
        "n_validation": len(questions),
        "n_unanswerable": len(questions) - n_answerable,
        "matched_by": by,
    }
