"""`jiyi serve` on a QA run (`jiyi train --task qa`): answers found in a context.

>>> app = create_app(Settings(), QaService(QuestionAnswerer("runs/qa")))
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

from collections.abc import Hashable
from typing import Any

from jiyi.serve.api import Api
from jiyi.serve.errors import NOT_IMPLEMENTED, ApiError
from jiyi.serve.routes import add_embed, add_explain, add_memory
from jiyi.serve.schemas import QaAnswer, QaAnswers, QaInfoResponse
from jiyi.serve.service import Service
from jiyi.serve.settings import Settings

NOT_FOR_QA = "for classification runs; this is a QA run (its answers: POST /v1/ask)."
ASK_INSTEAD = (
    'this is a QA run: POST /v1/ask {"question": ..., "context": ...} (or {"questions": [...], '
    '"contexts": [...]}) for answers.'
)


class QaService(Service):
    """A loaded `jiyi.qa.predict.QuestionAnswerer` and what the endpoints do with it."""

    task, kind = "qa", "QA"
    info_model = QaInfoResponse

    def __init__(self, answerer: Any, memory: Any = None, *, name: str | None = None):
        super().__init__(answerer, memory, name=name)
        self.answerer = answerer
        self.max_length = int(answerer.meta["max_length"])
        self.stride = int(answerer.meta["stride"])
        self.predict_unavailable = ASK_INSTEAD
        self.explain_unavailable = f"explanations are {NOT_FOR_QA}"
        self.memory_unavailable = f"a memory is {NOT_FOR_QA}"
        self.answerer.answer(["warm up"], ["warm up"])

    @staticmethod
    def load_predictor(run_dir: str, threads: int | None = None) -> Any:
        import torch

        from jiyi.qa.predict import QuestionAnswerer

        if threads:
            torch.set_num_threads(threads)
        return QuestionAnswerer(run_dir)

    def predict(self, pairs: list[Any], key: Hashable) -> list[dict[str, Any]]:
        """`pairs` are (question, context): one answer row each, in order (a long context is
        read in several windows, as `jiyi predict` does)."""
        questions = [question for question, _ in pairs]
        contexts = [context for _, context in pairs]
        return self.answerer.answer(questions, contexts)

    def info(self, settings: Settings) -> dict[str, Any]:
        return self.common_info(settings) | {
            "stride": self.stride,
            "max_answer_length": int(self.answerer.max_answer_length),
            "null_threshold": float(self.answerer.null_threshold),
            "features": {
                "predict": False,
                "explain": False,
                "embed": True,
                "memory": False,
                "ask": True,
            },
        }

    def describe(self) -> str:
        return f"QA model {self.name} ({self.format}, answers at POST /v1/ask)"

    def add_routes(self, api: Api) -> None:
        """POST /v1/predict answers 501 (pointing at /v1/ask); the shared routes (/v1/embed
        works, explanations and the memory ones answer 501); POST /v1/ask answers questions."""
        QaRequest = api.requests.qa

        @api.app.post(
            "/v1/predict",
            summary="Not for a QA run: its answers come from POST /v1/ask",
            **api.v1(NOT_IMPLEMENTED),
        )
        async def predict() -> dict[str, Any]:
            raise ApiError(501, self.predict_unavailable)

        add_explain(api, self)
        add_embed(api, self)
        add_memory(api, self)

        @api.app.post(
            "/v1/ask",
            response_model=QaAnswer | QaAnswers,
            summary="Answer questions from their contexts: a span of the context, or none",
            **api.v1(),
        )
        async def ask_qa(req: QaRequest) -> dict[str, Any]:  # type: ignore[valid-type]
            # pairs from concurrent requests share forward passes (the batcher gathers them)
            if req.questions is not None:
                pairs = list(zip(req.questions, req.contexts, strict=True))
                return {"answers": await api.submit(pairs, key="qa")}
            (row,) = await api.submit([(req.question, req.context)], key="qa")
            return row


__all__ = ["QaService"]
