"""The pictures of `jiyi explain`: attention-per-head grids, the attribution heatmap, the
head-importance heatmap (PNG, matplotlib through `Figure` + Agg, never pyplot) and the
self-contained explain.html (jinja2 autoescape; data as inline JSON, images as data URIs).

    render_html(document, records, pngs) -> str    # records: `explain_text` results
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METHODS = ("attention", "rollout", "grad_input", "integrated_gradients")
METHOD_NAMES = {
    "attention": "attention (last layer, [CLS] row, head mean)",
    "rollout": "attention rollout ([CLS] row)",
    "grad_input": "gradient × input",
    "integrated_gradients": "integrated gradients",
}
MAX_MAP_TOKENS = 64  # full attention maps (L, H, T, T) are kept for texts up to this length
MAX_TEXTS_IN_PNG = 8


def attention_layer_figure(heads: Any, tokens: list[str], layer: int, text_index: int) -> Figure:
    """One layer's heads side by side, (H, T, T), rows = queries; token labels up to 32 tokens."""
    from matplotlib.figure import Figure

    heads = np.asarray(heads, dtype=np.float64)
    n_heads, n = heads.shape[0], heads.shape[-1]
    cols = min(n_heads, 4)
    rows = -(-n_heads // cols)
    fig = Figure(figsize=(3.2 * cols, 3.2 * rows + 0.4), layout="constrained")
    fig.suptitle(f"layer {layer}: attention per head (text #{text_index + 1}; row = query)")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for h, ax in enumerate(axes):
        if h >= n_heads:
            ax.axis("off")
            continue
        ax.imshow(heads[h], cmap="viridis", vmin=0, interpolation="nearest")
        ax.set_title(f"head {h + 1}", fontsize=9)
        if n <= 32:
            ax.set_xticks(range(n), tokens, rotation=90, fontsize=5)
            ax.set_yticks(range(n), tokens, fontsize=5)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


def attributions_figure(records: Sequence[dict[str, Any]], max_words: int = 40) -> Figure:
    """Word scores of every method for the first MAX_TEXTS_IN_PNG texts, each row scaled by its
    largest |score| (green: supports the target, red: against)."""
    from matplotlib.figure import Figure

    shown = list(records)[:MAX_TEXTS_IN_PNG]
    width = max([min(len(r["words"]), max_words) for r in shown] + [1])
    fig = Figure(figsize=(min(2 + 0.42 * width, 20), 2.0 * len(shown) + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(shown), 1, squeeze=False)).ravel()
    for ax, r in zip(axes, shown, strict=True):
        words = [w["text"] for w in r["words"]][:max_words]
        grid = np.array([r["scores"]["words"][m][: len(words)] for m in METHODS])  # (M, W)
        grid = grid / np.maximum(np.abs(grid).max(axis=1, keepdims=True), 1e-12)
        ax.imshow(grid, cmap="RdYlGn", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
        ax.set_yticks(range(len(METHODS)), [METHOD_NAMES[m].split(" (")[0] for m in METHODS])
        ax.set_xticks(range(len(words)), words, rotation=60, ha="right", fontsize=8)
        more = (
            f", first {max_words} of {len(r['words'])} words" if len(r["words"]) > max_words else ""
        )
        ax.set_title(f"#{r['index'] + 1}: target {r['target']}{more}", fontsize=9, loc="left")
    return fig


def head_importance_figure(importance: Any) -> Figure:
    """(L, H) heatmap, layer 1 at the top, each cell annotated."""
    from matplotlib.figure import Figure

    imp = np.asarray(importance, dtype=np.float64)
    n_layers, n_heads = imp.shape
    fig = Figure(figsize=(1.2 + 0.55 * n_heads, 1.0 + 0.45 * n_layers), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(imp, cmap="magma", interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(n_heads), [str(h + 1) for h in range(n_heads)])
    ax.set_yticks(range(n_layers), [str(layer + 1) for layer in range(n_layers)])
    ax.set(xlabel="head", ylabel="layer", title="Head importance (Michel et al. 2019)")
    high = imp.max() / 2 if imp.size else 0
    for i in range(n_layers):
        for j in range(n_heads):
            color = "black" if imp[i, j] > high else "white"
            ax.text(j, i, f"{imp[i, j]:.2f}", ha="center", va="center", fontsize=7, color=color)
    return fig


def map_thumbnail(matrix: np.ndarray) -> str:
    """A (T, T) attention map as a T×T-pixel PNG data URI (viridis, scaled to its maximum); the
    page enlarges it with `image-rendering: pixelated`."""
    from matplotlib.image import imsave

    buffer = io.BytesIO()
    m = np.asarray(matrix, dtype=np.float64)
    imsave(buffer, m, cmap="viridis", vmin=0, vmax=max(float(m.max()), 1e-12), format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def render_html(
    document: dict[str, Any], records: Sequence[dict[str, Any]], pngs: dict[str, bytes]
) -> str:
    """The self-contained page: data as inline JSON, images as data URIs, no network."""
    page = [
        {
            "index": r["index"],
            "text": r["text"],
            "target": r["target"],
            "predicted": r["predicted"],
            "probabilities": list(r["probabilities"].items()),  # ordered (tojson sorts keys)
            "segments": _segments(r["text"], r["words"]),
            "words": [w["text"] for w in r["words"]],
            "scores": r["scores"]["words"],
            "n_tokens": len(r["tokens"]),
            "n_windows": len(r["windows"]),
            "faithfulness": r["faithfulness"],
            "ig_delta": r["integrated_gradients"]["delta"],
            "tokens": r["tokens"] if r["attention"]["maps"] is not None else None,
            "entropy": r["attention"]["entropy"],
            "thumbs": [[map_thumbnail(h) for h in layer] for layer in r["attention"]["maps"]]
            if r["attention"]["maps"] is not None
            else None,
        }
        for r in records
    ]
    images = {
        name: "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        for name, data in pngs.items()
        if name in ("attributions.png", "head_importance.png")
    }
    from jiyi.render import page_template

    return page_template("explain.html").render(
        document=document,
        page=page,
        methods={m: METHOD_NAMES[m] for m in METHODS},
        images=images,
        max_map_tokens=MAX_MAP_TOKENS,
    )


def _segments(text: str, words: list[dict[str, Any]]) -> list[list[Any]]:
    """The text cut into [piece, word index or None], so the page keeps the original spacing.

    >>> _segments("a  b", [{"start": 0, "end": 1}, {"start": 3, "end": 4}])
    [['a', 0], ['  ', None], ['b', 1]]
    """
    out: list[list[Any]] = []
    at = 0
    for i, w in sorted(enumerate(words), key=lambda iw: iw[1]["start"]):
        if w["start"] > at:
            out.append([text[at : w["start"]], None])
        if w["end"] > max(at, w["start"]):
            out.append([text[max(at, w["start"]) : w["end"]], i])
        at = max(at, w["end"])
    if at < len(text):
        out.append([text[at:], None])
    return out
