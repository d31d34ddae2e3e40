"""`jiyi curve`: how much labelled data is enough? A learning curve for text classification.

Fine-tune on nested, stratified subsets of the training data (several seeds per size), score
each run on the full validation file, fit a saturating power law metric(n) = a − b·n^(−c) and
say what more data would buy:

    jiyi curve --model minilm --train data/rt/train.csv --validation data/rt/validation.csv \\
               --target 0.85 --memory --output runs/rt-curve

writes DIR/runs/size-N-seed-S/ (a `jiyi train` run each, its subset in train.jsonl),
DIR/curve.json (points, per-size mean/std, the fit, the target estimate, the summary line, the
settings) and DIR/curve.png. A killed curve continues where it stopped: a point is done once its
result is in curve.json; an unfinished run directory is removed and that point trained afresh.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import shutil
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.config import TrainConfig, add_dataclass_flags, build_config
from jiyi.errors import JiyiError
from jiyi.io import atomic_write_bytes, atomic_write_json, atomic_write_text

DEFAULT_SIZES = (0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
# TrainConfig fields the curve sets itself (per point) or has no use for (no flag for them)
CURVE_OWNED = (
    "output",
    "seed",
    "resume",
    "test",
    "validation_fraction",
    "tag_scheme",
    "stride",
    "tokens_column",
    "tags_column",
    "strict",
)
# fields that do not change a run's result: a curve may continue with other values
NOT_COMPARED = (
    *CURVE_OWNED,
    "train",
    "validation",
    "threads",
    "log_every",
    "save_steps",
    "keep_checkpoints",
    "eval_batch_size",
)
LOWER_IS_BETTER = ("log_loss", "ece", "hamming_loss")
FLAT = 0.002  # doubling the data adds less than this (0.2 points): the curve has flattened
MIN_FIT_SIZES = 3
POOR_FIT = 0.9  # R² of the fit on the size means below which the summary warns


@dataclass
class CurveOptions:
    """The curve's own settings (the training settings are a TrainConfig)."""

    sizes: list[tuple[str, float | int]]  # (as written, fraction (float) or count (int))
    seeds: int = 3
    min_per_class: int = 8
    target: float | None = None
    memory: bool = False
    min_steps: int = 0
    bootstrap: int = 1000


# ---- sizes and nested, stratified subsets ---------------------------------------------------


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


# ---- the power law, fitted with uncertainty ---------------------------------------------------


def power_law(n: Any, a: float, b: float, c: float) -> Any:
    """metric(n) = a − b·n^(−c): a is the ceiling, c how fast it is approached."""
    return a - b * np.power(np.asarray(n, dtype=np.float64), -c)


def _bounds(sign: int, bounded: bool) -> tuple[list[float], list[float]]:
    """Bounds of (a, β, c): a score rises to a ceiling a <= 1, a loss falls to a floor a >= 0."""
    if sign > 0:
        return [-np.inf, 0.0, 1e-3], [1.0 if bounded else np.inf, np.inf, 5.0]
    return [0.0, -np.inf, 1e-3], [np.inf, 0.0, 5.0]


def _fit_scaled(
    x: np.ndarray, y: np.ndarray, sign: int, bounded: bool, starts: Sequence[np.ndarray] = ()
) -> tuple[np.ndarray, np.ndarray] | None:
    """Least squares of y = a − β·x^(−c) (x = n / smallest n): ((a, β, c), covariance) or None."""
    from scipy.optimize import OptimizeWarning, curve_fit

    lower, upper = _bounds(sign, bounded)
    if not starts:
        a0 = float(np.clip(y.max() + 0.01 if sign > 0 else y.min() - 0.01, lower[0], upper[0]))
        a0 = min(max(a0, lower[0] + 1e-6), upper[0] - 1e-6)
        beta0 = sign * max(abs(a0 - float(y[x == x.min()].mean())), 1e-3)
        starts = [np.asarray([a0, beta0, c0]) for c0 in (0.3, 0.7, 1.5)]
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for p0 in starts:
        p0 = np.clip(p0, np.asarray(lower) + 1e-9, np.asarray(upper) - 1e-9)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                params, cov = curve_fit(power_law, x, y, p0=p0, bounds=(lower, upper), maxfev=20000)
        except (RuntimeError, ValueError):
            continue
        sse = float(np.sum((power_law(x, *params) - y) ** 2))
        if best is None or sse < best[0]:
            best = (sse, params, cov)
    return None if best is None else (best[1], best[2])


def _to_original(scaled: np.ndarray, n0: float) -> np.ndarray:
    """(..., 3) rows of (a, β, c) fitted on n / n0 -> (a, b, c) on n: b = β·n0^c."""
    out = np.array(scaled, dtype=np.float64)
    out[..., 1] = scaled[..., 1] * np.power(n0, scaled[..., 2])
    return out


