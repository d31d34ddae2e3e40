"""Which unlabelled rows to label next: uncertainty of a classifier's probabilities, and
k-center greedy on context vectors. Pure numpy; `jiyi select` and bench/bench_active.py share it.

Uncertainty (higher `priority` = asked first; ties keep the pool's order):

- `uncertainty` (least confidence): 1 - the top probability.
- `margin`: the top probability minus the second; the smallest margin first.
- `entropy`: -sum p log p (nats).

>>> probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.7, 0.3]])
>>> uncertainty_order(probs, "margin").tolist()
[1, 2, 0]

A multi-label model's probabilities are one yes/no question per label: least confidence and
margin are those of the label it is least sure about, entropy is the sum over labels.

Diversity (`k_center_greedy`): repeatedly take the row farthest from everything chosen so far
(the labelled rows, then the picks), on cosine distance of L2-normalised vectors (1 - cos).
Without labelled rows the first pick is the row nearest the mean direction (the most typical
row). On the unit circle at angles 0°, 10°, 90° and 180°, with 0° labelled:

>>> deg = np.radians([10.0, 90.0, 180.0])
>>> order, dist = k_center_greedy(np.c_[np.cos(deg), np.sin(deg)], 3, labelled=np.array([[1.0, 0.0]]))
>>> order.tolist(), dist.round(3).tolist()
([2, 1, 0], [2.0, 1.0, 0.015])
"""

from __future__ import annotations

import numpy as np

from jiyi.active import HYBRID_MEASURE

METRICS = ("cosine", "euclidean")
EPS = 1e-12


def least_confidence(probs: np.ndarray, multilabel: bool = False) -> np.ndarray:
    """(N, C) probabilities -> (N,) 1 - top probability (multi-label: of the least sure label).

    >>> least_confidence(np.array([[0.6, 0.4], [0.2, 0.8]])).round(2).tolist()
    [0.4, 0.2]
    """
    p = _as_probs(probs)
    if multilabel:
        return (1.0 - np.maximum(p, 1.0 - p)).max(axis=1)
    return 1.0 - p.max(axis=1)


def margin(probs: np.ndarray, multilabel: bool = False) -> np.ndarray:
    """(N, C) -> (N,) top probability minus the second (multi-label: |2p - 1| of the least sure
    label); small = uncertain.

    >>> margin(np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])).round(2).tolist()
    [0.2, 0.7]
    """
    p = _as_probs(probs)
    if multilabel:
        return np.abs(2.0 * p - 1.0).min(axis=1)
    if p.shape[1] < 2:
        return 2.0 * p[:, 0] - 1.0
    top2 = np.sort(p, axis=1)[:, -2:]  # (N, 2): second, first
    return top2[:, 1] - top2[:, 0]


def entropy(probs: np.ndarray, multilabel: bool = False) -> np.ndarray:
    """(N, C) -> (N,) entropy in nats (multi-label: the sum of each label's yes/no entropy).

    >>> entropy(np.array([[0.5, 0.5], [1.0, 0.0]])).round(4).tolist()
    [0.6931, 0.0]
    """
    p = _as_probs(probs)
    if multilabel:
        q = np.clip(p, EPS, 1.0 - EPS)
        return np.maximum(-(q * np.log(q) + (1.0 - q) * np.log(1.0 - q)).sum(axis=1), 0.0)
    return np.maximum(-(p * np.log(np.clip(p, EPS, 1.0))).sum(axis=1), 0.0)


def uncertainty_scores(probs: np.ndarray, strategy: str, multilabel: bool = False) -> np.ndarray:
    """The strategy's own score per row: least confidence, margin or entropy (see the module)."""
    measures = {"uncertainty": least_confidence, "margin": margin, "entropy": entropy}
    if strategy not in measures:
        raise ValueError(f"not an uncertainty strategy: {strategy!r}")  # a bug, not user input
    return measures[strategy](probs, multilabel)


