"""Context vectors: pool one hidden state (or an average of several) over each text's tokens.

>>> vectors = embed_texts("minilm", ["a moving film", "two dull hours"], layers="-4:")
>>> vectors.shape, vectors.dtype
((2, 384), dtype('float32'))

`embed_file` streams a file of any size: it reads `chunk_size` texts at a time, embeds them
batched by length, and appends the rows to a `.npy` or Parquet file that is renamed into place
only when complete. `layer_vectors` pools every hidden state in one forward pass (probe, drift).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jiyi.data.collate import Encoded, encode, pad_batch, sorted_batches
from jiyi.errors import JiyiError
from jiyi.inspect.vector_io import TextStream, VectorWriter

POOLINGS = ("cls", "mean", "max")
OUTPUT_TYPES = (".npy", ".parquet")


@dataclass
class Encoder:
    """An encoder without its task head (`AutoModel`), in eval mode, with its tokenizer."""

    model: Any
    tokenizer: Any
    path: str  # the folder (or Hub id) it was loaded from

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def max_tokens(self) -> int:
        """The longest input the position embeddings (and the tokenizer) allow."""
        limit = int(getattr(self.model.config, "max_position_embeddings", 512))
        tok_limit = int(getattr(self.tokenizer, "model_max_length", limit) or limit)
        return min(limit, tok_limit) if tok_limit < 1_000_000 else limit

    def prompt(self, role: str, override: str | None = None) -> str:
        """The prefix its texts get in `role` ("query"/"passage"; see `jiyi.prompts`)."""
        from jiyi.prompts import prompt_for

        return prompt_for(self.path, role, override)


def load_encoder(name: str | os.PathLike, flag: str = "MODEL_OR_RUN") -> Encoder:
    """An alias (`minilm`), a Hugging Face folder or a jiyi run directory -> `Encoder`.

    A run's classification head is dropped: `AutoModel` loads the encoder weights only.
    """
    from transformers import AutoModel

    from jiyi.lora import load_pretrained, unmerged_record
    from jiyi.models import load_tokenizer, quiet_transformers, resolve_model

    path = resolve_model(str(name), flag)
    local = Path(path).is_dir()
    if local and not any(Path(path).glob("*.safetensors")) and not unmerged_record(path):
        raise JiyiError(
            f"{flag} {name}: no .safetensors weights in {path}. jiyi never loads pickled weights; "
            "convert them to safetensors first."
        )
    try:
        with quiet_transformers():
            model = load_pretrained(  # a --no-lora-merge run: base + adapter, merged
                AutoModel, path, trust_remote_code=False, use_safetensors=True if local else None
            )
    except (OSError, ValueError) as e:
        raise JiyiError(f"{flag} {name}: could not load it as an encoder ({e}).") from None
    model.eval()
    return Encoder(model, load_tokenizer(path), path)


def parse_layers(spec: str | int | Sequence[int], n_layers: int) -> list[int]:
    """`--layers` -> indices into `hidden_states`, whose n_layers + 1 entries are the embedding
    output (0) and each transformer layer's output (1..n_layers). Negative indices count from
    the end; a slice follows Python's rules; a comma list picks layers; `all` takes every one.

    >>> parse_layers("-1", 6)
    [6]
    >>> parse_layers("-4:", 6)
    [3, 4, 5, 6]
    >>> parse_layers("0,3,5", 6)
    [0, 3, 5]
    >>> parse_layers("1:6:2", 6)
    [1, 3, 5]
    >>> parse_layers("all", 2)
    [0, 1, 2]
    """
    n = n_layers + 1
    text = spec if isinstance(spec, str) else ",".join(map(str, np.atleast_1d(spec).tolist()))
    text = text.strip().replace(" ", "")
    where = (
        f"--layers {text!r}: the model has hidden states 0..{n_layers} (0 = embeddings output, "
        f"-1 = last layer)"
    )
    if text == "all":
        return list(range(n))
    try:
        if ":" in text:
            parts = [int(p) if p else None for p in text.split(":")]
            if len(parts) > 3 or parts[2:] == [0]:
                raise ValueError
            chosen = list(range(n))[slice(*parts)]
        else:
            chosen = [int(p) for p in text.split(",")]
    except ValueError:
        raise JiyiError(
            f"{where}; write one index (-1), a slice (-4:) or a list (0,3,5)."
        ) from None
    if not chosen:
        raise JiyiError(f"{where}; this selects no layer.")
    bad = [i for i in chosen if not -n <= i < n]
    if bad:
        raise JiyiError(f"{where}; {bad[0]} is out of range.")
    chosen = [i % n for i in chosen]
    if len(set(chosen)) < len(chosen):
        raise JiyiError(f"{where}; a layer is named twice.")
    return chosen


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, H) token vectors and their (B, T) attention mask -> (B, H) text vectors.

    `cls` takes position 0; `mean` and `max` use only the tokens the mask marks (padding never
    counts): tokens [1, 2], [3, 4] and a pad [9, 9] mean-pool to [2, 3] and max-pool to [3, 4].
    """
    if pooling == "cls":
        return hidden[:, 0]
    keep = mask.unsqueeze(-1).to(torch.bool)  # (B, T, 1)
    if pooling == "mean":
        total = hidden.masked_fill(~keep, 0.0).sum(dim=1)  # (B, H)
        return total / keep.sum(dim=1).clamp(min=1).to(hidden.dtype)
    if pooling == "max":
        return hidden.masked_fill(~keep, float("-inf")).max(dim=1).values  # (B, H)
    raise JiyiError(f"--pooling {pooling!r}: choose one of {', '.join(POOLINGS)}.")


