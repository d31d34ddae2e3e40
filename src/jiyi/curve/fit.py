"""The learning curve's power law metric(n) = a − b·n^(−c), fitted with its uncertainty.

`fit_power_law` fits all the points by least squares; `fit_draws` gives plausible (a, b, c) (a
bootstrap over the seeds, or the fit's covariance with one seed per size): the fit describes the
measured sizes (and is drawn). `analyse` turns the points into per-size statistics
(`size_stats`), that fit, and what more data would buy from the backtested forecast of
`jiyi.curve.forecast` (not from the power law alone, whose narrow band missed measured sizes):
what doubling the data adds, the `--target` estimate (`target_estimate`) and the one line a
person can act on (`summary_line`), or the reason no forecast is given.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from jiyi.curve.forecast import HORIZON, examples_for, forecast, forecast_at

LOWER_IS_BETTER = ("log_loss", "ece", "hamming_loss")
FLAT = 0.002  # doubling the data adds less than this (0.2 points): the curve has flattened
MIN_FIT_SIZES = 3
POOR_FIT = 0.9  # R² of the fit on the size means below which the summary warns


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
    # what more data would buy: the backtested forecast (jiyi.curve.forecast), or why not
    out["forecast"] = forecast(out["by_size"], higher_is_better=higher)
    if out["forecast"]["status"] == "made":
        largest = float(out["by_size"][-1]["n"])
        here = forecast_at(out["forecast"], largest, largest)["value"]
        there = forecast_at(out["forecast"], 2 * largest, largest)
        out["doubling"] = {
            "from": int(largest),
            "to": int(2 * largest),
            **{k: v - here for k, v in there.items()},
        }
    out["target"] = (
        None if target is None else target_estimate(target, out["by_size"], out["forecast"], higher)
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
    forecast_result: dict[str, Any],
    higher: bool = True,
) -> dict[str, Any]:
    """status: reached (the largest size's mean is there already), estimated (with "n", the
    examples the forecast expects to reach it, and the band's range: "high" None when its
    pessimistic edge does not get there within HORIZON × the data, "value" None when only the
    optimistic edge does), beyond_horizon (not even the optimistic edge gets there), or
    no_forecast (declined: the forecast's "reason")."""
    info: dict[str, Any] = {"value": target, "status": "no_forecast"}
    if by_size:
        last = by_size[-1]
        info.update(observed=last["mean"], at=last["n"])
        if (last["mean"] >= target) if higher else (last["mean"] <= target):
            info["status"] = "reached"
            return info
    if forecast_result["status"] != "made":
        return info
    largest = float(by_size[-1]["n"])
    needed = examples_for(forecast_result, target, largest)
    if needed is None:
        info.update(status="beyond_horizon", horizon=int(HORIZON * largest))
        return info
    info.update(status="estimated", n=needed)
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
    --train); doubling the data (8,530 → 17,060) is forecast to add about 1.2 points (-0.4 to
    2.8: ...); reaching 0.85 needs about 23,000 examples (15,000 to never)", or "no forecast of
    more data: <why>". Points are hundredths."""
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
    made = result["forecast"]["status"] == "made"
    if fit is None:
        parts.append(result["fit_note"] or "no fit")
    if not made:
        parts.append(f"no forecast of more data: {result['forecast']['reason']}")
    elif doubling is not None:
        span = f"{doubling['from']:,} → {doubling['to']:,}"
        gain = sign * doubling["value"] * scale
        lo, hi = sorted(sign * doubling[k] * scale for k in ("low", "high"))
        if gain < FLAT * scale and hi < 5 * FLAT * scale:
            parts.append(f"the curve has flattened: doubling the data ({span}) adds < 0.2{unit}")
        else:
            verb = "add" if higher else "lower it by"
            parts.append(
                f"doubling the data ({span}) is forecast to {verb} about {gain:.1f}{unit} "
                f"({lo:.1f} to {hi:.1f}: the band is as wide as the smaller sizes missed the "
                "larger ones)"
            )
    if fit is not None and fit["r2_of_means"] is not None and fit["r2_of_means"] < POOR_FIT:
        parts.append(
            f"the power law fits these points poorly (R² {fit['r2_of_means']:.2f} on the "
            "size means)"
        )
    if goal is not None:
        value = goal["value"]
        if goal["status"] == "reached":
            parts.append(
                f"the target {value} is already reached ({goal['observed']:.3f} with "
                f"{goal['at']:,} examples)"
            )
        elif goal["status"] == "beyond_horizon":
            parts.append(
                f"the target {value} is not reached within {HORIZON}× the data "
                f"({goal['horizon']:,} examples), not even at the band's optimistic edge"
            )
        elif goal["status"] == "estimated":
            need = goal["n"]
            if need["value"] is None:
                text = (
                    f"reaching {value} needs at least {_count(need['low'])} examples (only the "
                    "band's optimistic edge gets there)"
                )
            else:
                text = f"reaching {value} needs about {_count(need['value'])} examples"
                high = _count(need["high"]) if need["high"] is not None else "never"
                text += f" ({_count(need['low'])} to {high})"
            parts.append(text)
    return "; ".join(parts) + "."
