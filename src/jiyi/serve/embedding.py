"""What every kind of served run shares: `/v1/embed` (the run's encoder, mean-pooled over the
last layer, L2-normalised, as JSON) and `TaskService`, the start of the NER and QA services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError


def embed_payload(
    model: Any, tokenizer: Any, texts: list[str], max_length: int, name: str | None = None
) -> dict[str, Any]:
    """{"vectors": one list of floats per text, "dim": their size} from `model`'s encoder
    (`name`: the folder it came from; default the model's own `name_or_path`)."""
    from jiyi.inspect.embeddings import Encoder, embed_texts

    path = name if name is not None else str(getattr(model, "name_or_path", ""))
    encoder = Encoder(model.base_model, tokenizer, path)
    vectors = embed_texts(
        encoder, texts, pooling="mean", layers="-1", normalize=True, max_length=max_length
    )
    return {"vectors": vectors.tolist(), "dim": int(vectors.shape[1])}


class TaskService:
    """The part of `jiyi.serve.ner.NerService` and `jiyi.serve.qa.QaService` that does not
    depend on the task: no memory (refused with a message naming the run's kind), the run's
    name, format and maximum length, and `/v1/embed` over its encoder. `model` and `tokenizer`
    are the loaded predictor's."""

    task = ""
    kind = ""  # the run's kind in messages: "NER", "QA"
    memory = None
    memory_info = None
    labelled = False
    faq = False

    def __init__(
        self, model: Any, tokenizer: Any, meta: dict[str, Any], memory: Any, name: str | None
    ) -> None:
        if memory is not None:
            raise JiyiError(
                f"--memory: a memory serves classification runs; this is a {self.kind} run. "
                "Serve it without --memory."
            )
        self.model, self.tokenizer = model, tokenizer
        folder = Path(model.name_or_path)
        self.name = name or (folder.parent.name if folder.name == "model" else folder.name)
        self.format = "torch"
        self.max_length = int(meta["max_length"])
        self.embed_unavailable = None

    def embed(self, texts: list[str]) -> dict[str, Any]:
        return embed_payload(self.model, self.tokenizer, texts, self.max_length)
