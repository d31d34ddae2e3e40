"""`jiyi serve` on a NER run (`jiyi train --task ner`): entities instead of labels.

>>> app = create_app(Settings(), NerTagger("runs/ner"))      # create_app picks NerService
>>> # POST /v1/predict {"texts": ["Alice flew to New York."]} ->
>>> # {"predictions": [{"text": "Alice flew to New York.",
>>> #                   "entities": [{"start": 0, "end": 5, "text": "Alice", "type": "PER", ...}]}]}

Raw texts give character offsets (text[start:end] == entity text, in code points, as Python
slices); pre-tokenised input ({"tokens": [["Alice", "flew", ...]]}) gives token indices and the
tag of every token, as `jiyi predict` writes them. Explanations and a memory are for
classification runs: those endpoints answer 501.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from jiyi.ner.tags import entity_types
from jiyi.serve.embedding import TaskService

NOT_FOR_NER = "for classification runs; this is a NER run (its entities: POST /v1/predict)."


def is_ner(model: Any) -> bool:
    """Whether a loaded model is a NER tagger (its jiyi.json says task ner)."""
    return (getattr(model, "meta", None) or {}).get("task") == "ner"


class NerService(TaskService):
    """A loaded `jiyi.ner.predict.NerTagger` and what the endpoints do with it (on the batcher's
    worker thread, like `jiyi.serve.app.Service`, whose attributes it mirrors)."""

    task, kind = "ner", "NER"

    def __init__(self, tagger: Any, memory: Any = None, *, name: str | None = None):
        super().__init__(tagger.model, tagger.tokenizer, tagger.meta, memory, name)
        self.tagger = tagger
        self.labels: list[str] = list(tagger.labels)
        self.scheme = str(tagger.scheme)
        self.entity_types = entity_types([self.labels])
        self.explain_unavailable = f"explanations are {NOT_FOR_NER}"
        self.memory_unavailable = f"a memory is {NOT_FOR_NER}"
        self.tagger.predict_texts(["warm up"])

    def predict(self, items: list[Any], key: Hashable) -> list[dict[str, Any]]:
        """key "tokens": `items` are pre-tokenised sentences; otherwise raw texts."""
        if key == "tokens":
            return self.tagger.predict_tokens(items)
        rows = self.tagger.predict_texts(items)
        return [{"text": text, **row} for text, row in zip(items, rows, strict=True)]

    def info(self, settings: Any) -> dict[str, Any]:
        return {
            "model": self.name,
            "format": self.format,
            "task": self.task,
            "labels": self.labels,
            "entity_types": self.entity_types,
            "scheme": self.scheme,
            "max_length": self.max_length,
            "batching": {
                "enabled": settings.batching,
                "max_batch_size": settings.max_batch_size,
                "max_wait_ms": float(settings.max_wait_ms),
            },
            "memory": None,
            "features": {
                "predict": True,
                "explain": False,
                "embed": True,
                "memory": False,
                "ask": False,
            },
        }


__all__ = ["NerService", "is_ner"]
