"""Drift: what did fine-tuning keep of the pretrained memory, and what did it overwrite?

Per layer, two measures between a pretrained encoder and its fine-tuned copy:

- linear CKA of the two models' mean-pooled vectors of the same texts (1 = the same geometry,
  up to rotation and scale; Kornblith et al. 2019, "Similarity of Neural Network
  Representations Revisited");
- the relative weight change ||W_ft - W_pre|| / ||W_pre|| over the layer's parameters
  (embeddings as layer 0).

Lower layers usually stay close (CKA near 1, small change); the top layers move most.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.errors import JiyiError
from jiyi.inspect.embeddings import Encoder, layer_vectors, load_encoder
from jiyi.inspect.probe import figure_png, new_figure, sample_rows
from jiyi.io import atomic_write_bytes, atomic_write_json

_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|block|blocks|h)\.(\d+)\.")  # encoder.layer.3.…
_EMBEDDINGS = re.compile(r"(?:^|\.)embeddings?\.")


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """Linear centered kernel alignment of (n, p) and (n, q) representations of n examples:

        CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F),  Xc, Yc: columns centered.

    It is 1 for X against itself, and unchanged by an orthogonal transform or an isotropic
    scaling of either side (CKA(X, 3 X Q) = 1 for orthogonal Q); it is NaN when a side is
    constant. For example X = [[1, 0], [0, 1], [0, 0]] and Y = X[:, :1]:
    Xc^T Xc = [[2/3, -1/3], [-1/3, 2/3]], Yc^T Yc = [[2/3]], Yc^T Xc = [[2/3, -1/3]], so
    CKA = (4/9 + 1/9) / (sqrt(10/9) * 2/3) = 0.791...

    >>> round(linear_cka(np.array([[1, 0], [0, 1], [0, 0]]), np.array([[1], [0], [0]])), 3)
    0.791
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
        raise ValueError(f"need (n, p) and (n, q) arrays of the same n, got {X.shape}, {Y.shape}")
    X = X - X.mean(axis=0)  # (n, p)
    Y = Y - Y.mean(axis=0)  # (n, q)
    cross = np.linalg.norm(Y.T @ X) ** 2  # ||Yc^T Xc||_F^2
    norm = np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)
    return float(cross / norm) if norm > 0 else math.nan


def layer_of_parameter(name: str) -> int | None:
    """The hidden-state index a parameter feeds: embeddings -> 0, encoder layer i -> i + 1,
    anything else (the pooler, a head) -> None.

    >>> layer_of_parameter("encoder.layer.3.attention.self.query.weight")
    4
    >>> layer_of_parameter("embeddings.word_embeddings.weight"), layer_of_parameter("pooler.dense.bias")
    (0, None)
    """
    if m := _LAYER.search(name):
        return int(m.group(1)) + 1
    if _EMBEDDINGS.search(name):
        return 0
    return None


def weight_change(pretrained: Any, finetuned: Any, n_layers: int) -> list[float | None]:
    """Relative weight change per layer, ||W_ft - W_pre||_F / ||W_pre||_F over all the layer's
    parameters together; parameters are matched by name, those outside the layers are ignored.
    A layer with no matched parameter (shared weights, as in ALBERT) gets None."""
    import torch

    pre = dict(pretrained.named_parameters())
    diff = np.zeros(n_layers + 1)
    base = np.zeros(n_layers + 1)
    seen = np.zeros(n_layers + 1, dtype=bool)
    with torch.no_grad():
        for name, w_ft in finetuned.named_parameters():
            layer = layer_of_parameter(name)
            if layer is None or name not in pre or layer > n_layers:
                continue
            w_pre = pre[name]
            if w_pre.shape != w_ft.shape:
                raise JiyiError(
                    f"parameter {name} has shape {tuple(w_pre.shape)} in the pretrained model but "
                    f"{tuple(w_ft.shape)} in the fine-tuned one: not the same architecture."
                )
            w_pre64, w_ft64 = w_pre.double(), w_ft.double()
            diff[layer] += float(((w_ft64 - w_pre64) ** 2).sum())
            base[layer] += float((w_pre64**2).sum())
            seen[layer] = True
    return [
        float(math.sqrt(d) / math.sqrt(b)) if s and b > 0 else None
        for d, b, s in zip(diff, base, seen, strict=True)
    ]


