"""Entity-level evaluation of tag sequences, as seqeval computes it.

- precision, recall, f1 (micro over entities), f1_macro (mean over types), per type;
  `strict=True` is seqeval's strict mode (an entity counts only with exactly its scheme's tags),
  otherwise the conlleval rules (an `I-X` after `O` starts an entity);
- token accuracy (every token, `O` included);
- a confusion matrix of entity types over gold spans: the predicted type of the span with the
  same boundaries, `(missed)` when no predicted span has them; predicted spans with no gold span
  of the same boundaries are counted in the `(spurious)` row.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

MISSED, SPURIOUS = "(missed)", "(spurious)"


def _spans(tags: list[str]) -> set[tuple[int, int, str]]:
    from seqeval.metrics.sequence_labeling import get_entities

    return {(start, end + 1, kind) for kind, start, end in get_entities(tags)}


def ner_metrics(
    gold: list[list[str]], predicted: list[list[str]], *, strict: bool = False, scheme: str = "BIO"
) -> dict[str, Any]:
    """Entity-level metrics of `predicted` against `gold` (lists of tag sequences)."""
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2, IOBES

    if len(gold) != len(predicted) or any(
        len(g) != len(p) for g, p in zip(gold, predicted, strict=True)
    ):
        raise ValueError("gold and predicted tag sequences differ in number or length")
    kwargs: dict[str, Any] = {"output_dict": True, "zero_division": 0}
    if strict:
        kwargs.update(mode="strict", scheme=IOBES if scheme == "BIOES" else IOB2)
    report = classification_report(gold, predicted, **kwargs)
    per_type = {
        kind: {
            "precision": float(v["precision"]),
            "recall": float(v["recall"]),
            "f1": float(v["f1-score"]),
            "support": int(v["support"]),
        }
        for kind, v in report.items()
        if not kind.endswith(" avg")
    }
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    macro = report.get("macro avg", {"f1-score": 0.0})
    n_tokens = sum(len(g) for g in gold)
    correct = sum(
        a == b for g, p in zip(gold, predicted, strict=True) for a, b in zip(g, p, strict=True)
    )
    return {
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "f1": float(micro["f1-score"]),
        "f1_macro": float(macro["f1-score"]),
        "token_accuracy": correct / max(1, n_tokens),
        "per_type": per_type,
        "confusion": type_confusion(gold, predicted),
        "n": len(gold),
        "n_tokens": n_tokens,
        "n_entities": sum(v["support"] for v in per_type.values()),
        "strict": strict,
    }


def type_confusion(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, dict[str, int]]:
    """{gold type: {predicted type | (missed): count}}, plus a (spurious) row."""
    table: dict[str, Counter[str]] = {}
    for g, p in zip(gold, predicted, strict=True):
        gold_spans, pred_spans = _spans(g), _spans(p)
        pred_at = {(s, e): k for s, e, k in pred_spans}
        gold_at = {(s, e) for s, e, _ in gold_spans}
        for s, e, kind in gold_spans:
            table.setdefault(kind, Counter())[pred_at.get((s, e), MISSED)] += 1
        for s, e, kind in pred_spans:
            if (s, e) not in gold_at:
                table.setdefault(SPURIOUS, Counter())[kind] += 1
    return {k: dict(sorted(v.items())) for k, v in sorted(table.items())}


def ner_table(metrics: dict[str, Any], title: str) -> Any:
    """A rich table: precision, recall, F1 and support per entity type, then micro and macro."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("type", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "type" else "right")
    for kind, m in metrics["per_type"].items():
        table.add_row(
            kind, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", str(m["support"])
        )
    table.add_row(
        "micro", f"{metrics['precision']:.4f}", f"{metrics['recall']:.4f}", f"{metrics['f1']:.4f}",
        str(metrics["n_entities"]), style="bold",
    )  # fmt: skip
    table.add_row("macro", "", "", f"{metrics['f1_macro']:.4f}", "")
    table.caption = f"token accuracy {metrics['token_accuracy']:.4f} · {metrics['n']} sentences"
    return table
