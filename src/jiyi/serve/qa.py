"""`jiyi serve` on a QA run (`jiyi train --task qa`): answers found in a context.

>>> app = create_app(Settings(), QuestionAnswerer("runs/qa"))     # create_app picks QaService
>>> # POST /v1/ask {"question": "What is the code?",
>>> #               "context": "The door opens when the code is 4711 and not before."} ->
>>> # {"question": "What is the code?", "answer": "4711", "start": 32, "end": 36, "score": 0.93}

The rows are `QuestionAnswerer.answer`'s, as `jiyi predict` writes them: `context[start:end] ==
answer` (code points, as Python slices); when the model abstains `answer` is "" and `start` and
`end` are null. Several pairs at once: {"questions": [...], "contexts": [...]} -> {"answers":
[...]}. Concurrent requests share forward passes (the batcher gathers their pairs). /v1/predict
answers 501 and points at /v1/ask; explanations and a memory are for classification runs: those
endpoints answer 501 too, and /v1/embed works (the run's encoder).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from jiyi.serve.embedding import TaskService

NOT_FOR_QA = "for classification runs; this is a QA run (its answers: POST /v1/ask)."
ASK_INSTEAD = (
    'this is a QA run: POST /v1/ask {"question": ..., "context": ...} (or {"questions": [...], '
    '"contexts": [...]}) for answers.'
)


def is_qa(model: Any) -> bool:
    """Whether a loaded model is a question answerer (its jiyi.json says task qa)."""
    return (getattr(model, "meta", None) or {}).get("task") == "qa"


class QaService(TaskService):
    """A loaded `jiyi.qa.predict.QuestionAnswerer` and what the endpoints do with it (on the
    batcher's worker thread, like `jiyi.serve.app.Service`, whose attributes it mirrors)."""

    task, kind = "qa", "QA"

    def __init__(self, answerer: Any, memory: Any = None, *, name: str | None = None):
        super().__init__(answerer.model, answerer.tokenizer, answerer.meta, memory, name)
        self.answerer = answerer
        self.labels: list[str] = []
        self.stride = int(answerer.meta["stride"])
        self.predict_unavailable = ASK_INSTEAD
        self.explain_unavailable = f"explanations are {NOT_FOR_QA}"
        self.memory_unavailable = f"a memory is {NOT_FOR_QA}"
        self.answerer.answer(["warm up"], ["warm up"])

    def predict(self, pairs: list[Any], key: Hashable) -> list[dict[str, Any]]:
        """`pairs` are (question, context): one answer row each, in order (a long context is
        read in several windows, as `jiyi predict` does)."""
        questions = [question for question, _ in pairs]
        contexts = [context for _, context in pairs]
        return self.answerer.answer(questions, contexts)

    def info(self, settings: Any) -> dict[str, Any]:
        return {
            "model": self.name,
            "format": self.format,
            "task": self.task,
            "labels": self.labels,
            "max_length": self.max_length,
            "stride": self.stride,
            "max_answer_length": int(self.answerer.max_answer_length),
            "null_threshold": float(self.answerer.null_threshold),
            "batching": {
                "enabled": settings.batching,
                "max_batch_size": settings.max_batch_size,
                "max_wait_ms": float(settings.max_wait_ms),
            },
            "memory": None,
            "features": {
                "predict": False,
                "explain": False,
                "embed": True,
                "memory": False,
                "ask": True,
            },
        }


__all__ = ["QaService", "is_qa"]
