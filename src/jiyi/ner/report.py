"""The HTML report of a NER evaluation: eval/report.html and eval/confusion.png.

    write_ner_report("runs/ner/eval", metrics, tokens, gold, predicted, title="test.conll")
    -> {"confusion.png": ..., "report.html": ...}

The page holds the headline scores, a table per entity type, the entity-type confusion matrix
(rows the gold type, columns the predicted type, "none" for a spurious or missed entity) and the
worst sentences: gold entities above predicted ones, a colour per type, and every entity that is
missed, spurious or of the wrong type marked as such. One self-contained file: the PNG is
inlined, every text is HTML-escaped (jinja2 autoescape). matplotlib and jinja2 are imported
inside the functions that use them.
"""

from __future__ import annotations

import base64
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jiyi.io import atomic_write_bytes, atomic_write_text
from jiyi.ner.metrics import MISSED, SPURIOUS, type_confusion
from jiyi.ner.tags import Span, detect_scheme, spans_from_tags
from jiyi.render import figure_png, format_value, page_template, shorten_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

N_WORST = 50
NONE = "none"  # the confusion matrix's row of spurious entities and column of missed ones
# Light colours that keep black text readable: tab20's light halves, then a few darker ones.
PALETTE = (
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d",
    "#9edae5", "#d9d9d9", "#6baed6", "#fd8d3c", "#74c476", "#f768a1", "#9e9ac8", "#bcbd22",
)  # fmt: skip
# Scripts written without spaces between words: no space is put next to these characters.
_NO_SPACE = re.compile(
    "[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
    "\U00020000-\U0002fa1f]"
)


def write_ner_report(
    out_dir: str | Path,
    metrics: dict[str, Any],
    tokens: Sequence[Sequence[str]],
    gold: Sequence[Sequence[str]],
    predicted: Sequence[Sequence[str]],
    *,
    sources: Sequence[str] | None = None,
    title: str = "jiyi NER evaluation",
    extra: dict[str, Any] | None = None,
    n_worst: int = N_WORST,
) -> dict[str, Path]:
    """Write confusion.png and report.html into `out_dir`; returns {file name: path}.

    `metrics` is `ner_metrics(gold, predicted)` (its "confusion" is used when present), plus
    "repaired" when tags were repaired; `sources` names each sentence ("FILE:LINE").
    """
    if not len(tokens) == len(gold) == len(predicted):
        raise ValueError(
            f"{len(tokens)} sentences, {len(gold)} gold and {len(predicted)} predicted tag sequences"
        )
    out_dir = Path(out_dir)
    confusion = metrics.get("confusion") or type_confusion(list(gold), list(predicted))
    types, counts = confusion_matrix(confusion)
    png = _quiet_png(confusion_figure(types, counts))
    worst, n_wrong = worst_sentences(tokens, gold, predicted, sources, n_worst)
    shown = {seg["type"] for row in worst for seg in row["gold"] + row["predicted"]}
    colour_types = sorted({*types, *metrics.get("per_type", {}), *shown} - {None})
    html = page_template("ner_report.html", filters={"fmt": format_value}).render(
        title=title,
        headline=headline(metrics),
        per_type=metrics.get("per_type", {}),
        averages=averages(metrics),
        colours={t: PALETTE[i % len(PALETTE)] for i, t in enumerate(colour_types)},
        confusion_uri="data:image/png;base64," + base64.b64encode(png).decode("ascii"),
        worst=worst,
        n_wrong=n_wrong,
        extra=extra or {},
    )
    paths = {"confusion.png": out_dir / "confusion.png", "report.html": out_dir / "report.html"}
    atomic_write_bytes(paths["confusion.png"], png)
    atomic_write_text(paths["report.html"], html)
    return paths


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The cards at the top of the page, {name: value}, the ones `metrics` has."""
    rows = averages(metrics)
    cards = {
        f"{name} ({average})": rows[average][key]
        for average in ("micro", "macro")
        for key, name in (("precision", "precision"), ("recall", "recall"), ("f1", "F1"))
        if rows[average][key] is not None
    }
    names = {
        "token_accuracy": "token accuracy", "n": "sentences", "n_tokens": "tokens",
        "n_entities": "gold entities", "repaired": "repaired tags",
    }  # fmt: skip
    return cards | {name: metrics[key] for key, name in names.items() if key in metrics}


def averages(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The micro and macro rows under the per-type table. Macro precision and recall are the
    unweighted means over types, as seqeval's "macro avg" computes them."""
    per_type = list(metrics.get("per_type", {}).values())

    def mean(key: str) -> float:
        return float(np.mean([m[key] for m in per_type])) if per_type else 0.0

    n = metrics.get("n_entities")
    micro = {k: metrics.get(k) for k in ("precision", "recall", "f1")}
    macro = {
        "precision": mean("precision"),
        "recall": mean("recall"),
        "f1": metrics.get("f1_macro"),
    }
    return {"micro": {**micro, "support": n}, "macro": {**macro, "support": n}}


def confusion_matrix(confusion: dict[str, dict[str, int]]) -> tuple[list[str], np.ndarray]:
    """The entity types (sorted) and the (T + 1, T + 1) counts of `type_confusion`'s table: rows
    gold type, columns predicted type, the last row the spurious entities (no gold entity with
    their boundaries), the last column the missed ones.

    >>> types, counts = confusion_matrix({"LOC": {"PER": 1, "(missed)": 2}, "(spurious)": {"LOC": 3}})
    >>> types, counts.tolist()
    (['LOC', 'PER'], [[0, 1, 2], [0, 0, 0], [3, 0, 0]])
    """
    kinds = {k for k in confusion if k != SPURIOUS}
    kinds |= {k for row in confusion.values() for k in row if k != MISSED}
    types = sorted(kinds)
    at = {t: i for i, t in enumerate(types)} | {SPURIOUS: len(types), MISSED: len(types)}
    counts = np.zeros((len(types) + 1, len(types) + 1), dtype=np.int64)  # (T + 1, T + 1)
    for gold_type, row in confusion.items():
        for predicted_type, n in row.items():
            counts[at[gold_type], at[predicted_type]] += n
    return types, counts