def uncertainty_order(probs: np.ndarray, strategy: str, multilabel: bool = False) -> np.ndarray:
    """Row indices, the most uncertain first (ties: the earlier row first).

    >>> uncertainty_order(np.array([[0.8, 0.2], [0.5, 0.5], [0.8, 0.2]]), "entropy").tolist()
    [1, 0, 2]
    """
    score = uncertainty_scores(probs, strategy, multilabel)
    priority = -score if strategy == "margin" else score  # margin: the smallest first
    return np.argsort(-priority, kind="stable")


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero), float64."""
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, EPS)


def distances_to(
    points: np.ndarray, centres: np.ndarray, metric: str = "cosine", chunk: int = 1024
) -> np.ndarray:
    """(N,) distance of each point to its nearest centre ((M, D), M >= 1), in chunks of centres
    so that memory stays N x chunk. `cosine` expects normalised rows (1 - dot product)."""
    best = np.full(len(points), np.inf)
    for start in range(0, len(centres), chunk):
        c = centres[start : start + chunk]  # (m, D)
        if metric == "cosine":
            d = 1.0 - points @ c.T  # (N, m)
        else:
            sq = (points**2).sum(1)[:, None] - 2.0 * points @ c.T + (c**2).sum(1)[None, :]
            d = np.sqrt(np.maximum(sq, 0.0))
        best = np.minimum(best, d.min(axis=1))
    return np.maximum(best, 0.0)


def k_center_greedy(
    vectors: np.ndarray,
    budget: int,
    *,
    labelled: np.ndarray | None = None,
    metric: str = "cosine",
) -> tuple[np.ndarray, np.ndarray]:
    """Pick `budget` rows of `vectors` (N, D), each the farthest from the labelled rows and the
    rows picked before it; returns (picked row indices in order, (budget,) the distance each
    had when picked). With no labelled rows the first pick is the row nearest the mean of the
    rows and its distance is that to the mean. `cosine` normalises every row first (so does
    the caller's reading of the distance: 0 = same direction, 1 = orthogonal, 2 = opposite).

    Points 0, 1, 3 and 10 on a line, nothing labelled: the mean is 3.5, so 3 comes first,
    then 10 (7 away), then 0 (3 away from 3), then 1 (1 away from 0):

    >>> order, dist = k_center_greedy(np.array([[0.0], [1.0], [3.0], [10.0]]), 4, metric="euclidean")
    >>> order.tolist(), dist.tolist()
    ([2, 3, 0, 1], [0.5, 7.0, 3.0, 1.0])
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    points = np.asarray(vectors, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(f"vectors must be (N, D), got shape {points.shape}")
    n = len(points)
    if not 0 <= budget <= n:
        raise ValueError(f"budget {budget} outside 0..{n}")
    if metric == "cosine":
        points = normalise(points)
    has_labelled = labelled is not None and len(labelled) > 0
    order = np.empty(budget, dtype=np.int64)
    picked_at = np.empty(budget)
    if budget == 0:
        return order, picked_at
    if has_labelled:
        centres = np.asarray(labelled, dtype=np.float64)
        centres = normalise(centres) if metric == "cosine" else centres
        nearest = distances_to(points, centres, metric)  # (N,)
        start = 0
    else:
        centre = points.mean(axis=0, keepdims=True)  # (1, D)
        if metric == "cosine":
            centre = normalise(centre)
        to_centre = distances_to(points, centre, metric)
        first = int(np.argmin(to_centre))  # ties: the earliest row
        order[0], picked_at[0] = first, to_centre[first]
        nearest = distances_to(points, points[first : first + 1], metric)
        start = 1
    taken = np.zeros(n, dtype=bool)
    taken[order[:start]] = True
    for k in range(start, budget):
        gaps = np.where(taken, -np.inf, nearest)
        pick = int(np.argmax(gaps))  # ties: the earliest row
        order[k], picked_at[k] = pick, nearest[pick]
        taken[pick] = True
        nearest = np.minimum(nearest, distances_to(points, points[pick : pick + 1], metric))
    return order, picked_at


def hybrid_order(
    probs: np.ndarray,
    vectors_of: np.ndarray | None,
    budget: int,
    candidates: int,
    *,
    labelled: np.ndarray | None = None,
    multilabel: bool = False,
    measure: str = HYBRID_MEASURE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uncertainty, then diversity: the `candidates` most uncertain rows by `measure`, then
    `budget` of them by k-center greedy. `vectors_of` holds the vectors of those candidates
    only, in the order `hybrid_candidates` gives (so a caller embeds just them). Returns
    (picked pool rows in order, their distances, the candidates)."""
    pool_rows = hybrid_candidates(probs, candidates, multilabel=multilabel, measure=measure)
    if vectors_of is None or len(vectors_of) != len(pool_rows):
        raise ValueError("vectors_of must hold one vector per candidate")
    picks, dist = k_center_greedy(vectors_of, budget, labelled=labelled)
    return pool_rows[picks], dist, pool_rows


def hybrid_candidates(
    probs: np.ndarray, candidates: int, *, multilabel: bool = False, measure: str = HYBRID_MEASURE
) -> np.ndarray:
    """The `candidates` most uncertain rows by `measure`, the most uncertain first."""
    return uncertainty_order(probs, measure, multilabel)[: min(candidates, len(probs))]


def _as_probs(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be (N, C), got shape {p.shape}")
    return p
