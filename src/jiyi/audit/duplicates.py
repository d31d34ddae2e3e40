"""Texts that are the same, or nearly, but carry different labels: at least one of each pair is
wrong (or the text cannot decide its label).

- exact: equal after `normalize_text` (NFKC, case folded, punctuation dropped, spaces collapsed);
- near: cosine similarity of the unit context vectors >= a threshold (0.97 by default), computed
  block by block so memory holds (block, N) similarities, never (N, N).

>>> normalize_text("  A  GREAT film!! ")
'a great film'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jiyi.data.text import text_key


def normalize_text(text: str) -> str:
    """NFKC, case folded, punctuation removed, runs of spaces made one, ends stripped
    (`jiyi.data.text.text_key`)."""
    return text_key(text, drop_punctuation=True)


@dataclass(frozen=True)
class ConflictPair:
    """Rows a and b (0-based indices, a < b) with different labels."""

    a: int
    b: int
    kind: str  # "exact" or "near"
    similarity: float


def exact_conflicts(texts: list[str], labels: np.ndarray) -> list[ConflictPair]:
    """Pairs of rows whose normalised texts are equal and labels differ (each row of a group of
    equal texts paired with the group's first row of another label)."""
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        groups.setdefault(normalize_text(text), []).append(i)
    pairs = []
    for rows in groups.values():
        if len(rows) < 2 or len({int(labels[r]) for r in rows}) < 2:
            continue
        for b in rows[1:]:
            a = next((r for r in rows if r < b and labels[r] != labels[b]), None)
            if a is not None:
                pairs.append(ConflictPair(a, b, "exact", 1.0))
    return pairs


def near_conflicts(
    vectors: np.ndarray,
    labels: np.ndarray,
    threshold: float = 0.97,
    *,
    block: int = 1024,
    groups: np.ndarray | None = None,
    limit: int = 10000,
) -> list[ConflictPair]:
    """Pairs (a < b) of differently labelled rows whose cosine similarity is >= `threshold`,
    most similar first, at most `limit`; rows of the same `groups` id (equal normalised texts,
    reported as exact) are not paired again."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)  # (N, D)
    groups = np.full(len(unit), -1) if groups is None else groups
    found: list[ConflictPair] = []
    for start in range(0, len(unit), block):
        sims = unit[start : start + block] @ unit.T  # (B, N)
        rows, cols = np.nonzero(sims >= threshold)
        a = rows + start
        keep = (cols > a) & (labels[a] != labels[cols])  # each pair once, labels differ
        keep &= (groups[a] < 0) | (groups[a] != groups[cols])
        for i, j in zip(a[keep].tolist(), cols[keep].tolist(), strict=True):
            found.append(ConflictPair(i, j, "near", float(sims[i - start, j])))
    found.sort(key=lambda p: (-p.similarity, p.a, p.b))
    return found[:limit]


def label_conflicts(
    texts: list[str], labels: np.ndarray, vectors: np.ndarray | None, threshold: float = 0.97
) -> list[ConflictPair]:
    """Exact conflicts, then near ones (when `vectors` are given and threshold <= 1)."""
    exact = exact_conflicts(texts, labels)
    if vectors is None or threshold > 1:
        return exact
    keys: dict[str, int] = {}
    groups = np.array([keys.setdefault(normalize_text(t), len(keys)) for t in texts])
    return exact + near_conflicts(vectors, labels, threshold, groups=groups)
