"""Metrics for a fine-tuned encoder: single-label and multi-label classification.

Everything is computed by scikit-learn (`zero_division=0`) and returned as plain Python
floats/ints, so the dict goes straight into eval/metrics.json. A metric that is undefined on the
data (ROC-AUC when y_true holds one class) is None (JSON null), never NaN or an exception.
scikit-learn is imported inside the functions: `import jiyi.evaluate` stays cheap.

>>> classification_metrics(np.array([0, 1]), np.array([[0.9, 0.1], [0.4, 0.6]]), ["neg", "pos"])
{'accuracy': 1.0, ..., 'roc_auc': 1.0, 'per_class': {'neg': {...}, 'pos': {...}}, 'n': 2, ...}
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from jiyi.tasks import TASKS

# The scalar metrics each task reports (any of them can select the best model: --metric); the
# registry holds them (jiyi.tasks), this is its view by task name.
METRIC_NAMES: dict[str, tuple[str, ...]] = {name: spec.metrics for name, spec in TASKS.items()}

# The headline metric of each task's report.
PRIMARY_METRICS: dict[str, str] = {
    "classification": "f1_macro",
    "multilabel": "f1_micro",
    "ner": "f1",
    "mlm": "loss",
}

# Metric names (or name suffixes, e.g. "eval_loss", "log_loss", "hamming_loss") where lower is better.
_LOWER_IS_BETTER_SUFFIXES = ("loss", "ece", "perplexity")


def metric_is_better(name: str, new: float | None, old: float | None) -> bool:
    """Whether `new` beats `old` for metric `name`; None/NaN never beats anything and loses to any number.

    >>> metric_is_better("f1_macro", 0.8, 0.7), metric_is_better("eval_loss", 0.8, 0.7)
    (True, False)
    """
    if new is None or math.isnan(new):
        return False
    if old is None or math.isnan(old):
        return True
    if name.endswith(_LOWER_IS_BETTER_SUFFIXES):
        return new < old
    return new > old


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, labels: list[str]
) -> dict[str, Any]:
    """Metrics for single-label classification; the prediction is argmax(probs).

    y_true (N,) int class ids in [0, C); probs (N, C) softmax probabilities; labels: C names.
    ROC-AUC: binary -> on probs[:, 1]; C > 2 -> one-vs-rest macro (None when a class never occurs).
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, log_loss, roc_auc_score

    y_true = np.asarray(y_true).astype(np.int64).ravel()
    probs = _check_probs(probs, len(y_true), labels)
    n, c = probs.shape
    if y_true.min() < 0 or y_true.max() >= c:
        raise ValueError(f"y_true holds class ids outside [0, {c}): {sorted(set(y_true.tolist()))}")
    ids = list(range(c))
    y_pred = probs.argmax(axis=1)  # (N,)

    metrics: dict[str, Any] = {"accuracy": float(accuracy_score(y_true, y_pred))}
    metrics |= _precision_recall_f1(y_true, y_pred, ids, labels)
    if c == 2:
        metrics["roc_auc"] = _safe(lambda: roc_auc_score(y_true, probs[:, 1]))
    elif c > 2:
        ovr = lambda: roc_auc_score(y_true, probs, multi_class="ovr", labels=ids)  # noqa: E731
        metrics["roc_auc"] = _safe(ovr) if len(np.unique(y_true)) == c else None
    else:
        metrics["roc_auc"] = None
    metrics["per_class"] = metrics.pop("per_class")  # after the averages, as in metrics.json
    metrics["n"] = int(n)
    confidence, correct = calibration_inputs(y_true, probs, task="classification")
    metrics["ece"] = expected_calibration_error(confidence, correct)
    with warnings.catch_warnings():  # C == 1 warns "a single label was found" even with labels=
        warnings.simplefilter("ignore")
        metrics["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=ids).tolist()
    metrics["log_loss"] = _safe(lambda: log_loss(y_true, probs, labels=ids)) if c > 1 else None
    return metrics


def multilabel_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    labels: list[str],
    thresholds: np.ndarray | float = 0.5,
) -> dict[str, Any]:
    """Metrics for multi-label classification; the prediction is probs >= thresholds (per label).

    y_true (N, C) 0/1; probs (N, C) sigmoid probabilities. `accuracy` is subset accuracy (the
    predicted set equals the true set); ROC-AUC is micro-averaged (over all N*C decisions);
    `log_loss` is the mean binary cross-entropy over all N*C decisions. The thresholds used are
    returned under `thresholds`.
    """
    from sklearn.metrics import accuracy_score, hamming_loss, log_loss, roc_auc_score

    probs = _check_probs(probs, len(y_true), labels)
    n, c = probs.shape
    y_true = np.asarray(y_true).astype(np.int64).reshape(n, c)
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (c,))
    y_pred = (probs >= thresholds).astype(np.int64)  # (N, C)

    metrics: dict[str, Any] = {"accuracy": float(accuracy_score(y_true, y_pred))}
    if c == 1:  # scikit-learn reads an (N, 1) indicator as binary: score the positive label only
        metrics |= _precision_recall_f1(y_true[:, 0], y_pred[:, 0], [1], labels)
    else:
        metrics |= _precision_recall_f1(y_true, y_pred, list(range(c)), labels)
    metrics["roc_auc"] = _safe(lambda: roc_auc_score(y_true.ravel(), probs.ravel()))
    metrics["per_class"] = metrics.pop("per_class")
    metrics["n"] = int(n)
    confidence, correct = calibration_inputs(y_true, probs, task="multilabel")
    metrics["ece"] = expected_calibration_error(confidence, correct)
    metrics["log_loss"] = _safe(lambda: log_loss(y_true.ravel(), probs.ravel(), labels=[0, 1]))
    metrics["hamming_loss"] = float(hamming_loss(y_true, y_pred))
    metrics["thresholds"] = [float(t) for t in thresholds]
    return metrics