def _check(pooling: str, batch_size: int, max_length: int) -> None:
    if pooling not in POOLINGS:
        raise JiyiError(f"--pooling {pooling!r}: choose one of {', '.join(POOLINGS)}.")
    if batch_size < 1:
        raise JiyiError(f"--batch-size {batch_size}: must be at least 1.")
    if max_length < 2:
        raise JiyiError(f"--max-length {max_length}: must be at least 2 (room for [CLS] [SEP]).")


def _encode(encoder: Encoder, texts: Sequence[str], max_length: int) -> Encoded:
    """Token ids, cut at the head to the shorter of max_length and what the model allows."""
    return encode(encoder.tokenizer, list(texts), None, min(max_length, encoder.max_tokens), "head")


@torch.inference_mode()
def _forward(
    encoder: Encoder, enc: Encoded, batch_size: int
) -> Iterator[tuple[list[int], tuple[torch.Tensor, ...], torch.Tensor]]:
    """(row indices, L + 1 hidden states each (B, T, H), (B, T) mask) per length-sorted batch."""
    model = encoder.model
    device = next(model.parameters()).device
    takes_types = "token_type_ids" in inspect.signature(model.forward).parameters
    pad_id = encoder.tokenizer.pad_token_id or 0
    for rows in sorted_batches(enc.lengths, batch_size):
        inputs = pad_batch(enc, rows, pad_id)
        if not takes_types:
            inputs.pop("token_type_ids")
        inputs = {k: v.to(device) for k, v in inputs.items()}
        out = model(**inputs, output_hidden_states=True)
        yield rows, out.hidden_states, inputs["attention_mask"]


def _embed(
    encoder: Encoder,
    texts: Sequence[str],
    pooling: str,
    layers: list[int],
    normalize: bool,
    batch_size: int,
    max_length: int,
) -> tuple[np.ndarray, int]:
    """(N, H) float32 vectors in input order, and how many texts were cut to fit."""
    out = np.zeros((len(texts), encoder.hidden_size), dtype=np.float32)
    if not texts:
        return out, 0  # the tokenizer fails on an empty batch
    enc = _encode(encoder, texts, max_length)
    for rows, hidden_states, mask in _forward(encoder, enc, batch_size):
        tokens = torch.stack([hidden_states[i] for i in layers]).mean(dim=0)  # (B, T, H)
        vectors = pool(tokens.float(), mask, pooling)  # (B, H)
        if normalize:
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        out[rows] = vectors.cpu().numpy()
    return out, enc.truncated


def embed_texts(
    model_or_path: str | os.PathLike | Encoder,
    texts: Sequence[str],
    *,
    pooling: str = "mean",
    layers: str | int | Sequence[int] = "-1",
    normalize: bool = False,
    batch_size: int = 64,
    max_length: int = 512,
    prompt: str = "",
) -> np.ndarray:
    """(N, H) float32 context vectors of `texts`, row i for texts[i].

    The selected hidden states are averaged token by token, then pooled over the text's tokens
    (see `pool`); `normalize` scales each row to unit L2 norm. Texts longer than `max_length`
    tokens (or the model's limit) keep their head. `prompt` is put before every text (e5's
    "query: "; `Encoder.prompt` gives a model's own).
    """
    from jiyi.prompts import with_prompt

    _check(pooling, batch_size, max_length)
    encoder = model_or_path if isinstance(model_or_path, Encoder) else load_encoder(model_or_path)
    chosen = parse_layers(layers, encoder.n_layers)
    texts = with_prompt(texts, prompt)
    return _embed(encoder, texts, pooling, chosen, normalize, batch_size, max_length)[0]


