"""Confident learning (Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty
in Dataset Labels", JAIR 2021), from the paper's definitions, in numpy.

Inputs: `probs` (N, M), out-of-sample predicted probabilities p̂(ỹ = j; x) (each row from a model
that never saw that row), and `labels` (N,), the given (possibly wrong) labels ỹ in 0..M-1.

1. Per-class thresholds: t_j = mean of p̂_j(x) over the examples labelled j (`thresholds`).
2. The confident joint C (M, M): C[i][j] counts the examples labelled i whose p̂_j(x) >= t_j,
   with j the argmax of p̂ among the classes at or above their threshold; an example above no
   threshold is not counted (`confident_joint`).
3. Calibration: each row of C is rescaled to the number of examples labelled i, then the whole
   matrix to sum 1: Q̂[i][j] estimates p(ỹ = i, y* = j) (`estimate_joint`).
4. Noise per class: the share of the examples labelled i whose true label is another, 1 − Q̂[i][i]
   / Σ_j Q̂[i][j]; the whole set's noise rate is Σ_{i≠j} Q̂[i][j] (`noise_rates`).
5. Prune by noise rate: for every i ≠ j, the round(N·Q̂[i][j]) examples labelled i with the
   largest margin p̂_j(x) − p̂_i(x) are suspected (`prune_by_noise_rate`).
6. Ranking: self-confidence p̂_ỹ(x), or the normalised margin (p̂_ỹ(x) − max_{k≠ỹ} p̂_k(x) + 1) / 2;
   lower = more likely wrong (`label_quality`).

Worked example (two classes, five rows):

>>> import numpy as np
>>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]])
>>> labels = np.array([0, 0, 0, 1, 1])
>>> thresholds(probs, labels)  # t_0 = (0.9+0.8+0.2)/3, t_1 = (0.7+0.6)/2
array([0.63333333, 0.65      ])
>>> confident_joint(probs, labels)  # row 2 (labelled 0) is confidently 1; row 4 is above none
array([[2, 1],
       [0, 1]])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RANKINGS = ("self_confidence", "normalized_margin")


def _check(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(
            f"probs (N, M) and labels (N,) expected, got {probs.shape}, {labels.shape}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError("labels must lie in 0..M-1")
    return probs, labels


def thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(M,) t_j = the mean self-confidence p̂_j(x) of the examples labelled j. A class no example
    carries gets t_j = 1 (nothing can be confidently it, except a probability of exactly 1)."""
    probs, labels = _check(probs, labels)
    m = probs.shape[1]
    counts = np.bincount(labels, minlength=m)  # (M,)
    sums = np.bincount(labels, weights=probs[np.arange(len(labels)), labels], minlength=m)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 1.0)


def confident_labels(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) the class each example is confidently in: argmax of p̂ over the classes j with
    p̂_j(x) >= t_j; -1 where no class reaches its threshold."""
    probs, labels = _check(probs, labels)
    t = thresholds(probs, labels)
    above = probs >= t[None, :] - 1e-12  # (N, M); the tolerance keeps t_j = p̂_j(x) ties in
    masked = np.where(above, probs, -np.inf)
    best = masked.argmax(axis=1)
    return np.where(above.any(axis=1), best, -1)


def confident_joint(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(M, M) integer counts C[i][j]: examples labelled i that are confidently j (see
    `confident_labels`)."""
    probs, labels = _check(probs, labels)
    m = probs.shape[1]
    y_star = confident_labels(probs, labels)
    kept = y_star >= 0
    joint = np.zeros((m, m), dtype=np.int64)
    np.add.at(joint, (labels[kept], y_star[kept]), 1)
    return joint


def estimate_joint(confident: np.ndarray, label_counts: np.ndarray) -> np.ndarray:
    """Calibrate the confident joint: row i scaled to sum to |X_ỹ=i| (the examples labelled i),
    then the matrix to sum 1. A row with no confident example (but some labelled examples) puts
    its mass on the diagonal: without evidence, those labels are taken as right.

    >>> estimate_joint(np.array([[2, 1], [0, 1]]), np.array([3, 2]))
    array([[0.4, 0.2],
           [0. , 0.4]])
    """
    c = np.asarray(confident, dtype=np.float64)
    counts = np.asarray(label_counts, dtype=np.float64)
    row = c.sum(axis=1, keepdims=True)  # (M, 1)
    calibrated = np.where(row > 0, c / np.maximum(row, 1e-300) * counts[:, None], 0.0)
    empty = (row[:, 0] == 0) & (counts > 0)
    calibrated[empty, empty] = counts[empty]
    total = calibrated.sum()
    return calibrated / total if total > 0 else calibrated