def fit_power_law(
    n: Sequence[float], y: Sequence[float], *, higher_is_better: bool = True, bounded: bool = True
) -> tuple[np.ndarray, np.ndarray] | None:
    """(a, b, c) of metric(n) = a − b·n^(−c) by least squares on all points, and the covariance
    of (a, β, c) with β = b·min(n)^(−c) (the scale the fit runs on); None if it fails."""
    n_arr, y_arr = np.asarray(n, dtype=np.float64), np.asarray(y, dtype=np.float64)
    fitted = _fit_scaled(n_arr / n_arr.min(), y_arr, 1 if higher_is_better else -1, bounded)
    if fitted is None:
        return None
    return _to_original(fitted[0], n_arr.min()), fitted[1]


def fit_draws(
    n: np.ndarray,
    y: np.ndarray,
    params: np.ndarray,
    cov: np.ndarray,
    *,
    higher_is_better: bool,
    bounded: bool,
    resamples: int,
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """(R, 3) plausible (a, b, c): refits on the seeds resampled with replacement within each
    size; with one seed per size, draws from the fit's covariance instead. And how they came."""
    rng = np.random.default_rng(seed)
    n0, sign = float(n.min()), 1 if higher_is_better else -1
    groups = [np.flatnonzero(n == size) for size in np.unique(n)]
    start = params.copy()
    start[1] = params[1] / np.power(n0, params[2])  # back to (a, β, c)
    if resamples < 1:
        return np.empty((0, 3)), "none"
    lower, upper = _bounds(sign, bounded)
    if any(len(g) > 1 for g in groups):
        refits = []
        for _ in range(resamples):
            rows = np.concatenate([rng.choice(g, size=len(g)) for g in groups])
            fitted = _fit_scaled(n[rows] / n0, y[rows], sign, bounded, starts=[start])
            if fitted is not None:
                refits.append(fitted[0])
        # a bootstrap of k seeds spreads sqrt((k - 1) / k) too little: widen it back
        k = min(len(g) for g in groups if len(g) > 1)
        draws = start + math.sqrt(k / (k - 1)) * (np.asarray(refits).reshape(-1, 3) - start)
        how = (
            f"bootstrap over seeds ({len(refits)} refits, seeds resampled within each size, "
            f"spread widened by sqrt({k}/{k - 1}))"
        )
    elif np.all(np.isfinite(cov)):
        draws = rng.multivariate_normal(start, cov, size=resamples, check_valid="ignore")
        how = f"normal draws from the fit's covariance ({resamples}): one seed per size"
    else:
        return np.empty((0, 3)), "none (one seed per size and an exact fit: no uncertainty)"
    return _to_original(np.clip(draws, lower, upper), n0), how


def examples_to_reach(target: float, a: Any, b: Any, c: Any) -> Any:
    """n with a − b·n^(−c) = target; inf where the curve never gets there.

    >>> round(float(examples_to_reach(0.85, 0.9, 0.5, 0.4)))  # (0.5 / 0.05) ** 2.5
    316
    """
    a, b, c = (np.asarray(v, dtype=np.float64) for v in (a, b, c))
    ratio = np.divide(b, a - target, out=np.full(np.broadcast(a, b).shape, -1.0), where=a != target)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        n = np.where(ratio > 0, np.power(np.abs(ratio), 1.0 / c), np.inf)
    return np.where(np.isfinite(n), n, np.inf)


def _interval(values: np.ndarray) -> tuple[float | None, float | None]:
    """The central 95% of `values` (inf kept: an interval may be unbounded)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if not len(values):
        return None, None
    lo, hi = np.quantile(values, [0.025, 0.975], method="inverted_cdf")
    return float(lo), float(hi)


def _value(value: float, draws: np.ndarray | None) -> dict[str, float | None]:
    lo, hi = _interval(draws) if draws is not None and len(draws) else (None, None)
    return {"value": float(value), "low": lo, "high": hi}


def analyse(
    points: Sequence[dict[str, Any]],
    metric: str,
    *,
    target: float | None = None,
    resamples: int = 1000,
    n_train: int | None = None,
) -> dict[str, Any]:
    """Per-size statistics, the fit with its uncertainty, what doubling the data adds, the
    target estimate and the summary line of `points` ([{"n", "seed", "metric"}]).

    The fit needs MIN_FIT_SIZES distinct sizes; without it "fit" is None and "fit_note" says why.
    """
    higher, bounded = metric not in LOWER_IS_BETTER, metric != "log_loss"
    good = [p for p in points if p.get("metric") is not None and math.isfinite(p["metric"])]
    n = np.asarray([p["n"] for p in good], dtype=np.float64)
    y = np.asarray([p["metric"] for p in good], dtype=np.float64)
    out: dict[str, Any] = {"by_size": size_stats(good), "fit": None, "doubling": None}
    out["fit_note"] = None
    fitted = None
    if len(np.unique(n)) < MIN_FIT_SIZES:
        out["fit_note"] = (
            f"no fit: {len(np.unique(n))} distinct size(s) have results and a power law needs "
            f"at least {MIN_FIT_SIZES} (add sizes with --sizes)"
        )
    else:
        fitted = fit_power_law(n, y, higher_is_better=higher, bounded=bounded)
        if fitted is None:
            out["fit_note"] = "no fit: the least-squares fit of a − b·n^(−c) did not converge"
    draws = np.empty((0, 3))
    if fitted is not None:
        params, cov = fitted
        draws, how = fit_draws(
            n, y, params, cov, higher_is_better=higher, bounded=bounded, resamples=resamples
        )
        residual = y - power_law(n, *params)
        out["fit"] = {
            "formula": "metric(n) = a - b * n^(-c)",
            **{
                k: _value(v, draws[:, i])
                for i, (k, v) in enumerate(zip("abc", params, strict=True))
            },
            "rmse": float(np.sqrt(np.mean(residual**2))),
            "r2_of_means": _r2_of_means(out["by_size"], params),
            "n_points": len(y),
            "n_sizes": len(np.unique(n)),
            "interval": "95%",
            "uncertainty": how,
        }
        largest = float(n.max())
        gains = power_law(2 * largest, *draws.T) - power_law(largest, *draws.T)
        gain = power_law(2 * largest, *params) - power_law(largest, *params)
        out["doubling"] = {"from": int(largest), "to": int(2 * largest), **_value(gain, gains)}
    out["target"] = (
        None
        if target is None
        else target_estimate(target, out["by_size"], out["fit"], draws, higher)
    )
    out["summary"] = summary_line(out, metric, n_train)
    return out


def _r2_of_means(by_size: list[dict[str, Any]], params: np.ndarray) -> float | None:
    """R² of the fitted curve against the per-size means (None when the means are all equal)."""
    means = np.asarray([s["mean"] for s in by_size])
    fitted = power_law(np.asarray([s["n"] for s in by_size]), *params)
    total = float(np.sum((means - means.mean()) ** 2))
    return None if total == 0 else 1 - float(np.sum((means - fitted) ** 2)) / total


def size_stats(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """[{"n", "seeds", "mean", "std"}] per size, ascending; std is the sample standard
    deviation over the seeds (None for one seed)."""
    groups: dict[int, list[float]] = {}
    for p in points:
        if p.get("metric") is not None:
            groups.setdefault(int(p["n"]), []).append(float(p["metric"]))
    return [
        {
            "n": size,
            "seeds": len(values),
            "mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
        }
        for size, values in sorted(groups.items())
    ]


def target_estimate(
    target: float,
    by_size: list[dict[str, Any]],
    fit: dict[str, Any] | None,
    draws: np.ndarray,
    higher: bool = True,
) -> dict[str, Any]:
    """status: reached (the largest size's mean is there already), estimated (with "n", the
    examples expected to reach it, and its interval), above_asymptote / below_asymptote (the
    fitted ceiling a falls short), or no_fit."""
    info: dict[str, Any] = {"value": target, "status": "no_fit"}
    if by_size:
        last = by_size[-1]
        info.update(observed=last["mean"], at=last["n"])
        if (last["mean"] >= target) if higher else (last["mean"] <= target):
            info["status"] = "reached"
            return info
    if fit is None:
        return info
    a, b, c = (fit[k]["value"] for k in "abc")
    needed = float(examples_to_reach(target, a, b, c))
    if not math.isfinite(needed):
        info["status"] = "above_asymptote" if higher else "below_asymptote"
        return info
    info["status"] = "estimated"
    ns = examples_to_reach(target, *draws.T) if len(draws) else np.empty(0)
    info["n"] = _value(needed, ns)
    for end in ("low", "high"):  # never reached in that share of the draws: unbounded (None)
        if info["n"][end] is not None and not math.isfinite(info["n"][end]):
            info["n"][end] = None
    info["n"]["share_unreached"] = float(np.mean(~np.isfinite(ns))) if len(ns) else None
    return info


def _count(n: float) -> str:
    """An example count for a sentence, 2 significant figures from 1,000: 23,456 -> "23,000"."""
    if not math.isfinite(n):
        return "∞"
    if n >= 1000:
        n = round(n, 1 - math.floor(math.log10(n)))
    return f"{round(n):,}"


def summary_line(result: dict[str, Any], metric: str, n_train: int | None = None) -> str:
    """One line a person can act on, e.g. "accuracy 0.842 ± 0.004 with 8,530 examples (all of
    --train); doubling the data (8,530 → 17,060) is expected to add about 1.2 points (0.4–2.1);
    reaching 0.85 needs about 23,000 examples (15,000–60,000)." Points are hundredths."""
    bounded, higher = metric != "log_loss", metric not in LOWER_IS_BETTER
    scale, unit = (100, " points") if bounded else (1, "")
    sign = 1 if higher else -1
    parts = []
    if result["by_size"]:
        last = result["by_size"][-1]
        spread = f" ± {last['std']:.3f}" if last["std"] is not None else ""
        whole = " (all of --train)" if last["n"] == n_train else ""
        parts.append(f"{metric} {last['mean']:.3f}{spread} with {last['n']:,} examples{whole}")
    fit, doubling, goal = result["fit"], result["doubling"], result["target"]
    if fit is None:
        parts.append(result["fit_note"] or "no fit")
    elif doubling is not None:
        span = f"{doubling['from']:,} → {doubling['to']:,}"
        gain = sign * doubling["value"] * scale
        if gain < FLAT * scale:
            parts.append(f"the curve has flattened: doubling the data ({span}) adds < 0.2{unit}")
        else:
            verb = "add" if higher else "lower it by"
            text = f"doubling the data ({span}) is expected to {verb} about {gain:.1f}{unit}"
            if doubling["low"] is not None:
                lo, hi = sorted(sign * v * scale for v in (doubling["low"], doubling["high"]))
                text += f" ({lo:.1f}–{hi:.1f})"
            parts.append(text)
    if fit is not None and fit["r2_of_means"] is not None and fit["r2_of_means"] < POOR_FIT:
        parts.append(
            f"but the power law fits these points poorly (R² {fit['r2_of_means']:.2f} on the "
            "size means): treat its numbers as rough"
        )
    if goal is not None:
        value = goal["value"]
        if goal["status"] == "reached":
            parts.append(
                f"the target {value} is already reached ({goal['observed']:.3f} with "
                f"{goal['at']:,} examples)"
            )
        elif goal["status"] in ("above_asymptote", "below_asymptote"):
            parts.append(
                f"the target {value} is beyond the fitted ceiling a = {fit['a']['value']:.3f}: "  # type: ignore[index]
                "more data of this kind is not expected to reach it"
            )
        elif goal["status"] == "estimated":
            need = goal["n"]
            text = f"reaching {value} needs about {_count(need['value'])} examples"
            if need["high"] is not None:
                text += f" ({_count(need['low'])}–{_count(need['high'])})"
            elif need["low"] is not None:
                text += (
                    f" (at least {_count(need['low'])}; {need['share_unreached']:.0%} of the "
                    "refits never reach it)"
                )
            parts.append(text)
    return "; ".join(parts) + "."


