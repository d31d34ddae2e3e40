"""The evaluation directory: metrics.json, plots (PNG), report.html and errors.jsonl.

    write_eval_dir("runs/x/eval", metrics=m, y_true=y, probs=p, labels=["neg", "pos"], texts=t)
    -> {"metrics.json": ..., "confusion_matrix.png": ..., "roc_curve.png": ...,
        "reliability.png": ..., "errors.jsonl": ..., "report.html": ...}

Every file is written atomically. matplotlib (Agg, through `Figure`, never pyplot), jinja2 and
rich are imported inside the functions that use them.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jiyi.evaluate import (
    METRIC_NAMES,
    SMALL_SLICE,
    calibration_inputs,
    expected_calibration_error,
    reliability_bins,
)
from jiyi.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from jiyi.render import figure_png, format_value, page_template, shorten_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from rich.table import Table

TASKS = ("classification", "multilabel")
HEADLINE_METRICS = (*METRIC_NAMES["multilabel"], "n")
MAX_ROC_CLASSES = 10  # per-class ROC curves drawn; beyond, the classes with the most support
MAX_ANNOTATED_CLASSES = 20  # confusion matrix cells carry their count up to this many classes
N_MISTAKES_IN_REPORT = 20
SLICE_COLUMNS = ("accuracy", "f1_macro", "f1_micro", "roc_auc", "ece", "log_loss", "hamming_loss")


def write_eval_dir(
    out_dir: str | Path,
    *,
    metrics: dict,
    y_true: np.ndarray,
    probs: np.ndarray,
    labels: list[str],
    texts: list[str],
    task: str = "classification",
    thresholds: np.ndarray | None = None,
    title: str = "jiyi evaluation",
    extra: dict | None = None,
    uncalibrated_probs: np.ndarray | None = None,
) -> dict[str, Path]:
    """Write metrics.json, the plots, errors.jsonl and report.html into `out_dir`.

    classification: y_true (N,) class ids, probs (N, C) softmax. multilabel: y_true (N, C) 0/1,
    probs (N, C) sigmoid, predictions at `thresholds` (default: metrics["thresholds"], else 0.5).
    `uncalibrated_probs`: the model's own probabilities when `probs` are calibrated (the
    reliability diagram draws both; metrics["calibration"] holds the before/after numbers).
    Returns {file name: path}.
    """
    if task not in TASKS:
        raise ValueError(f"write_eval_dir: unknown task {task!r}, expected one of {TASKS}")
    out_dir = Path(out_dir)
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true).astype(np.int64)
    if len(texts) != len(probs) or len(y_true) != len(probs):
        raise ValueError(
            f"{len(texts)} texts, {len(y_true)} labels and {len(probs)} probability rows"
        )
    if task == "multilabel" and thresholds is None:
        thresholds = np.asarray(metrics.get("thresholds", 0.5), dtype=np.float64)

    pngs: dict[str, bytes] = {}
    if task == "classification":
        pngs["confusion_matrix.png"] = figure_png(confusion_matrix_figure(y_true, probs, labels))
    pngs["roc_curve.png"] = figure_png(roc_figure(y_true, probs, labels, task))
    pngs["reliability.png"] = figure_png(
        reliability_figure(y_true, probs, task, before=uncalibrated_probs)
    )
    mistakes = misclassified_rows(y_true, probs, labels, texts, task, thresholds)

    paths = {
        name: out_dir / name for name in ["metrics.json", *pngs, "errors.jsonl", "report.html"]
    }
    atomic_write_json(paths["metrics.json"], metrics)
    for name, data in pngs.items():
        atomic_write_bytes(paths[name], data)
    lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in mistakes]
    atomic_write_text(paths["errors.jsonl"], "".join(lines))
    html = render_html(
        metrics, pngs, mistakes[:N_MISTAKES_IN_REPORT], len(mistakes), title, extra or {}
    )
    atomic_write_text(paths["report.html"], html)
    return paths


def misclassified_rows(
    y_true: np.ndarray,
    probs: np.ndarray,
    labels: list[str],
    texts: list[str],
    task: str = "classification",
    thresholds: np.ndarray | float | None = None,
) -> list[dict[str, Any]]:
    """Every wrong row, most confident mistake first (ties: lower index first).

    classification: confidence = the probability of the (wrong) predicted label.
    multilabel: a row is wrong when its predicted set differs from its true set; confidence =
    the model's confidence in its most confident wrong decision (p for a false positive, 1 - p
    for a false negative). `label` and `predicted` are then lists of label names.
    """
    probs = np.asarray(probs, dtype=np.float64)
    rows: list[tuple[float, dict[str, Any]]] = []
    if task == "classification":
        y_true = np.asarray(y_true).ravel()
        y_pred = probs.argmax(axis=1)  # (N,)
        for i in np.flatnonzero(y_pred != y_true):
            confidence = float(probs[i, y_pred[i]])
            rows.append(
                (
                    confidence,
                    _row(
                        i, texts, labels[y_true[i]], labels[y_pred[i]], confidence, probs[i], labels
                    ),
                )
            )
    else:
        t = 0.5 if thresholds is None else thresholds
        y_true = np.asarray(y_true).astype(bool).reshape(probs.shape)
        y_pred = probs >= np.broadcast_to(
            np.asarray(t, dtype=np.float64), probs.shape[1:]
        )  # (N, C)
        wrong_confidence = np.where(y_pred, probs, 1 - probs)  # (N, C) confidence in each decision
        for i in np.flatnonzero((y_pred != y_true).any(axis=1)):
            confidence = float(wrong_confidence[i, y_pred[i] != y_true[i]].max())
            true_set = [labels[j] for j in np.flatnonzero(y_true[i])]
            pred_set = [labels[j] for j in np.flatnonzero(y_pred[i])]
            rows.append(
                (confidence, _row(i, texts, true_set, pred_set, confidence, probs[i], labels))
            )
    rows.sort(key=lambda pair: -pair[0])  # stable: ties keep index order
    return [row for _, row in rows]


def render_html(
    metrics: dict,
    pngs: dict[str, bytes],
    mistakes: list[dict[str, Any]],
    n_mistakes: int,
    title: str = "jiyi evaluation",
    extra: dict | None = None,
) -> str:
    """The self-contained report: PNGs inlined as data URIs, every text HTML-escaped (autoescape)."""
    template = page_template("report.html", filters={"fmt": format_value})
    headline = {k: metrics[k] for k in HEADLINE_METRICS if k in metrics}
    images = {
        name.removesuffix(".png").replace("_", " "): "data:image/png;base64,"
        + base64.b64encode(data).decode("ascii")
        for name, data in pngs.items()
    }
    return template.render(
        title=title,
        headline=headline,
        per_class=metrics.get("per_class", {}),
        images=images,
        mistakes=mistakes,
        n_mistakes=n_mistakes,
        extra=extra or {},
        slices=metrics.get("slices", {}),
        slice_gaps=metrics.get("slice_gaps", {}),
        slice_metrics=[k for k in HEADLINE_METRICS if k != "n" and k in metrics],
        calibration=metrics.get("calibration"),
    )


def metrics_table(metrics: dict, title: str = "") -> Table:
    """A console table laid out like scikit-learn's classification_report; headline metrics in the caption."""
    from rich.table import Table

    table = Table(title=title or None, caption=_caption(metrics))
    table.add_column("label")
    for name in ("precision", "recall", "f1", "support"):
        table.add_column(name, justify="right")
    for label, scores in metrics.get("per_class", {}).items():
        table.add_row(
            str(label),
            *(format_value(scores.get(k)) for k in ("precision", "recall", "f1", "support")),
        )
    table.add_section()
    n = format_value(metrics.get("n"))
    if "f1_macro" in metrics:
        table.add_row(
            "macro avg",
            format_value(metrics.get("precision_macro")),
            format_value(metrics.get("recall_macro")),
            format_value(metrics["f1_macro"]),
            n,
        )
    for average in ("micro", "weighted"):
        if f"f1_{average}" in metrics:
            table.add_row(f"{average} avg", "", "", format_value(metrics[f"f1_{average}"]), n)
    return table


