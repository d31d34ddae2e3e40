"""Layer probes: where in the encoder does the task's knowledge live?

For each hidden state (0 = embeddings output .. L = last layer) the texts' pooled vectors feed a
standardised logistic regression, scored by stratified k-fold cross-validated accuracy. A layer
whose vectors separate the labels linearly "knows" the task; a fine-tuned model's curve rises at
the top, a pretrained one's stays flatter.

>>> result = run_probe("runs/demo", "data/rotten-tomatoes/validation.csv", "runs/demo/probe", compare="minilm")
>>> [round(r["accuracy"], 2) for r in result["layers"]]  # doctest: +SKIP
[0.62, 0.7, 0.73, 0.76, 0.78, 0.81, 0.86]
"""

from __future__ import annotations

import io
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.errors import JiyiError
from jiyi.inspect.embeddings import layer_vectors, load_encoder
from jiyi.io import atomic_write_bytes, atomic_write_json


def probe_layers(
    vectors: np.ndarray, labels: np.ndarray, *, folds: int = 5, seed: int = 0
) -> list[dict[str, Any]]:
    """(L + 1, N, H) vectors and (N,) labels -> [{layer, accuracy, std}] for each layer:
    the mean and standard deviation of the fold accuracies of a standardised logistic
    regression. The same folds serve every layer, so layers compare fairly."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(vectors[0], labels))
    results = []
    for layer, X in enumerate(vectors):  # X: (N, H)
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            scores = cross_val_score(classifier, X, labels, cv=splits, scoring="accuracy")
        results.append(
            {"layer": layer, "accuracy": float(scores.mean()), "std": float(scores.std())}
        )
    return results


def sample_rows(n: int, max_examples: int, seed: int) -> np.ndarray:
    """Indices of at most `max_examples` of `n` rows, a seeded random subset in input order."""
    if max_examples < 1:
        raise JiyiError(f"--max-examples {max_examples}: must be at least 1.")
    if n <= max_examples:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_examples, replace=False))


def run_probe(
    model: str | os.PathLike,
    data: str | os.PathLike,
    output: str | os.PathLike,
    *,
    compare: str | os.PathLike | None = None,
    pooling: str = "mean",
    folds: int = 5,
    max_examples: int = 2000,
    text_column: str = "text",
    label_column: str = "label",
    batch_size: int = 64,
    max_length: int = 512,
    seed: int = 0,
) -> dict[str, Any]:
    """Probe every layer of `model` (and of `compare`) on the labelled `data`; write
    OUTPUT/probe.json and OUTPUT/probe.png; return what probe.json holds."""
    from jiyi.data.readers import read_examples

    # 1. the labelled texts, checked against the folds before any model loads
    try:
        examples = read_examples(data, text_column=text_column, label_column=label_column).examples
    except JiyiError as e:
        raise JiyiError(f"--data {e}") from None
    examples = [examples[i] for i in sample_rows(len(examples), max_examples, seed)]
    texts = [e.text for e in examples]
    labels = np.asarray([str(e.label) for e in examples])
    counts = Counter(labels.tolist())
    if len(counts) < 2:
        raise JiyiError(f"--data {data}: a probe needs two or more labels; the rows hold one.")
    if folds < 2:
        raise JiyiError(f"--folds {folds}: cross-validation needs at least 2 folds.")
    rarest, fewest = min(counts.items(), key=lambda kv: kv[1])
    if fewest < folds:
        raise JiyiError(
            f"--folds {folds}: label {rarest!r} has only {fewest} example(s) in {data} (after "
            "--max-examples); lower --folds or add examples."
        )

    # 2. vectors of every layer, then one probe per layer, for each model
    def probe(name: str | os.PathLike, flag: str) -> dict[str, Any]:
        encoder = load_encoder(name, flag)
        vectors = layer_vectors(
            encoder, texts, pooling=pooling, batch_size=batch_size, max_length=max_length
        )  # (L + 1, N, H)
        layers = probe_layers(vectors, labels, folds=folds, seed=seed)
        return {"model": str(name), "path": encoder.path, "layers": layers}

    result = {
        **probe(model, "MODEL_OR_RUN"),
        "compare": probe(compare, "--compare") if compare is not None else None,
        "data": str(data),
        "n_examples": len(texts),
        "labels": dict(sorted(counts.items())),
        "majority_baseline": max(counts.values()) / len(texts),
        "pooling": pooling,
        "folds": folds,
        "seed": seed,
    }

    # 3. write
    out = Path(output)
    atomic_write_json(out / "probe.json", result)
    curves = [(result["model"], result["layers"])]
    if result["compare"] is not None:
        curves.append((result["compare"]["model"], result["compare"]["layers"]))
    atomic_write_bytes(out / "probe.png", plot_probe(curves, baseline=result["majority_baseline"]))
    return result


def plot_probe(
    curves: list[tuple[str, list[dict[str, Any]]]], *, baseline: float | None = None
) -> bytes:
    """PNG bytes: accuracy per layer with ±std error bars, one line per (name, layers) curve."""
    fig, ax = new_figure()
    for name, layers in curves:
        x = [r["layer"] for r in layers]
        y = [r["accuracy"] for r in layers]
        err = [r["std"] for r in layers]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=_short(name))
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle="--", linewidth=1, label="majority class")
    ax.set_xlabel("layer (0 = embeddings output)")
    ax.set_ylabel("probe accuracy (cross-validated)")
    ax.set_title("Linear probe per layer")
    ax.set_xticks(range(max(len(layers) for _, layers in curves)))
    ax.grid(alpha=0.3)
    ax.legend()
    return figure_png(fig)


def new_figure(size: tuple[float, float] = (6.4, 4.2)) -> tuple[Any, Any]:
    """A matplotlib Figure and its axes, without pyplot's global state (Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def figure_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _short(name: str, width: int = 40) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]
