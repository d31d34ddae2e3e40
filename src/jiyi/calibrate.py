"""Calibrated probabilities: fit a map of the logits on labelled (validation) data, apply it
wherever logits become probabilities (`logits_to_probs`).

Every method is an affine map of the logits, `z -> z * scale + bias` (per class / label):

- `temperature`: softmax(z / T), one T for a classifier; sigmoid(z_j / T_j), one T per label for
  a multi-label model. T > 0, so a classifier's argmax never changes.
- `vector`: softmax(z * w + b), a scale and a bias per class (may change decisions); for a
  multi-label model sigmoid(a_j z_j + b_j), Platt scaling per label.
- `none`: the model's own probabilities.

T is fitted by minimising the negative log-likelihood of the data over log T with a golden-section
search on [log 0.05, log 20] (deterministic; the NLL is convex in 1/T, so unimodal in log T):

>>> z = np.tile([[4.0, 0.0], [0.0, 4.0]], (10, 1))                   # confident logits
>>> cal = fit(z, np.repeat([0, 1], 10), multilabel=False)             # ... but half wrong
>>> round(float(cal.temperatures()[0]), 2)                            # T grows: flatter
20.0

Importing this module imports numpy only; `vector` imports torch when it fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from jiyi.tasks.registry import CALIBRATIONS as METHODS

if TYPE_CHECKING:
    import torch

T_BOUNDS = (0.05, 20.0)
MIN_EXAMPLES = 10  # fewer validation rows (or one class only): the probabilities stay as they are
VECTOR_L2 = 1e-3  # pulls vector scaling towards the identity so separable data cannot blow it up


@dataclass
class Calibration:
    """An affine map of the logits, `z * scale + bias` (each (C,)), fitted by `fit`."""

    method: str
    multilabel: bool
    scale: np.ndarray
    bias: np.ndarray
    notes: list[str] = field(default_factory=list)
    """What was left as it was and why (a tiny set, a label with one class, T at a bound)."""

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """(N, C) logits -> (N, C) calibrated logits, float32."""
        z = np.asarray(logits, dtype=np.float32)
        return (z * self.scale.astype(np.float32) + self.bias.astype(np.float32)).astype(np.float32)

    def temperatures(self) -> np.ndarray:
        """1 / scale: the temperature(s) of `temperature` scaling."""
        return 1.0 / self.scale

    def to_meta(self) -> dict[str, Any]:
        """The parameters as jiyi.json stores them (`temperature`: a number for a classifier,
        one per label for a multi-label model; `scale`/`bias` lists for `vector`)."""
        out: dict[str, Any] = {"method": self.method}
        if self.method == "temperature":
            t = [round(float(x), 6) for x in self.temperatures()]
            out["temperature"] = t if self.multilabel else t[0]
        else:
            out["scale"] = [round(float(x), 6) for x in self.scale]
            out["bias"] = [round(float(x), 6) for x in self.bias]
        return out

    @classmethod
    def from_meta(cls, meta: dict[str, Any], n_labels: int) -> Calibration | None:
        """The calibration stored in a model folder's jiyi.json, None when there is none."""
        record = meta.get("calibration")
        if not isinstance(record, dict) or record.get("method") in (None, "none"):
            return None
        multilabel = meta.get("task") == "multilabel"
        if record["method"] == "temperature":
            t = np.broadcast_to(np.asarray(record["temperature"], dtype=np.float64), (n_labels,))
            return cls("temperature", multilabel, 1.0 / t, np.zeros(n_labels))
        if record["method"] == "vector":
            scale = np.asarray(record["scale"], dtype=np.float64)
            bias = np.asarray(record["bias"], dtype=np.float64)
            if scale.shape != (n_labels,) or bias.shape != (n_labels,):
                raise ValueError(f"calibration scale/bias hold {scale.shape}, not ({n_labels},)")
            return cls("vector", multilabel, scale, bias)
        raise ValueError(f"unknown calibration method {record['method']!r} in jiyi.json")


def identity(n_labels: int, multilabel: bool, method: str = "temperature") -> Calibration:
    """The map that changes nothing (T = 1)."""
    return Calibration(method, multilabel, np.ones(n_labels), np.zeros(n_labels))