def slice_table(column: str, slices: dict, gaps: dict) -> Table:
    """One row per slice of `column` (`jiyi evaluate --slice-by`): n, the headline metrics with
    95% intervals under accuracy and f1_macro, small slices starred; the last row the gaps."""
    from rich.markup import escape
    from rich.table import Table

    multilabel = any("hamming_loss" in s for s in slices.values())
    names = [k for k in SLICE_COLUMNS if k != "f1_micro" or multilabel]  # = accuracy otherwise
    names = [k for k in names if any(k in s for s in slices.values())]
    table = Table(
        title=f"slices by {column}",
        caption=escape(
            "below a value: its 95% interval (Wilson for accuracy, bootstrap for f1). "
            f"n*: a small slice (under {SMALL_SLICE} rows), left out of the gaps when two larger "
            "ones remain. Every metric and interval is in metrics.json."
        ),
    )
    table.add_column(column)
    table.add_column("n", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for value, scores in slices.items():
        cells = []
        for name in names:
            ci = scores["ci"].get(name) if name in ("accuracy", "f1_macro") else None
            cells.append(
                format_value(scores.get(name)) + (f"\n{ci[0]:.2f}–{ci[1]:.2f}" if ci else "")
            )
        table.add_row(escape(str(value)), f"{scores['n']}{'*' if scores['small'] else ''}", *cells)
    table.add_section()
    table.add_row("gap", "", *(format_value((gaps.get(k) or {}).get("gap")) for k in names))
    return table


def confusion_matrix_figure(y_true: np.ndarray, probs: np.ndarray, labels: list[str]) -> Figure:
    """Counts, rows = true label; cells are annotated up to MAX_ANNOTATED_CLASSES classes."""
    from matplotlib.figure import Figure

    c = len(labels)
    y_true = np.asarray(y_true).astype(np.int64).ravel()
    y_pred = np.asarray(probs).argmax(axis=1)  # (N,)
    cm = np.bincount(y_true * c + y_pred, minlength=c * c).reshape(c, c)  # (C, C), rows = true
    size = min(4.0 + 0.35 * c, 22.0)
    font = 10 if c <= 10 else 8 if c <= 20 else 7
    fig = Figure(figsize=(size + 1.5, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(cm, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8)
    names = [shorten_label(label) for label in labels]
    ax.set_xticks(
        range(c),
        names,
        rotation=45 if c <= 10 else 90,
        ha="right" if c <= 10 else "center",
        fontsize=font,
    )
    ax.set_yticks(range(c), names, fontsize=font)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title("Confusion matrix")
    if c <= MAX_ANNOTATED_CLASSES:
        high = cm.max() / 2 if cm.size else 0
        for i in range(c):
            for j in range(c):
                color = "white" if cm[i, j] > high else "black"
                ax.text(
                    j, i, str(int(cm[i, j])), ha="center", va="center", color=color, fontsize=font
                )
    return fig


def roc_figure(
    y_true: np.ndarray,
    probs: np.ndarray,
    labels: list[str],
    task: str,
) -> Figure:
    """binary: one curve; multi-class: per class (up to MAX_ROC_CLASSES) + macro; multilabel: micro."""
    from matplotlib.figure import Figure
    from sklearn.metrics import auc, roc_curve

    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    fig = Figure(figsize=(6, 5.5), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="false positive rate", ylabel="true positive rate")
    c = probs.shape[1]
    if task == "multilabel":
        curves = {"micro": (y_true.ravel(), probs.ravel())}
    elif c == 2:
        curves = {labels[1]: (y_true == 1, probs[:, 1])}
    else:
        curves = {labels[j]: (y_true == j, probs[:, j]) for j in range(c)}
    support = {name: int(positive.sum()) for name, (positive, _) in curves.items()}
    shown = sorted(support, key=support.get, reverse=True)[:MAX_ROC_CLASSES]
    grid = np.linspace(0, 1, 201)
    tprs, aucs = [], []  # classes with both positives and negatives; TPR on the common FPR grid
    for name, (positive, score) in curves.items():
        if not 0 < support[name] < len(positive):
            continue
        fpr, tpr, _ = roc_curve(positive, score)
        tprs.append(np.interp(grid, fpr, tpr))
        aucs.append(auc(fpr, tpr))
        if name in shown:
            label = f"{shorten_label(name)} (AUC = {aucs[-1]:.3f})"
            ax.plot(fpr, tpr, linewidth=1.5, label=label)
    if task == "classification" and c > 2 and tprs:
        # one-vs-rest macro AUC is the mean of the per-class AUCs, defined when every class is
        macro = f"AUC = {np.mean(aucs):.3f}" if len(aucs) == c else f"{len(aucs)} of {c} classes"
        mean_tpr = np.mean(tprs, axis=0)
        ax.plot(grid, mean_tpr, color="black", linewidth=2.5, label=f"macro ({macro})")
    if tprs:
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "ROC undefined:\ny_true holds a single class", ha="center", va="center")
    few = task == "classification" and c > MAX_ROC_CLASSES
    ax.set_title(f"ROC curve ({len(shown)} of {c} classes by support)" if few else "ROC curve")
    return fig


def reliability_figure(
    y_true: np.ndarray,
    probs: np.ndarray,
    task: str,
    n_bins: int = 15,
    before: np.ndarray | None = None,
) -> Figure:
    """Accuracy per confidence bin against the diagonal; the title carries the ECE. `before`:
    the uncalibrated probabilities of calibrated `probs`, drawn as a second curve."""
    from matplotlib.figure import Figure

    confidence, correct = calibration_inputs(y_true, probs, task)
    _, mean_conf, accuracy, counts = reliability_bins(confidence, correct, n_bins)
    ece = expected_calibration_error(confidence, correct, n_bins)
    width = 1.0 / n_bins
    left = np.arange(n_bins) * width
    fig = Figure(figsize=(6, 6.5), layout="constrained")
    ax, hist = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    filled = counts > 0
    ax.bar(
        left[filled],
        accuracy[filled],
        width=width,
        align="edge",
        edgecolor="black",
        alpha=0.8,
        label="accuracy",
    )
    centres = left + width / 2
    ax.plot(
        centres[filled],
        mean_conf[filled],
        "o",
        color="tab:red",
        markersize=4,
        label="mean confidence",
    )
    ax.vlines(centres[filled], accuracy[filled], mean_conf[filled], color="tab:red", linewidth=1.5)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    title = f"Reliability (ECE = {ece:.4f})"
    if before is not None:
        conf0, correct0 = calibration_inputs(y_true, before, task)
        _, mean0, acc0, counts0 = reliability_bins(conf0, correct0, n_bins)
        ece0 = expected_calibration_error(conf0, correct0, n_bins)
        kept = counts0 > 0
        ax.plot(mean0[kept], acc0[kept], "s-", color="tab:orange", markersize=4,
                label=f"before calibration (ECE {ece0:.4f})")  # fmt: skip
        ax.plot(mean_conf[filled], accuracy[filled], "o-", color="tab:blue", markersize=4,
                label=f"calibrated (ECE {ece:.4f})")  # fmt: skip
        title = f"Reliability (ECE {ece0:.4f} before, {ece:.4f} calibrated)"
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=title)
    ax.legend(loc="upper left", fontsize=8)
    hist.bar(left, counts, width=width, align="edge", color="grey", edgecolor="black")
    hist.set(xlabel="confidence", ylabel="count")
    return fig


def _row(
    i: int,
    texts: list[str],
    label: Any,
    predicted: Any,
    confidence: float,
    p: np.ndarray,
    labels: list[str],
) -> dict[str, Any]:
    return {
        "index": int(i),
        "text": texts[i],
        "label": label,
        "predicted": predicted,
        "confidence": round(confidence, 6),
        "probabilities": {name: round(float(v), 6) for name, v in zip(labels, p, strict=True)},
    }


def _caption(metrics: dict) -> str:
    parts = [
        f"{k} {format_value(metrics[k])}"
        for k in HEADLINE_METRICS
        if k in metrics and not k.startswith(("precision", "recall", "f1"))
    ]
    cal = metrics.get("calibration")
    if isinstance(cal, dict) and "before" in cal:
        parts.append(
            f"calibrated ({cal['method']}): "
            + ", ".join(
                f"{k} {format_value(cal['before'].get(k))} → {format_value(cal['after'].get(k))}"
                for k in ("ece", "log_loss")
            )
        )
    return " · ".join(parts)