def tune_thresholds(y_true: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-label threshold maximising that label's F1 on validation data (prediction: p >= t).

    The threshold sits halfway between the lowest probability predicted positive and the highest
    one predicted negative, so it keeps its F1 on the tuning data and generalises better than a
    threshold on a sample. A label without positives keeps 0.5.

    >>> tune_thresholds(np.array([[1], [1], [0], [0]]), np.array([[0.4], [0.3], [0.2], [0.1]]))
    array([0.25])
    """
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true).astype(bool).reshape(probs.shape)
    thresholds = np.full(probs.shape[1], 0.5)
    for j in range(probs.shape[1]):
        n_pos = int(y_true[:, j].sum())
        if n_pos == 0:
            continue
        order = np.argsort(-probs[:, j], kind="stable")
        p, y = probs[order, j], y_true[order, j]  # (N,) descending
        tp = np.cumsum(y)  # predicting the top k+1 rows positive
        fp = np.arange(1, len(p) + 1) - tp
        f1 = 2 * tp / (tp + fp + n_pos)  # = 2tp / (2tp + fp + fn)
        cut = np.r_[p[1:] < p[:-1], True]  # only cut between distinct probabilities
        k = int(np.argmax(np.where(cut, f1, -1.0)))
        thresholds[j] = p[k] if k == len(p) - 1 else (p[k] + p[k + 1]) / 2
    return thresholds


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15
) -> float:
    """ECE = sum over equal-width bins (lo, hi] of |bin| / N * |accuracy(bin) - mean confidence(bin)|.

    >>> expected_calibration_error([0.9, 0.9, 0.6, 0.6], [1, 0, 1, 1], n_bins=10)
    0.4  # bin (0.8, 0.9]: 2/4 * |0.5 - 0.9|; bin (0.5, 0.6]: 2/4 * |1.0 - 0.6|
    """
    _, bin_confidence, bin_accuracy, counts = reliability_bins(confidence, correct, n_bins)
    total = counts.sum()
    if total == 0:
        return 0.0
    gaps = np.abs(bin_accuracy - bin_confidence)
    return float(np.sum(counts / total * np.nan_to_num(gaps)))


def reliability_bins(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Equal-width bins (lo, hi] over [0, 1] (0 goes to the first bin).

    Returns (bin centres, mean confidence, accuracy, count), each (n_bins,); empty bins hold NaN.
    """
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=np.float64).ravel()
    if confidence.shape != correct.shape:
        raise ValueError(
            f"confidence {confidence.shape} and correct {correct.shape} differ in shape"
        )
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], confidence, side="left")  # (N,) in [0, n_bins)
    counts = np.bincount(bins, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, weights=confidence, minlength=n_bins) / counts
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / counts
    return (edges[:-1] + edges[1:]) / 2, mean_conf, accuracy, counts.astype(np.int64)