def confusion_figure(types: list[str], counts: np.ndarray) -> Figure:
    """Counts, rows = gold type (then "none": spurious), columns = predicted (then "none": missed)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    c = len(types) + 1
    size = min(3.5 + 0.4 * c, 20.0)
    font = 10 if c <= 10 else 8 if c <= 20 else 7
    fig = Figure(figsize=(size + 1.5, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, ticks=MaxNLocator(integer=True))
    rows = [*(shorten_label(t) for t in types), f"{NONE} (spurious)"]
    columns = [*(shorten_label(t) for t in types), f"{NONE} (missed)"]
    ax.set_xticks(range(c), columns, rotation=45, ha="right", fontsize=font)
    ax.set_yticks(range(c), rows, fontsize=font)
    ax.set_xlabel("predicted type")
    ax.set_ylabel("gold type")
    ax.set_title("Entity types (same boundaries)")
    if c <= 21:
        high = counts.max() / 2 if counts.size else 0
        for i in range(c):
            for j in range(c):
                if i == j == c - 1:
                    continue  # no entity on either side: nothing to count
                color = "white" if counts[i, j] > high else "black"
                ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", color=color,
                        fontsize=font)  # fmt: skip
    return fig


def worst_sentences(
    tokens: Sequence[Sequence[str]],
    gold: Sequence[Sequence[str]],
    predicted: Sequence[Sequence[str]],
    sources: Sequence[str] | None = None,
    n: int = N_WORST,
) -> tuple[list[dict[str, Any]], int]:
    """The `n` sentences with the most wrong tags (then the most entity errors, then the first
    in the file), rendered by `entity_segments`; and how many sentences have a wrong tag.

    An entity error is a gold entity without an identical predicted one, or the other way round.
    """
    scheme = detect_scheme([*gold, *predicted])
    rows = []
    for i, (words, g, p) in enumerate(zip(tokens, gold, predicted, strict=True)):
        wrong = sum(a != b for a, b in zip(g, p, strict=True))
        if not wrong:
            continue
        gold_spans, _ = spans_from_tags(g, scheme)
        pred_spans, _ = spans_from_tags(p, scheme)
        errors = len(set(gold_spans) ^ set(pred_spans))
        rows.append((-wrong, -errors, i, words, gold_spans, pred_spans))
    rows.sort(key=lambda row: row[:3])
    worst = [
        {
            "index": i,
            "source": sources[i] if sources is not None else "",
            "wrong_tags": -wrong,
            "entity_errors": -errors,
            "gold": entity_segments(words, gold_spans, pred_spans, "missed"),
            "predicted": entity_segments(words, pred_spans, gold_spans, "spurious"),
        }
        for wrong, errors, i, words, gold_spans, pred_spans in rows[:n]
    ]
    return worst, len(rows)


def entity_segments(
    words: Sequence[str], spans: list[Span], others: list[Span], unmatched: str
) -> list[dict[str, Any]]:
    """The sentence as plain text and entity segments; an entity's status is "ok" when `others`
    holds the same span, "type" when it holds the same boundaries with another type, else
    `unmatched` ("missed" for gold spans, "spurious" for predicted ones). Words are joined by
    spaces, except next to Chinese or Japanese characters.

    >>> entity_segments(["Ann", "in", "New", "York"], [Span(0, 1, "PER"), Span(2, 4, "LOC")],
    ...                 [Span(0, 1, "ORG")], "missed")  # doctest: +NORMALIZE_WHITESPACE
    [{'text': 'Ann', 'type': 'PER', 'status': 'type', 'other': 'ORG'},
     {'text': ' in ', 'type': None, 'status': None, 'other': None},
     {'text': 'New York', 'type': 'LOC', 'status': 'missed', 'other': None}]
    """
    other_at = {(s.start, s.end): s.type for s in others}
    starting = {s.start: s for s in spans}
    segments: list[dict[str, Any]] = []

    def plain(text: str) -> None:
        if segments and segments[-1]["type"] is None:
            segments[-1]["text"] += text
        elif text:
            segments.append({"text": text, "type": None, "status": None, "other": None})

    i = 0
    while i < len(words):
        if i:
            plain(_gap(words[i - 1], words[i]))
        span = starting.get(i)
        if span is None:
            plain(words[i])
            i += 1
            continue
        other = other_at.get((span.start, span.end))
        status = "ok" if other == span.type else unmatched if other is None else "type"
        segments.append(
            {
                "text": _join(words[span.start : span.end]),
                "type": span.type,
                "status": status,
                "other": other if status == "type" else None,
            }
        )
        i = span.end
    return segments


def _join(words: Sequence[str]) -> str:
    """["New", "York"] -> "New York"; ["北", "京"] -> "北京"."""
    return "".join((_gap(words[k - 1], w) if k else "") + w for k, w in enumerate(words))


def _gap(left: str, right: str) -> str:
    return "" if _NO_SPACE.match(left[-1:]) or _NO_SPACE.match(right[:1]) else " "


def _quiet_png(fig: Figure) -> bytes:
    """The PNG; a type name the font has no glyph for is drawn as boxes, without a warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        return figure_png(fig)