def fit(
    logits: np.ndarray, y: np.ndarray, *, multilabel: bool, method: str = "temperature"
) -> Calibration:
    """Fit `method` on (N, C) logits and their labels: y (N,) class ids, or (N, C) 0/1 for a
    multi-label model. Degenerate data keeps the identity for what it cannot fit (`notes`)."""
    if method not in METHODS or method == "none":
        raise ValueError(f"fit: method must be temperature or vector, got {method!r}")
    z = np.asarray(logits, dtype=np.float64)
    n, c = z.shape
    cal = identity(c, multilabel, method)
    if n < MIN_EXAMPLES:
        cal.notes.append(f"only {n} examples (under {MIN_EXAMPLES}): left uncalibrated")
        return cal
    if multilabel:
        y = np.asarray(y, dtype=np.float64).reshape(n, c)
        fitted = [j for j in range(c) if 0 < y[:, j].sum() < n]
        if len(fitted) < c:
            cal.notes.append(f"{c - len(fitted)} labels with one class only kept T = 1")
        for j in fitted:
            cal.scale[j] = 1.0 / _best_temperature(lambda s, j=j: _bce(z[:, j], y[:, j], s), cal)
        if method == "vector" and fitted:
            a, b = _fit_affine(z[:, fitted], y[:, fitted], cal.scale[fitted], multilabel=True)
            cal.scale[fitted], cal.bias[fitted] = a, b
        return cal
    y = np.asarray(y, dtype=np.int64).ravel()
    if len(np.unique(y)) < 2:
        cal.notes.append("one class only in the data: left uncalibrated")
        return cal
    cal.scale[:] = 1.0 / _best_temperature(lambda s: _softmax_nll(z, y, s), cal)
    if method == "vector":
        cal.scale, cal.bias = _fit_affine(z, y, cal.scale, multilabel=False)
    return cal


def _best_temperature(nll: Any, cal: Calibration, steps: int = 80) -> float:
    """Golden-section search of log T in log T_BOUNDS minimising `nll(1 / T)`; T = 1 kept
    unless the minimum is lower."""
    lo, hi = np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1])
    g = (np.sqrt(5) - 1) / 2

    def loss(log_t: float) -> float:
        return nll(float(np.exp(-log_t)))

    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(steps):  # the bracket shrinks by 0.618 a step: 80 steps -> ~1e-16
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = loss(b)
    log_t = (lo + hi) / 2
    for bound, edge in ((T_BOUNDS[0], np.log(T_BOUNDS[0])), (T_BOUNDS[1], np.log(T_BOUNDS[1]))):
        if abs(log_t - edge) < 1e-3:
            log_t = edge
            cal.notes.append(f"T reached its bound {bound} (the data asks for more)")
    if loss(log_t) > loss(0.0):  # never worse than the model's own probabilities
        return 1.0
    return float(np.exp(log_t))


def _softmax_nll(z: np.ndarray, y: np.ndarray, scale: float) -> float:
    s = z * scale  # (N, C)
    top = s.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(s - top).sum(axis=1)) + top[:, 0]  # (N,) logsumexp
    return float(np.mean(log_norm - s[np.arange(len(y)), y]))


def _bce(z: np.ndarray, y: np.ndarray, scale: float) -> float:
    s = z * scale
    return float(np.mean(np.logaddexp(0.0, s) - y * s))  # softplus(s) - y s