def calibration_inputs(
    y_true: np.ndarray, probs: np.ndarray, task: str
) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) pairs for ECE and the reliability diagram.

    classification: one pair per row, confidence = max prob, correct = argmax == y_true.
    multilabel: one pair per (row, label) decision at 0.5 (calibration is a property of the
    probabilities, not of tuned thresholds): confidence = max(p, 1 - p), correct = (p >= 0.5) == y.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if task == "classification":
        y_true = np.asarray(y_true).ravel()
        return probs.max(axis=1), probs.argmax(axis=1) == y_true
    if task == "multilabel":
        y_true = np.asarray(y_true).reshape(probs.shape).astype(bool)
        return np.maximum(probs, 1 - probs).ravel(), ((probs >= 0.5) == y_true).ravel()
    raise ValueError(f"unknown task {task!r}: expected 'classification' or 'multilabel'")


def _precision_recall_f1(
    y_true: np.ndarray, y_pred: np.ndarray, ids: list[int], labels: list[str]
) -> dict[str, Any]:
    """Macro/micro/weighted averages and per-class scores over class ids `ids` (one per label)."""
    from sklearn.metrics import precision_recall_fscore_support

    def prf(average: str | None) -> tuple:
        return precision_recall_fscore_support(
            y_true, y_pred, labels=ids, average=average, zero_division=0
        )

    macro, micro, weighted, per = prf("macro"), prf("micro"), prf("weighted"), prf(None)
    return {
        "precision_macro": float(macro[0]),
        "recall_macro": float(macro[1]),
        "f1_macro": float(macro[2]),
        "f1_micro": float(micro[2]),
        "f1_weighted": float(weighted[2]),
        "per_class": {
            label: {
                "precision": float(per[0][i]),
                "recall": float(per[1][i]),
                "f1": float(per[2][i]),
                "support": int(per[3][i]),
            }
            for i, label in enumerate(labels)
        },
    }


def _check_probs(probs: np.ndarray, n: int, labels: list[str]) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (n, len(labels)):
        raise ValueError(
            f"probs has shape {probs.shape}, expected (N={n}, C={len(labels)}) for labels {labels}"
        )
    if n == 0:
        raise ValueError("no examples to evaluate")
    return probs