# ---- the loop: one `jiyi train` run per (size, seed) ------------------------------------------


def curve_settings(config: TrainConfig, options: CurveOptions) -> dict[str, Any]:
    """What the points of a curve depend on; a curve continues only with the same."""
    training = {k: v for k, v in dataclasses.asdict(config).items() if k not in NOT_COMPARED}
    if Path(config.model).exists():
        training["model"] = str(Path(config.model).resolve())
    return {
        "train": str(Path(config.train or "").resolve()),
        "validation": str(Path(config.validation or "").resolve()),
        "min_per_class": options.min_per_class,
        "min_steps": options.min_steps,
        "training": training,
    }


def _check_same(old: dict[str, Any], new: dict[str, Any], out: Path) -> None:
    flat_old = {**old, **old.get("training", {})}
    flat_new = {**new, **new.get("training", {})}
    diffs = [
        f"{k}: {flat_old.get(k)!r} there, {flat_new.get(k)!r} now"
        for k in sorted(set(flat_old) | set(flat_new))
        if k != "training" and flat_old.get(k) != flat_new.get(k)
    ]
    if diffs:
        raise JiyiError(
            f"--output {out} holds a curve made with other settings ({'; '.join(diffs[:5])}). "
            "Rerun with the same settings to continue it, or choose another --output."
        )


