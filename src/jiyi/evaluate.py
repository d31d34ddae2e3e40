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

# The metric each task selects its best checkpoint and early-stops on.
# The scalar metrics each task reports (any of them can select the best model: --metric).
METRIC_NAMES: dict[str, tuple[str, ...]] = {
    "classification": (
        "accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "f1_micro",
        "f1_weighted",
        "roc_auc",
        "ece",
        "log_loss",
    ),
}
METRIC_NAMES["multilabel"] = (*METRIC_NAMES["classification"], "hamming_loss")
METRIC_NAMES["ner"] = ("f1", "precision", "recall", "f1_macro", "token_accuracy")

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