def _safe(compute: Callable[[], Any]) -> float | None:
    """Run a scikit-learn metric; None where it is undefined (raises, warns and returns NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = float(compute())
        except ValueError:
            return None
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------
# Slices: every metric per value of a column (`jiyi evaluate --slice-by`), with 95% intervals,
# and how far apart the best and the worst slice are.

SMALL_SLICE = 30  # rows: a smaller slice is reported but flagged `small` (its metrics swing)
BOOTSTRAP_RESAMPLES = 1000
Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile


def slice_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    labels: list[str],
    groups: list[str],
    *,
    task: str = "classification",
    thresholds: np.ndarray | float = 0.5,
    min_rows: int = SMALL_SLICE,
    n_boot: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any] | None]]:
    """The metrics of `task` on each slice (the rows sharing a value of `groups`); returns
    (slices, gaps).

    slices: {value: {"n", "small", <every metric of METRIC_NAMES[task]>, "ci": {metric: [lo,
    hi]}}}, values in sorted order. Each slice is scored on its own, as scikit-learn would score
    it: macro averages run over the labels that occur in the slice (true or predicted). The 95%
    interval of accuracy is Wilson's; the others are bootstrap percentiles over `n_boot`
    resamples of the slice's rows (fixed `seed`); an interval is None where the metric is.
    gaps: {metric: {"gap", "best", "best_value", "worst", "worst_value", "compared",
    "small_included"} or None}: the best slice minus the worst (lower is better for losses and
    ECE; the gap is >= 0), over the slices of at least `min_rows` rows, or over all slices when
    fewer than two are that large; None when fewer than two slices define the metric.

    >>> y, p = np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    >>> slices, gaps = slice_metrics(y, p, ["neg", "pos"], ["en", "en", "zh"], min_rows=1)
    >>> slices["zh"]["accuracy"], slices["zh"]["n"], gaps["accuracy"]["gap"]
    (0.0, 1, 1.0)
    """
    names = METRIC_NAMES[task]
    probs = _check_probs(probs, len(y_true), labels)
    y_true = np.asarray(y_true).astype(np.int64)
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), probs.shape[1:])
    groups_arr = np.asarray(groups, dtype=object)
    if len(groups_arr) != len(probs):
        raise ValueError(f"{len(groups_arr)} slice values for {len(probs)} rows")
    rng = np.random.default_rng(seed)
    slices: dict[str, dict[str, Any]] = {}
    for value in sorted(set(groups)):
        rows = np.flatnonzero(groups_arr == value)
        y, p = y_true[rows], probs[rows]
        point = _scored_alone(y, p, labels, task, thresholds)
        ci: dict[str, list[float] | None] = {}
        if point["accuracy"] is not None:
            ci["accuracy"] = list(wilson_interval(round(point["accuracy"] * len(rows)), len(rows)))
        for name, values in _bootstrap(y, p, task, thresholds, n_boot, rng).items():
            if name != "accuracy":
                ci[name] = _percentile_interval(values) if point[name] is not None else None
        slices[str(value)] = {"n": len(rows), "small": len(rows) < min_rows, **point, "ci": ci}
    return slices, slice_gaps(slices, names, min_rows)


def slice_gaps(
    slices: dict[str, dict[str, Any]], names: tuple[str, ...], min_rows: int = SMALL_SLICE
) -> dict[str, dict[str, Any] | None]:
    """The best and the worst slice per metric and the gap between them (see slice_metrics)."""
    large = {k: s for k, s in slices.items() if s["n"] >= min_rows}
    pool = large if len(large) >= 2 else slices
    gaps: dict[str, dict[str, Any] | None] = {}
    for name in names:
        values = {k: s[name] for k, s in pool.items() if s.get(name) is not None}
        if len(values) < 2:
            gaps[name] = None
            continue
        lower_better = name.endswith(_LOWER_IS_BETTER_SUFFIXES)
        ranked = sorted(values, key=lambda k: values[k], reverse=not lower_better)  # best first
        best, worst = ranked[0], ranked[-1]
        gaps[name] = {
            "gap": abs(values[best] - values[worst]),
            "best": best,
            "best_value": values[best],
            "worst": worst,
            "worst_value": values[worst],
            "compared": len(values),
            "small_included": pool is not large,
        }
    return gaps


def wilson_interval(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson's score interval for a proportion of k successes in n trials (95% by default);
    unlike p ± z·sqrt(p(1-p)/n) it stays inside [0, 1] and is not empty at k = 0 or k = n.

    >>> [round(x, 4) for x in wilson_interval(8, 10)]
    [0.4902, 0.9433]
    """
    p, z2 = k / n, z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _scored_alone(
    y: np.ndarray, probs: np.ndarray, labels: list[str], task: str, thresholds: np.ndarray
) -> dict[str, Any]:
    """The scalar metrics of one slice, scored as a data set of its own."""
    if task == "multilabel":
        metrics = multilabel_metrics(y, probs, labels, thresholds)
    else:
        metrics = classification_metrics(y, probs, labels)
        pred = probs.argmax(axis=1)
        present = np.union1d(y, pred).tolist()  # the labels scikit-learn averages by default
        metrics |= _precision_recall_f1(y, pred, present, [labels[i] for i in present])
    return {name: metrics.get(name) for name in METRIC_NAMES[task]}