def layer_vectors(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    pooling: str = "mean",
    batch_size: int = 64,
    max_length: int = 512,
) -> np.ndarray:
    """Pooled vectors of every hidden state, one forward pass per batch: (L + 1, N, H) float32."""
    _check(pooling, batch_size, max_length)
    out = np.zeros((encoder.n_layers + 1, len(texts), encoder.hidden_size), dtype=np.float32)
    if not texts:
        return out
    enc = _encode(encoder, texts, max_length)
    for rows, hidden_states, mask in _forward(encoder, enc, batch_size):
        for layer, hidden in enumerate(hidden_states):
            out[layer, rows] = pool(hidden.float(), mask, pooling).cpu().numpy()  # (B, H)
    return out


def model_fingerprint(
    model_dir: str | os.PathLike,
    pooling: str = "mean",
    layers: str | int | Sequence[int] = "-1",
    normalize: bool = False,
    *,
    max_length: int = 512,
    prompts: dict[str, str] | None = None,
) -> str:
    """sha256 (hex) of what decides a vector: the weights' bytes, the tokenizer's vocabulary
    files, and the settings (layers resolved, so "-1" and "6" agree on a 6-layer model; the
    prompts, {role: prefix}, when there are any). A vector store keeps it and refuses vectors
    made under another fingerprint."""
    from jiyi.lora import weight_files
    from jiyi.models import resolve_model

    path = Path(resolve_model(str(model_dir), "--model"))
    weights = weight_files(path)  # an unmerged LoRA run: the base's and the adapter's
    if not weights:
        raise JiyiError(f"{model_dir}: no .safetensors weights to fingerprint in {path}.")
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    vocab = ("tokenizer.json", "vocab.txt", "vocab.json", "merges.txt")
    h = hashlib.sha256()
    for file in [*weights, *(path / v for v in vocab if (path / v).is_file())]:
        h.update(file.name.encode() + b"\x00")
        with open(file, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    settings = {
        "pooling": pooling,
        "layers": parse_layers(layers, int(config["num_hidden_layers"])),
        "normalize": bool(normalize),
        "max_length": int(max_length),
    }
    if any((prompts or {}).values()):  # absent when empty: fingerprints without prompts unchanged
        settings["prompts"] = {role: p for role, p in sorted((prompts or {}).items()) if p}
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Streaming: embed a file chunk by chunk (reader and writer in `jiyi.inspect.vector_io`).


def embed_file(
    model_or_path: str | os.PathLike | Encoder,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    pooling: str = "mean",
    layers: str | int | Sequence[int] = "-1",
    normalize: bool = False,
    batch_size: int = 64,
    max_length: int = 512,
    text_column: str = "text",
    chunk_size: int = 10000,
    on_chunk: Callable[[int], None] | None = None,
    prompt: str | None = None,
) -> dict[str, Any]:
    """Embed every text of `input_path` into `output_path` (.npy: (N, H) float32 in input
    order; .parquet: columns `id` (the input's `id` column, else the 0-based row) and `vector`).

    Memory holds one chunk of texts and its vectors, never the whole file. `on_chunk(rows_done)`
    is called after each chunk. `prompt` goes before every text; None means the model's query
    prompt ("query: " for e5, none for most models). Returns a summary: rows, dim, truncated,
    blank_lines, prompt, output.
    """
    from jiyi.prompts import with_prompt

    if Path(output_path).suffix.lower() not in OUTPUT_TYPES:
        raise JiyiError(f"--output {output_path}: write a .npy or a .parquet file.")
    _check(pooling, batch_size, max_length)
    stream = TextStream(input_path, text_column=text_column, chunk_size=chunk_size)
    encoder = model_or_path if isinstance(model_or_path, Encoder) else load_encoder(model_or_path)
    chosen = parse_layers(layers, encoder.n_layers)
    prompt = encoder.prompt("query", prompt)
    writer = VectorWriter(output_path, encoder.hidden_size)
    truncated = 0
    try:
        for chunk in stream:
            texts = with_prompt(chunk.texts, prompt)
            vectors, cut = _embed(
                encoder, texts, pooling, chosen, normalize, batch_size, max_length
            )
            writer.write(chunk.ids, vectors)
            truncated += cut
            if on_chunk is not None:
                on_chunk(writer.rows)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return {
        "rows": writer.rows,
        "dim": encoder.hidden_size,
        "layers": chosen,
        "truncated": truncated,
        "max_length": min(max_length, encoder.max_tokens),
        "blank_lines": stream.blank_lines,
        "prompt": prompt,
        "output": str(output_path),
    }