def noise_rates(joint: np.ndarray) -> tuple[np.ndarray, float]:
    """(per-class noise (M,), overall noise) from the estimated joint Q̂: 1 − Q̂[i][i] / Σ_j Q̂[i][j]
    (0 for a class no example carries) and Σ_{i≠j} Q̂[i][j].

    >>> per_class, overall = noise_rates(np.array([[0.4, 0.2], [0.0, 0.4]]))
    >>> per_class.round(4).tolist(), round(overall, 4)
    ([0.3333, 0.0], 0.2)
    """
    q = np.asarray(joint, dtype=np.float64)
    rows = q.sum(axis=1)
    per_class = np.where(rows > 0, 1.0 - np.diag(q) / np.maximum(rows, 1e-300), 0.0)
    return per_class, float(q.sum() - np.trace(q))


def prune_by_noise_rate(probs: np.ndarray, labels: np.ndarray, joint: np.ndarray) -> np.ndarray:
    """(N,) bool: the suspected label errors. For every off-diagonal (i, j), the
    round(N·Q̂[i][j]) examples labelled i with the largest margin p̂_j(x) − p̂_i(x) (ties: the
    earlier row); an example chosen by several j counts once."""
    probs, labels = _check(probs, labels)
    n, m = probs.shape
    suspected = np.zeros(n, dtype=bool)
    for i in range(m):
        rows = np.flatnonzero(labels == i)
        for j in range(m):
            if i == j or not len(rows):
                continue
            k = min(int(np.round(n * joint[i, j])), len(rows))
            if k <= 0:
                continue
            margin = probs[rows, j] - probs[rows, i]
            order = np.argsort(-margin, kind="stable")  # largest margin first
            suspected[rows[order[:k]]] = True
    return suspected


def label_quality(probs: np.ndarray, labels: np.ndarray, method: str) -> np.ndarray:
    """(N,) score in [0, 1], lower = more likely mislabelled: `self_confidence` p̂_ỹ(x), or
    `normalized_margin` (p̂_ỹ(x) − max_{k≠ỹ} p̂_k(x) + 1) / 2.

    >>> label_quality(np.array([[0.7, 0.2, 0.1]]), np.array([1]), "normalized_margin")
    array([0.25])
    """
    probs, labels = _check(probs, labels)
    rows = np.arange(len(labels))
    given = probs[rows, labels]
    if method == "self_confidence":
        return given
    if method == "normalized_margin":
        others = probs.copy()
        others[rows, labels] = -np.inf
        return (given - others.max(axis=1) + 1.0) / 2.0
    raise ValueError(f"ranking {method!r}: choose one of {', '.join(RANKINGS)}")


@dataclass
class ConfidentLearning:
    """Everything the method estimates for one labelled set (see `find_label_issues`)."""

    thresholds: np.ndarray  # (M,)
    confident_joint: np.ndarray  # (M, M) counts
    joint: np.ndarray  # (M, M) calibrated, sums to 1
    noise_per_class: np.ndarray  # (M,)
    noise_rate: float
    suspected: np.ndarray  # (N,) bool
    score: np.ndarray  # (N,) lower = more likely wrong
    order: np.ndarray  # (N,) row indices: suspects by score, then the others by score
    suggested: np.ndarray  # (N,) argmax over the other classes for suspects, else argmax


def find_label_issues(
    probs: np.ndarray, labels: np.ndarray, ranking: str = "self_confidence"
) -> ConfidentLearning:
    """Run steps 1-6 of the module docstring on out-of-sample `probs` and given `labels`."""
    probs, labels = _check(probs, labels)
    n, m = probs.shape
    confident = confident_joint(probs, labels)
    joint = estimate_joint(confident, np.bincount(labels, minlength=m))
    per_class, overall = noise_rates(joint)
    suspected = prune_by_noise_rate(probs, labels, joint)
    score = label_quality(probs, labels, ranking)
    # suspects first (lowest score first), then every other row by score
    order = np.lexsort((np.arange(n), score, ~suspected))
    others = probs.copy()
    others[np.arange(n), labels] = -np.inf
    suggested = np.where(suspected, others.argmax(axis=1), probs.argmax(axis=1))
    return ConfidentLearning(
        thresholds(probs, labels), confident, joint, per_class, overall, suspected, score, order,
        suggested,
    )  # fmt: skip