def _bootstrap(
    y: np.ndarray,
    probs: np.ndarray,
    task: str,
    thresholds: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Each metric on `n_boot` resamples (with replacement) of the rows: {metric: (n_boot,)}."""
    n, c = probs.shape
    chunk = max(1, 2_000_000 // (n * c))  # resamples scored at once: bounded memory
    parts = [
        resampled_metrics(y, probs, task, thresholds, rng.integers(0, n, (min(chunk, left), n)))
        for left in range(n_boot, 0, -chunk)
    ]
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


def resampled_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    task: str,
    thresholds: np.ndarray | float,
    idx: np.ndarray,
) -> dict[str, np.ndarray]:
    """The metrics of `task` on B resamples at once, resample b holding rows idx[b]: idx (B, m)
    -> {metric: (B,)}, NaN where a metric is undefined. Counts come from np.bincount, so scoring
    1000 resamples costs about as much as scoring one data set 1000 times larger. With
    idx = [range(n)] it equals `_scored_alone` (scikit-learn); the tests hold it to that.
    """
    probs = np.asarray(probs, dtype=np.float64)
    n, c = probs.shape
    b, m = idx.shape
    eps = np.finfo(np.float64).eps
    out: dict[str, np.ndarray] = {}
    if task == "classification":
        y = np.asarray(y_true).astype(np.int64).ravel()
        pred = probs.argmax(axis=1)  # (N,)
        cm = _counts(y[idx] * c + pred[idx], c * c).reshape(b, c, c)  # (B, true, predicted)
        tp = np.diagonal(cm, axis1=1, axis2=2)  # (B, C)
        n_true, n_pred = cm.sum(axis=2), cm.sum(axis=1)  # (B, C) each
        present = (n_true + n_pred) > 0  # the labels a slice scored alone averages over
        f1 = _div(2 * tp, n_true + n_pred)
        out["accuracy"] = tp.sum(axis=1) / m
        out["precision_macro"] = _div((_div(tp, n_pred) * present).sum(1), present.sum(1))
        out["recall_macro"] = _div((_div(tp, n_true) * present).sum(1), present.sum(1))
        out["f1_macro"] = _div((f1 * present).sum(1), present.sum(1))
        out["f1_micro"] = out["accuracy"]  # every row's labels are among those averaged
        out["f1_weighted"] = (f1 * n_true).sum(axis=1) / m
        if c == 2:
            out["roc_auc"] = _auc(probs[:, 1], y == 1, idx)
        elif c > 2:  # one-vs-rest macro: undefined unless every class occurs
            out["roc_auc"] = np.mean([_auc(probs[:, j], y == j, idx) for j in range(c)], axis=0)
        else:
            out["roc_auc"] = np.full(b, np.nan)
        row_loss = -np.log(np.clip(probs[np.arange(n), y], eps, 1 - eps))  # (N,)
        out["log_loss"] = row_loss[idx].mean(axis=1) if c > 1 else np.full(b, np.nan)
        decisions = idx  # calibration: one decision per row
    else:
        y = np.asarray(y_true).astype(bool).reshape(n, c)
        pred = probs >= np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (c,))
        tp, fp, fn = ((a[idx].sum(axis=1)) for a in (y & pred, ~y & pred, y & ~pred))  # (B, C)
        f1 = _div(2 * tp, 2 * tp + fp + fn)
        out["accuracy"] = (pred == y).all(axis=1)[idx].mean(axis=1)
        out["precision_macro"] = _div(tp, tp + fp).mean(axis=1)
        out["recall_macro"] = _div(tp, tp + fn).mean(axis=1)
        out["f1_macro"] = f1.mean(axis=1)
        tp_all, fp_all, fn_all = tp.sum(1), fp.sum(1), fn.sum(1)
        out["f1_micro"] = _div(2 * tp_all, 2 * tp_all + fp_all + fn_all)
        out["f1_weighted"] = _div((f1 * (tp + fn)).sum(1), (tp + fn).sum(1))
        decisions = (idx[:, :, None] * c + np.arange(c)).reshape(b, m * c)  # (B, M*C)
        out["roc_auc"] = _auc(probs.ravel(), y.ravel(), decisions)
        p_true = np.where(y, probs, 1 - probs).ravel()  # (N*C,)
        out["log_loss"] = -np.log(np.clip(p_true, eps, 1 - eps))[decisions].mean(axis=1)
        out["hamming_loss"] = (pred != y).ravel()[decisions].mean(axis=1)
    # ECE = sum over bins |sum(correct - confidence)| / decisions (see expected_calibration_error)
    confidence, correct = calibration_inputs(y, probs, task)
    edges = np.linspace(0.0, 1.0, 16)  # the 15 bins of expected_calibration_error
    bins = np.searchsorted(edges[1:-1], confidence, side="left")
    excess = _counts(bins[decisions], 15, (correct - confidence)[decisions])  # (B, 15)
    out["ece"] = np.abs(excess).sum(axis=1) / decisions.shape[1]
    return out


def _counts(keys: np.ndarray, k: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Per row of keys (B, m) in [0, k): the count (or the summed weights) of each key -> (B, k)."""
    b = keys.shape[0]
    flat = (keys + k * np.arange(b)[:, None]).ravel()
    w = None if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    return np.bincount(flat, weights=w, minlength=b * k).reshape(b, k)


def _auc(scores: np.ndarray, positive: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """ROC-AUC of each resample idx (B, m): P(score of a positive > score of a negative), ties
    counting half (what roc_auc_score computes); NaN when a resample lacks either class."""
    _, rank = np.unique(scores, return_inverse=True)  # (M,) index of each distinct score
    u = int(rank.max()) + 1
    pos = _counts(rank[idx], u, positive[idx])  # (B, U) positives at each score
    neg = _counts(rank[idx], u, ~positive[idx])
    below = np.cumsum(neg, axis=1) - neg  # negatives scored lower
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    wins = (pos * (below + 0.5 * neg)).sum(axis=1)
    return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1), np.nan)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, 0 where b is 0 (scikit-learn's zero_division=0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b != 0)


def _percentile_interval(values: np.ndarray, level: float = 0.95) -> list[float] | None:
    """The central `level` of the defined (non-NaN) bootstrap values; None if none is."""
    values = values[~np.isnan(values)]
    if not len(values):
        return None
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return [float(lo), float(hi)]
