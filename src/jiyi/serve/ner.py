"""`jiyi serve` on a NER run (`jiyi train --task ner`): entities instead of labels.

>>> app = create_app(Settings(), NerService(NerTagger("runs/ner")))
>>> # POST /v1/predict {"texts": ["Alice flew to New York."]} ->
>>> # {"predictions": [{"text": "Alice flew to New York.",
>>> #                   "entities": [{"start": 0, "end": 5, "text": "Alice", "type": "PER", ...}]}]}

Raw texts give character offsets (text[start:end] == entity text, in code points, as Python
slices); pre-tokenised input ({"tokens": [["Alice", "flew", ...]]}) gives token indices and the
tag of every token, as `jiyi predict` writes them. /v1/info adds the entity types and the tag
scheme. Explanations and a memory are for classification runs: those endpoints answer 501;
/v1/embed works (the run's encoder).
"""

from collections.abc import Hashable
from typing import Any

from jiyi.ner.tags import entity_types
from jiyi.serve.api import Api
from jiyi.serve.routes import add_embed, add_explain, add_faq, add_memory
from jiyi.serve.schemas import EntityResponse, NerInfoResponse
from jiyi.serve.service import Service
from jiyi.serve.settings import Settings

NOT_FOR_NER = "for classification runs; this is a NER run (its entities: POST /v1/predict)."


class NerService(Service):
    """A loaded `jiyi.ner.predict.NerTagger` and what the endpoints do with it."""

    task, kind = "ner", "NER"
    info_model = NerInfoResponse

    def __init__(self, tagger: Any, memory: Any = None, *, name: str | None = None):
        super().__init__(tagger, memory, name=name)
        self.tagger = tagger
        self.max_length = int(tagger.meta["max_length"])
        self.labels = list(tagger.labels)
        self.scheme = str(tagger.scheme)
        self.entity_types = entity_types([self.labels])
        self.explain_unavailable = f"explanations are {NOT_FOR_NER}"
        self.memory_unavailable = f"a memory is {NOT_FOR_NER}"
        self.tagger.predict_texts(["warm up"])

    @staticmethod
    def load_predictor(run_dir: str, threads: int | None = None) -> Any:
        import torch

        from jiyi.ner.predict import NerTagger

        if threads:
            torch.set_num_threads(threads)
        return NerTagger(run_dir)

    def predict(self, items: list[Any], key: Hashable) -> list[dict[str, Any]]:
        """key "tokens": `items` are pre-tokenised sentences; otherwise raw texts."""
        if key == "tokens":
            return self.tagger.predict_tokens(items)
        rows = self.tagger.predict_texts(items)
        return [{"text": text, **row} for text, row in zip(items, rows, strict=True)]

    def info(self, settings: Settings) -> dict[str, Any]:
        return self.common_info(settings) | {
            "entity_types": self.entity_types,
            "scheme": self.scheme,
            "features": {
                "predict": True,
                "explain": False,
                "embed": True,
                "memory": False,
                "ask": False,
            },
        }

    def describe(self) -> str:
        types = ", ".join(self.entity_types)
        return f"NER model {self.name} ({self.format}, entity types {types})"

    def add_routes(self, api: Api) -> None:
        """POST /v1/predict (entities of texts or of pre-tokenised sentences), then the shared
        routes: /v1/embed works, explanations and the memory ones answer 501."""
        EntityRequest = api.requests.entities

        @api.app.post(
            "/v1/predict",
            response_model=EntityResponse,
            response_model_exclude_none=True,
            summary="Entities of texts (character offsets) or of pre-tokenised sentences",
            **api.v1(),
        )
        async def predict(req: EntityRequest) -> dict[str, Any]:  # type: ignore[valid-type]
            # raw texts and word lists are batched apart (the batcher groups by key)
            if req.tokens is not None:
                return {"predictions": await api.submit(req.tokens, key="tokens")}
            return {"predictions": await api.submit(req.texts, key="texts")}

        add_explain(api, self)
        add_embed(api, self)
        add_memory(api, self)
        add_faq(api, self)


__all__ = ["NerService"]