def write_subset(path: Path, examples: Sequence[Any], config: TrainConfig) -> None:
    """The subset as JSONL, in the columns the run reads (multilabel labels as JSON lists)."""
    lines = []
    for e in examples:
        row: dict[str, Any] = {config.text_column: e.text}
        if config.text_pair_column:
            row[config.text_pair_column] = e.text_pair or ""
        row[config.label_column] = list(e.label) if isinstance(e.label, tuple) else e.label
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))


def train_point(
    config: TrainConfig,
    subset: Sequence[Any],
    run_dir: Path,
    seed: int,
    min_steps: int = 0,
    console: Any = None,
) -> dict[str, Any]:
    """One `jiyi train` run on `subset` in `run_dir` (removed first if a killed run left it);
    returns {"metric", "best_step", "steps", "train_seconds"}.

    `jiyi train` wants an empty run directory, so the subset is written beside it and moved in
    (as train.jsonl, config.yaml updated to match) once the run has finished. Checkpoints are
    dropped then: an unfinished point is retrained from scratch, never resumed.
    """
    import yaml

    from jiyi import train as train_module

    staging = run_dir.with_name(f".{run_dir.name}.train.jsonl")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    write_subset(staging, subset, config)
    point = dataclasses.replace(
        config, train=str(staging), output=str(run_dir), seed=seed, resume=False, test=None
    )
    per_epoch = math.ceil(math.ceil(len(subset) / config.batch_size) / config.grad_accum)
    if min_steps and config.max_steps is None and config.epochs * per_epoch < min_steps:
        point.max_steps = min_steps
    summary = train_module.train(point, console=console)
    staging.replace(run_dir / "train.jsonl")
    saved = run_dir / "config.yaml"
    if saved.is_file():
        values = yaml.safe_load(saved.read_text("utf-8")) or {}
        values["train"] = str(run_dir / "train.jsonl")
        atomic_write_text(saved, yaml.safe_dump(values, sort_keys=False, allow_unicode=True))
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return {
        "metric": summary.get("best_validation"),
        "best_step": summary.get("best_step"),
        "steps": summary.get("steps"),
        "train_seconds": summary.get("train_seconds"),
    }


