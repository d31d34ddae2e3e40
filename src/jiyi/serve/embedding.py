"""`/v1/embed` for every kind of served run: the run's encoder, mean-pooled over the last layer,
L2-normalised, as JSON."""

from __future__ import annotations

from typing import Any


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