def check_same_architecture(pre: Encoder, ft: Encoder, pre_name: str, ft_name: str) -> None:
    a = (pre.n_layers, pre.hidden_size)
    b = (ft.n_layers, ft.hidden_size)
    if a != b:
        raise JiyiError(
            f"PRETRAINED {pre_name} ({a[0]} layers, hidden {a[1]}) and FINETUNED {ft_name} "
            f"({b[0]} layers, hidden {b[1]}) differ in architecture; drift compares a model "
            "with a fine-tuned copy of itself."
        )


def run_drift(
    pretrained: str | os.PathLike,
    finetuned: str | os.PathLike,
    data: str | os.PathLike,
    output: str | os.PathLike,
    *,
    max_examples: int = 1000,
    text_column: str = "text",
    batch_size: int = 64,
    max_length: int = 512,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-layer CKA and weight change between two encoders; writes OUTPUT/drift.json and
    OUTPUT/drift.png and returns what drift.json holds."""
    from jiyi.data.readers import read_inputs

    # 1. the models (same architecture) and the texts
    pre = load_encoder(pretrained, "PRETRAINED")
    ft = load_encoder(finetuned, "FINETUNED")
    check_same_architecture(pre, ft, str(pretrained), str(finetuned))
    try:
        examples = read_inputs(data, text_column=text_column)
    except JiyiError as e:
        raise JiyiError(f"--data {e}") from None
    texts = [examples[i].text for i in sample_rows(len(examples), max_examples, seed)]

    # 2. representations of every layer, CKA per layer, weight change per layer
    settings = {"pooling": "mean", "batch_size": batch_size, "max_length": max_length}
    vec_pre = layer_vectors(pre, texts, **settings)  # (L + 1, N, H)
    vec_ft = layer_vectors(ft, texts, **settings)  # (L + 1, N, H)
    cka = [linear_cka(a, b) for a, b in zip(vec_pre, vec_ft, strict=True)]
    try:
        change = weight_change(pre.model, ft.model, pre.n_layers)
    except JiyiError as e:
        raise JiyiError(f"PRETRAINED {pretrained} and FINETUNED {finetuned}: {e}") from None
    result = {
        "pretrained": str(pretrained),
        "pretrained_path": pre.path,
        "finetuned": str(finetuned),
        "finetuned_path": ft.path,
        "data": str(data),
        "n_examples": len(texts),
        "pooling": "mean",
        "layers": [
            {"layer": i, "cka": None if math.isnan(c) else c, "weight_change": w}
            for i, (c, w) in enumerate(zip(cka, change, strict=True))
        ],
    }

    # 3. write
    out = Path(output)
    atomic_write_json(out / "drift.json", result)
    atomic_write_bytes(out / "drift.png", plot_drift(result["layers"]))
    return result


def plot_drift(layers: list[dict[str, Any]]) -> bytes:
    """PNG bytes: CKA (left axis, 0..1) and relative weight change (right axis) per layer."""
    fig, ax = new_figure()
    x = [r["layer"] for r in layers]
    cka = [np.nan if r["cka"] is None else r["cka"] for r in layers]
    change = [np.nan if r["weight_change"] is None else r["weight_change"] for r in layers]
    ax.plot(x, cka, marker="o", color="tab:blue", label="linear CKA (pretrained vs fine-tuned)")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("linear CKA", color="tab:blue")
    ax.set_xticks(x)
    ax.grid(alpha=0.3)
    right = ax.twinx()
    right.plot(x, change, marker="s", color="tab:red", label="relative weight change")
    right.set_ylabel("||W_ft − W_pre|| / ||W_pre||", color="tab:red")
    right.set_ylim(bottom=0)
    lines = ax.get_lines() + right.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="lower left")
    ax.set_title("What fine-tuning kept (CKA) and changed (weights)")
    return figure_png(fig)
