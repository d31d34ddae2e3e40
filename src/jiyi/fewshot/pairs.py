"""Sentence pairs from a few labelled texts, as SetFit generates them (`num_iterations`).

Each round pairs every text with one random other text of its label (a positive, 1) and one
random text of another label (a negative, 0), so positives and negatives are balanced and
every text is in 2 x rounds pairs. A class with one text pairs it with itself as its positive.

>>> sentence_pairs(np.array([0, 0, 1, 1]), iterations=1, seed=0).shape
(8, 3)
"""

from __future__ import annotations

import numpy as np

from jiyi.errors import JiyiError


def sentence_pairs(labels: np.ndarray, *, iterations: int, seed: int) -> np.ndarray:
    """(N,) class ids -> (2 * N * iterations, 3) int64 rows (first, second, is_positive),
    in generation order (the loop shuffles them), the same for the same seed."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(np.unique(labels)) < 2:
        raise JiyiError("--method contrastive needs single-label training data of 2+ classes.")
    rng = np.random.default_rng(seed)
    members = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
    others = {c: np.flatnonzero(labels != c) for c in members}
    rows: list[tuple[int, int, int]] = []
    for _ in range(iterations):
        for i, c in enumerate(labels.tolist()):
            same = members[c][members[c] != i]
            positive = int(rng.choice(same)) if len(same) else i
            rows.append((i, positive, 1))
            rows.append((i, int(rng.choice(others[c])), 0))
    return np.asarray(rows, dtype=np.int64)