def _free_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def memory_points(
    config: TrainConfig,
    train_examples: Sequence[Any],
    val_examples: Sequence[Any],
    labels: list[str],
    subsets: dict[tuple[int, int], np.ndarray],
) -> list[dict[str, Any]]:
    """The kNN memory over the base model's context vectors (mean-pooled last layer, unit
    length, as `jiyi memory build`), one per subset, no training: k and the temperature are
    chosen by cross-validation on the subset, then the full validation file is scored."""
    from jiyi.evaluate import classification_metrics, multilabel_metrics
    from jiyi.inspect.embeddings import embed_texts, load_encoder
    from jiyi.memory.classify import MemoryClassifier
    from jiyi.prepare import targets_for

    encoder = load_encoder(config.model, "--model")
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        encoder.model.to("cuda")

    def embed(examples: Sequence[Any]) -> np.ndarray:
        texts = [e.text for e in examples]
        return embed_texts(
            encoder,
            texts,
            normalize=True,
            batch_size=config.eval_batch_size,
            max_length=config.max_length,
        )

    needed = np.unique(np.concatenate(list(subsets.values())))  # only the rows some subset holds
    train_x = np.zeros((len(train_examples), encoder.hidden_size), dtype=np.float32)
    train_x[needed] = embed([train_examples[i] for i in needed])  # (N, H), unused rows 0
    val_x = embed(val_examples)  # (V, H)
    encoder.model.to("cpu")
    _free_memory()
    multilabel = config.task == "multilabel"
    train_y = targets_for(list(train_examples), labels, config.task)
    val_y = targets_for(list(val_examples), labels, config.task)
    if not multilabel:
        train_y = np.eye(len(labels), dtype=np.float32)[train_y]  # (N, C) one-hot
    out = []
    for (n, seed), rows in subsets.items():
        x, y = train_x[rows], train_y[rows]
        clf = MemoryClassifier.select(x, y, labels, method="knn", seed=seed)
        k = min(int(clf.param), len(rows))
        probs = np.concatenate(
            [
                clf.predict_proba(q, *_top_k(q, x, y, k))
                for q in np.array_split(val_x, max(1, len(val_x) // 1024))
            ]
        )
        if multilabel:
            metrics = multilabel_metrics(val_y, probs, labels, 0.5)
        else:
            metrics = classification_metrics(val_y, probs, labels)
        value = metrics.get(config.metric or "accuracy")
        out.append({"n": n, "seed": seed, "metric": value, "k": k, "temperature": clf.temperature})
    return out


def majority_baseline(
    train_examples: Sequence[Any], val_examples: Sequence[Any], labels: list[str], metric: str
) -> dict[str, Any]:
    """The metric on validation of always predicting the most common training label."""
    from jiyi.evaluate import classification_metrics
    from jiyi.prepare import targets_for

    common = Counter(e.label for e in train_examples).most_common(1)[0][0]
    probs = np.zeros((len(val_examples), len(labels)))
    probs[:, labels.index(common)] = 1.0
    y = targets_for(list(val_examples), labels, "classification")
    value = classification_metrics(y, probs, labels).get(metric)
    return {"predict": common, "metric": None if value is None else float(value)}


def _top_k(query: np.ndarray, keys: np.ndarray, targets: np.ndarray, k: int) -> tuple[Any, Any]:
    """(Q, k) similarities best first and the (Q, k, C) targets of those rows."""
    sims = query @ keys.T  # (Q, N)
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top_sims = np.take_along_axis(sims, top, axis=1)
    order = np.argsort(-top_sims, axis=1)
    top = np.take_along_axis(top, order, axis=1)
    return np.take_along_axis(top_sims, order, axis=1), targets[top]


def run_curve(config: TrainConfig, options: CurveOptions, console: Any = None) -> dict[str, Any]:
    """Train (or find already trained) every (size, seed) point, add the memory series, fit,
    plot; returns what DIR/curve.json holds."""
    from rich.console import Console

    from jiyi.data.readers import check_split_labels, label_list
    from jiyi.models import resolve_model
    from jiyi.prepare import read_split

    console = console or Console(stderr=True, soft_wrap=True)
    # 1. settings and data: every user error surfaces here, before anything is trained
    _check_options(config, options)
    assert config.train and config.validation and config.output
    resolve_model(config.model)
    train = read_split(config, "--train", config.train)
    val = read_split(config, "--validation", config.validation)
    labels = label_list(train.examples, config.task)
    if config.task == "classification" and len(labels) < 2:
        raise JiyiError(f"--train {config.train}: one class ({labels[0]!r}); a curve needs two.")
    check_split_labels(train, val, labels, "--validation")
    examples, n_train = train.examples, len(train.examples)
    keys = strata(examples, config.task)
    floors = class_floors(keys, options.min_per_class, config.task, f"--train {config.train}")
    sizes, notes = resolve_sizes(options.sizes, n_train, sum(floors.values()))
    for note in notes:
        console.print(f"[yellow]{note}[/]")

    # 2. what an earlier, killed or shorter, curve in DIR already holds
    out = Path(config.output)
    settings = curve_settings(config, options)
    result = _load(out / "curve.json")
    if result:
        _check_same(result["settings"], settings, out)
        if result.get("n_train") != n_train:
            raise JiyiError(
                f"--output {out}: its curve was made from {result.get('n_train')} "
                f"training examples, --train has {n_train} now; choose another --output."
            )
    seeds = list(range(options.seeds))
    result = {
        "metric": config.metric,
        "model": config.model,
        "n_train": n_train,
        "n_validation": len(val.examples),
        "labels": labels,
        "class_counts": dict(sorted(Counter(keys).items())),
        "settings": settings,
        "options": {
            "sizes": [raw for raw, _ in options.sizes],
            "seeds": options.seeds,
            "target": options.target,
            "memory": options.memory,
            "bootstrap": options.bootstrap,
        },
        "sizes": sizes,
        "seeds": seeds,
        "notes": notes,
        "points": result.get("points", []) if result else [],
        "memory_points": result.get("memory_points", []) if result else [],
    }
    done = {(p["n"], p["seed"]) for p in result["points"]}

    # 3. the points: seed by seed, so that a first whole curve comes early
    todo = [(n, s) for s in seeds for n in sizes if (n, s) not in done]
    if done:
        console.print(
            f"{len(done)} point(s) already done in {out / 'curve.json'}; {len(todo)} to train."
        )
    for i, (n, seed) in enumerate(todo, 1):
        rows = nested_subset(keys, n, seed, floors)
        run_dir = out / "runs" / f"size-{n}-seed-{seed}"
        console.print(f"[bold]point {i}/{len(todo)}: {n:,} examples, seed {seed}[/] → {run_dir}")
        try:
            record = train_point(
                config, [examples[j] for j in rows], run_dir, seed, options.min_steps, console
            )
        except JiyiError as e:
            raise JiyiError(
                f"point {n:,} examples, seed {seed} ({run_dir}): {e} Finished points are kept in "
                f"{out / 'curve.json'}; rerun the same command to continue."
            ) from None
        finally:
            _free_memory()
        per_class = Counter(keys[j] for j in rows)
        result["points"].append(
            {
                "n": n,
                "seed": seed,
                **record,
                "run_dir": str(run_dir.relative_to(out)),
                "per_class": dict(sorted(per_class.items())),
            }
        )
        atomic_write_json(out / "curve.json", result)

    # 4. the memory series: no training, one kNN classifier per subset
    if options.memory:
        have = {(p["n"], p["seed"]) for p in result["memory_points"]}
        missing = {
            (n, s): nested_subset(keys, n, s, floors)
            for s in seeds
            for n in sizes
            if (n, s) not in have
        }
        if missing:
            console.print(f"kNN memory over {config.model}'s vectors: {len(missing)} subset(s).")
            result["memory_points"] += memory_points(
                config, examples, val.examples, labels, missing
            )
            atomic_write_json(out / "curve.json", result)

    # 5. fit, summary, plot
    metric = config.metric or "accuracy"
    result.update(
        analyse(
            result["points"],
            metric,
            target=options.target,
            resamples=options.bootstrap,
            n_train=n_train,
        )
    )
    if config.task == "classification":
        result["baseline"] = majority_baseline(examples, val.examples, labels, metric)
        last = result["by_size"][-1] if result["by_size"] else None
        value = result["baseline"]["metric"]
        if (
            last
            and value is not None
            and metric not in LOWER_IS_BETTER
            and last["mean"] <= value + FLAT
        ):
            result["summary"] = (
                f"Not learning: at {last['n']:,} examples the fine-tuned runs score no better than "
                f"always predicting {result['baseline']['predict']!r} ({metric} {value:.3f}); train "
                f"longer (--epochs, --min-steps) or raise --lr before reading the curve. "
                + result["summary"]
            )
    if result["memory_points"]:
        result["memory_by_size"] = size_stats(result["memory_points"])
        last = result["memory_by_size"][-1]
        result["summary"] += (
            f" The kNN memory alone (no training): {last['mean']:.3f} at {last['n']:,}."
        )
    atomic_write_json(out / "curve.json", result)
    atomic_write_bytes(out / "curve.png", plot_curve(result))
    return result


def _check_options(config: TrainConfig, options: CurveOptions) -> None:
    if config.task == "ner":
        raise JiyiError("--task ner: jiyi curve handles classification and multilabel.")
    if not config.train:
        raise JiyiError("--train is required: the labelled examples the subsets are drawn from.")
    if not config.validation:
        raise JiyiError(
            "--validation is required: every point is scored on the full file. "
            "`jiyi data export` writes one; or split one off your data."
        )
    if not config.output:
        raise JiyiError("--output is required: the folder for the runs, curve.json and curve.png.")
    for flag, value in (("--seeds", options.seeds), ("--min-per-class", options.min_per_class)):
        if value < 1:
            raise JiyiError(f"{flag} must be at least 1, got {value}.")
    if options.min_steps < 0 or options.bootstrap < 0:
        flag = "--min-steps" if options.min_steps < 0 else "--bootstrap"
        raise JiyiError(f"{flag} must be >= 0.")
    bounded = config.metric != "log_loss"
    if options.target is not None and not (
        math.isfinite(options.target) and (not bounded or 0 <= options.target <= 1)
    ):
        raise JiyiError(f"--target {options.target}: {config.metric} lies in [0, 1].")
    if options.memory and config.text_pair_column:
        raise JiyiError("--memory with --text-pair-column: the kNN memory embeds single texts.")


def _load(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise JiyiError(
            f"{path}: not a curve.json jiyi can read; remove it or choose another --output."
        ) from None
    if not isinstance(data, dict) or "settings" not in data:
        raise JiyiError(f"{path}: not a jiyi curve; choose another --output.")
    return data


# ---- the plot and the table -------------------------------------------------------------------


def plot_curve(result: dict[str, Any]) -> bytes:
    """PNG: the metric against training examples (log x): each seed's point, mean ± std, the
    fitted curve to twice the data, the target, the memory series."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    metric = result["metric"] or "accuracy"
    bounded = metric != "log_loss"
    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xscale("log")
    series = [("fine-tuned", "tab:blue", result["points"], result.get("by_size", []))]
    if result.get("memory_points"):
        series.append(
            (
                "kNN memory (no training)",
                "tab:orange",
                result["memory_points"],
                result.get("memory_by_size", []),
            )
        )
    for name, colour, points, stats in series:
        pts = [p for p in points if p.get("metric") is not None]
        ax.scatter(
            [p["n"] for p in pts],
            [p["metric"] for p in pts],
            s=14,
            alpha=0.5,
            color=colour,
            label=f"{name}, each seed",
        )
        if stats:
            ns = np.asarray([s["n"] for s in stats])
            mean = np.asarray([s["mean"] for s in stats])
            std = np.asarray([s["std"] or 0.0 for s in stats])
            ax.plot(
                ns,
                mean,
                "o-",
                color=colour,
                linewidth=1.5,
                markersize=4,
                label=f"{name}, mean ± std",
            )
            low, high = mean - std, mean + std
            if bounded:
                low, high = np.clip(low, 0, 1), np.clip(high, 0, 1)
            ax.fill_between(ns, low, high, color=colour, alpha=0.15, linewidth=0)
    fit = result.get("fit")
    if fit:
        n_min = min(p["n"] for p in result["points"])
        xs = np.geomspace(n_min, 2 * max(p["n"] for p in result["points"]), 200)
        a, b, c = (fit[k]["value"] for k in "abc")
        ax.plot(
            xs,
            power_law(xs, a, b, c),
            "--",
            color="tab:green",
            label=f"fit a − b·n^(−c): a = {a:.3f}, c = {c:.2f}",
        )
    if result.get("target"):
        target = result["target"]["value"]
        ax.axhline(target, color="tab:red", linestyle=":", label=f"target {target}")
    ax.axvline(
        result["n_train"],
        color="grey",
        linestyle=":",
        linewidth=1,
        label=f"all of --train ({result['n_train']:,})",
    )
    ax.set(
        xlabel="training examples (log scale)",
        ylabel=f"validation {metric}",
        title=f"Learning curve: {Path(str(result['model'])).name}",
    )
    sizes = sorted({p["n"] for p in result["points"]} | {result["n_train"]})
    ax.set_xticks(sizes)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelsize=7, labelrotation=45 if len(sizes) > 6 else 0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer, metadata={"Software": "jiyi"})
    return buffer.getvalue()


def curve_table(result: dict[str, Any]) -> Any:
    """A rich table: per size, the share of --train, the seeds, mean ± std, the fit, memory."""
    from rich.table import Table

    metric = result["metric"] or "accuracy"
    memory = {s["n"]: s for s in result.get("memory_by_size", [])}
    table = Table(title=f"learning curve: validation {metric}")
    for name in (
        "examples",
        "of --train",
        "seeds",
        metric,
        "fit",
        *(["kNN memory"] if memory else []),
    ):
        table.add_column(name, justify="right")
    fit = result.get("fit")
    for s in result.get("by_size", []):
        spread = f" ± {s['std']:.3f}" if s["std"] is not None else ""
        fitted = power_law(s["n"], *(fit[k]["value"] for k in "abc")) if fit else None
        row = [
            f"{s['n']:,}",
            f"{s['n'] / result['n_train']:.1%}",
            str(s["seeds"]),
            f"{s['mean']:.4f}{spread}",
            f"{fitted:.4f}" if fitted is not None else "–",
        ]
        if memory:
            m = memory.get(s["n"])
            row.append(f"{m['mean']:.4f}" if m else "–")
        table.add_row(*row)
    return table


# ---- the verb -------------------------------------------------------------------------------


def cmd_curve(args: argparse.Namespace) -> int:
    from rich.console import Console

    config = build_config(TrainConfig, vars(args), args.config)
    options = CurveOptions(
        sizes=parse_sizes(args.sizes),
        seeds=args.seeds,
        min_per_class=args.min_per_class,
        target=args.target,
        memory=args.memory,
        min_steps=args.min_steps,
        bootstrap=args.bootstrap,
    )
    console = Console(stderr=True, soft_wrap=True)
    result = run_curve(config, options, console)
    console.print(curve_table(result))
    out = Path(config.output or "")
    console.print(f"written: {out / 'curve.json'}, {out / 'curve.png'}")
    print(result["summary"])
    return 0


def add_parsers(verbs: Any) -> None:
    p = verbs.add_parser(
        "curve",
        help="learning curve: how much labelled data is enough",
        description="Fine-tune on nested, stratified subsets of --train (several seeds each), "
        "score every run on the full --validation file, and fit metric(n) = a − b·n^(−c) to say "
        "what more data would buy. Every `jiyi train` flag applies to each run; finished points "
        "are kept, so rerunning a killed or extended curve trains only what is missing.",
        epilog="examples:\n"
        "  jiyi curve --model minilm --train data/rt/train.csv --validation "
        "data/rt/validation.csv --target 0.85 --memory --output runs/rt-curve\n"
        "  jiyi curve --model minilm --train data/rt/train.csv --validation "
        "data/rt/validation.csv --sizes 100,300,1000,3000 --seeds 2 --epochs 5 "
        "--output runs/rt-curve-small",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--output", metavar="DIR", help="folder for runs/, curve.json and curve.png")
    p.add_argument(
        "--sizes",
        metavar="LIST",
        help="training-set sizes, comma-separated: fractions of --train (0.05 or 5%%) or counts "
        "(500) (default: 0.01,0.02,0.05,0.1,0.25,0.5,1.0)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=3,
        metavar="N",
        help="seeds per size, 0..N-1: each draws its own subset and trains with it (default 3)",
    )
    p.add_argument(
        "--min-per-class",
        type=int,
        default=8,
        metavar="N",
        help="every subset holds at least N examples of each class; smaller sizes "
        "are raised (default 8)",
    )
    p.add_argument(
        "--target",
        type=float,
        metavar="VALUE",
        help="the metric you need, e.g. 0.85: how many examples are expected to reach it",
    )
    p.add_argument(
        "--memory",
        action="store_true",
        help="also score a kNN memory over the base --model's vectors of each subset "
        "(no training), as a second series",
    )
    p.add_argument(
        "--min-steps",
        type=int,
        default=0,
        metavar="N",
        help="train each point for at least N optimizer steps (small subsets get more "
        "epochs; default 0: --epochs for all)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="refits for the uncertainty of the fit (default 1000)",
    )
    p.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="YAML file of `jiyi train` settings (keys as the flags, with _)",
    )
    add_dataclass_flags(p, TrainConfig, skip=CURVE_OWNED)
    p.set_defaults(func=cmd_curve)
