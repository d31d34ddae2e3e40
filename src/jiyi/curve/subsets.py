"""Training-set sizes and the nested, stratified subsets a learning curve trains on.

`parse_sizes` reads `--sizes`; `resolve_sizes` turns them into example counts, raising each to
the per-class minimum (`class_floors`, over the `strata`); `nested_subset` draws the size-n
subset of a seed so that every smaller subset lies inside every larger one and each keeps the
class proportions (`stratified_order`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from jiyi.errors import JiyiError

DEFAULT_SIZES = (0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


def parse_sizes(text: str | None) -> list[tuple[str, float | int]]:
    """`--sizes` -> [(as written, fraction or count)]; a float is a fraction, an int a count.

    >>> parse_sizes("0.05,5%,500,1.0")
    [('0.05', 0.05), ('5%', 0.05), ('500', 500), ('1.0', 1.0)]
    """
    if text is None:
        return [(f"{f:g}", f) for f in DEFAULT_SIZES]
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    if not items:
        raise JiyiError("--sizes is empty: give fractions (0.05, 5%) or counts (500), with commas.")
    out: list[tuple[str, float | int]] = []
    for raw in items:
        try:
            value = float(raw.removesuffix("%"))
        except ValueError:
            raise JiyiError(
                f"--sizes {raw!r}: not a number. Give fractions of the training data (0.05 or 5%) "
                "or counts of examples (500), separated by commas."
            ) from None
        if raw.endswith("%"):
            value /= 100
        count = not raw.endswith("%") and value.is_integer() and ("." not in raw or value > 1)
        if count and value >= 1:
            out.append((raw, int(value)))
        elif not count and 0 < value <= 1 and math.isfinite(value):
            out.append((raw, value))
        else:
            raise JiyiError(
                f"--sizes {raw!r}: a fraction must be in (0, 1] (0.05, 5%, 1.0 for all) and a "
                "count a whole number of examples of at least 1 (500)."
            )
    return out


def strata(examples: Sequence[Any], task: str) -> list[str]:
    """The class each example is stratified by: its label; multilabel: its rarest label
    ("" for an example with none)."""
    if task != "multilabel":
        return [str(e.label) for e in examples]
    counts = Counter(label for e in examples for label in e.label or ())
    return [min(e.label, key=lambda lab: (counts[lab], lab)) if e.label else "" for e in examples]


def class_floors(
    keys: Sequence[str], min_per_class: int, task: str, where: str = "--train"
) -> dict[str, int]:
    """The examples of each class every subset holds; a class with fewer than `min_per_class`
    examples in all is an error (multilabel strata keep what they have)."""
    counts = Counter(keys)
    floors: dict[str, int] = {}
    for key in sorted(counts):
        if counts[key] < min_per_class and task != "multilabel":
            raise JiyiError(
                f"{where}: class {key!r} has {counts[key]} example(s); --min-per-class "
                f"{min_per_class} needs at least {min_per_class} of every class. Add examples of "
                f"{key!r} or lower --min-per-class."
            )
        floors[key] = 0 if key == "" else min(min_per_class, counts[key])
    return floors


def resolve_sizes(
    sizes: Sequence[tuple[str, float | int]], n_train: int, floor: int
) -> tuple[list[int], list[str]]:
    """Requested sizes -> distinct example counts, ascending, and notes on what was changed.

    A size below `floor` (the per-class minimum summed over the classes) is raised to it; sizes
    that come to the same count after raising are trained once.
    """
    notes: list[str] = []
    by_count: dict[int, list[str]] = {}
    for raw, value in sizes:
        n = max(1, round(value * n_train)) if isinstance(value, float) else value
        if n > n_train:
            raise JiyiError(
                f"--sizes {raw}: {n:,} examples, but --train has only {n_train:,}. Use a count up "
                "to that, or a fraction (1.0 is all of it)."
            )
        if n < floor:
            notes.append(
                f"--sizes {raw}: {n:,} examples is below the per-class minimum (--min-per-class, "
                f"{floor:,} examples over all classes); raised to {floor:,}."
            )
            n = floor
        by_count.setdefault(n, []).append(raw)
    for n, raws in by_count.items():
        if len(raws) > 1:
            notes.append(f"--sizes {', '.join(raws)} all come to {n:,} examples: trained once.")
    return sorted(by_count), notes


def stratified_order(keys: Sequence[str], seed: int) -> np.ndarray:
    """One permutation of the examples whose every prefix is stratified: each class is shuffled
    (by `seed`), its r-th example placed at quantile (r + 0.5) / n_class, and the classes merged
    by quantile. A prefix of length k then holds k·p_class examples of each class, ± 1.

    >>> stratified_order(["a", "a", "b", "b"], seed=0).tolist()  # an a and a b in each half
    [2, 0, 1, 3]
    """
    rng = np.random.default_rng(seed)
    _, codes = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    quantile = np.empty(len(codes))
    for c in range(codes.max() + 1 if len(codes) else 0):
        members = rng.permutation(np.flatnonzero(codes == c))
        quantile[members] = (np.arange(len(members)) + 0.5) / len(members)
    return np.lexsort((rng.random(len(codes)), quantile))


def nested_subset(keys: Sequence[str], n: int, seed: int, floors: dict[str, int]) -> np.ndarray:
    """The (sorted) indices of the size-`n` subset of seed `seed`.

    Class c contributes max(floor_c, its count in the shortest stratified prefix (see
    `stratified_order`) for which these contributions sum to n), always its first examples in
    the order. Counts only grow with n, so every smaller subset lies inside every larger one.
    """
    keys = [str(k) for k in keys]
    names = sorted(set(keys))
    index = {name: i for i, name in enumerate(names)}
    codes = np.asarray([index[k] for k in keys], dtype=np.int64)
    floor = np.asarray([floors.get(name, 0) for name in names])
    order = stratified_order(keys, seed)

    def taken(k: int) -> np.ndarray:  # (C,) examples of each class for prefix length k
        return np.maximum(floor, np.bincount(codes[order[:k]], minlength=len(names)))

    if not floor.sum() <= n <= len(keys):
        raise JiyiError(f"a subset of {n} examples needs {floor.sum()} to {len(keys)}.")
    lo, hi = 0, len(keys)  # the smallest prefix k with taken(k).sum() >= n; the sum steps by 0/1
    while lo < hi:
        mid = (lo + hi) // 2
        if taken(mid).sum() >= n:
            hi = mid
        else:
            lo = mid + 1
    counts = taken(lo)
    in_order = codes[order]
    chosen = [order[in_order == c][: counts[c]] for c in range(len(names))]
    return np.sort(np.concatenate(chosen))