def _fit_affine(
    z: np.ndarray, y: np.ndarray, scale0: np.ndarray, *, multilabel: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class scale and bias by L-BFGS on the NLL (+ VECTOR_L2 towards the temperature fit)."""
    import torch

    zt = torch.as_tensor(z, dtype=torch.float64)
    w0 = torch.as_tensor(scale0, dtype=torch.float64)
    w = w0.clone().requires_grad_(True)
    b = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    target = torch.as_tensor(y, dtype=torch.float64 if multilabel else torch.int64)
    optimizer = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=200, line_search_fn="strong_wolfe", tolerance_grad=1e-10
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        s = zt * w + b  # (N, C)
        if multilabel:
            nll = torch.nn.functional.binary_cross_entropy_with_logits(s, target)
        else:
            nll = torch.nn.functional.cross_entropy(s, target)
        loss = nll + VECTOR_L2 * (((w - w0) ** 2).sum() + (b**2).sum())
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach().numpy().copy(), b.detach().numpy().copy()


def refit(
    logits: np.ndarray,
    y: np.ndarray,
    labels: list[str],
    meta: dict[str, Any],
    *,
    method: str,
    data: str,
) -> tuple[Calibration | None, dict[str, Any]]:
    """Fit `method` on (logits, y) for the model whose jiyi.json is `meta`; returns (the
    calibration or None for `none`, the new meta). The meta's `calibration` record holds the
    parameters, what they were fitted on (`data`, `n`) and ECE, log loss and accuracy before and
    after on that data; a multi-label model's `thresholds` are re-tuned on the calibrated
    probabilities (the uncalibrated ones kept in the record, and restored by `none`)."""
    from jiyi.evaluate import tune_thresholds

    multilabel = meta.get("task") == "multilabel"
    meta = dict(meta)
    old = meta.pop("calibration", None)
    raw_thresholds = meta.get("thresholds")
    if isinstance(old, dict) and "thresholds_uncalibrated" in old:
        raw_thresholds = old["thresholds_uncalibrated"]
    if multilabel and raw_thresholds is not None:
        meta["thresholds"] = raw_thresholds
    if method == "none":
        return None, meta
    cal = fit(logits, y, multilabel=multilabel, method=method)
    before = scores(logits, y, labels, None, raw_thresholds, multilabel)
    record: dict[str, Any] = {**cal.to_meta(), "data": data, "n": len(logits)}
    thresholds = raw_thresholds
    if multilabel:
        thresholds = [float(t) for t in tune_thresholds(y, probabilities(logits, True, cal))]
        record["thresholds_uncalibrated"] = raw_thresholds
        meta["thresholds"] = thresholds
    after = scores(logits, y, labels, cal, thresholds, multilabel)
    for name in ("ece", "log_loss", "accuracy"):
        record[f"{name}_before"], record[f"{name}_after"] = before[name], after[name]
    if cal.notes:
        record["notes"] = cal.notes
    meta["calibration"] = record
    return cal, meta


def logits_to_probs(
    logits: torch.Tensor, multilabel: bool, calibration: Calibration | None = None
) -> torch.Tensor:
    """THE place where logits become probabilities (`jiyi.predict.forward_probs` and everything
    after it): the calibration (if any) applied to the (B, C) logits, then sigmoid (multilabel)
    or softmax. Differentiable: the affine map is taken in torch, on the logits' device, so
    gradient attributions (`jiyi.inspect.attribution`) explain the probabilities predict gives."""
    import torch

    if calibration is not None:
        scale = torch.as_tensor(calibration.scale, dtype=logits.dtype, device=logits.device)
        bias = torch.as_tensor(calibration.bias, dtype=logits.dtype, device=logits.device)
        logits = logits * scale + bias
    return torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=-1)


def probabilities(
    logits: np.ndarray, multilabel: bool, calibration: Calibration | None
) -> np.ndarray:
    """(N, C) logits -> probabilities, through `logits_to_probs` (the one place)."""
    import torch

    z = torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32))
    return logits_to_probs(z, multilabel, calibration).numpy()


def scores(
    logits: np.ndarray,
    y: np.ndarray,
    labels: list[str],
    calibration: Calibration | None,
    thresholds: Any = None,
    multilabel: bool = False,
) -> dict[str, Any]:
    """ECE, log loss and accuracy of the (calibrated) probabilities, as metrics.json has them."""
    from jiyi.evaluate import classification_metrics, multilabel_metrics

    probs = probabilities(logits, multilabel, calibration)
    if multilabel:
        t = 0.5 if thresholds is None else np.asarray(thresholds)
        m = multilabel_metrics(y, probs, labels, t)
    else:
        m = classification_metrics(y, probs, labels)
    return {k: m[k] for k in ("ece", "log_loss", "accuracy")}


def summary_line(record: dict[str, Any]) -> str:
    """One line: "temperature (T = 1.52) on 1000 examples: ECE 0.081 -> 0.023, ..."."""
    params = ""
    if "temperature" in record:
        t = record["temperature"]
        params = f" (T = {t:.3f})" if isinstance(t, float | int) else f" (T = {len(t)} per label)"
    parts = [
        f"{name} {_fmt(record.get(f'{key}_before'))} -> {_fmt(record.get(f'{key}_after'))}"
        for key, name in (("ece", "ECE"), ("log_loss", "log loss"), ("accuracy", "accuracy"))
    ]
    return f"{record['method']}{params} on {record['n']} examples: " + ", ".join(parts)


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def calibration_block(
    record: dict[str, Any],
    y: np.ndarray,
    raw_probs: np.ndarray,
    metrics: dict[str, Any],
    labels: list[str],
    multilabel: bool,
) -> dict[str, Any]:
    """metrics.json's `calibration`: the method, what it was fitted on, and ECE / log loss on
    this data before (the model's own probabilities) and after (`metrics`, calibrated)."""
    from jiyi.evaluate import classification_metrics, multilabel_metrics

    if multilabel:
        raw = multilabel_metrics(y, raw_probs, labels, record.get("thresholds_uncalibrated", 0.5))
    else:
        raw = classification_metrics(y, raw_probs, labels)
    keys = ("ece", "log_loss", "accuracy")
    params = {k: record[k] for k in ("temperature", "scale", "bias") if k in record}
    return {
        "method": record["method"],
        **params,
        "fitted_on": {"data": record.get("data"), "n": record.get("n")},
        "before": {k: raw[k] for k in keys},
        "after": {k: metrics[k] for k in keys},
    }
