"""A classifier on pooled vectors: an encoder, mean pooling over the attention mask, optionally
L2 normalisation, and a linear head. Two kinds of runs have this model, with the interface
`jiyi.predict.forward_logits` and the inspect verbs use of a Hugging Face sequence classifier
(`config`, `.logits`, `get_input_embeddings`):

- `jiyi train --method contrastive` (jiyi.fewshot): the head is a logistic regression fitted on
  the tuned encoder's normalised vectors (type "mean-pool-logistic");
- `jiyi train --pooling mean`: the encoder and the head (dropout, then linear, on the
  unnormalised mean) fine-tuned end to end (type "mean-pool-linear"). Sentence encoders were
  trained to be read this way (e5, MiniLM sentence-transformers); a checkpoint without a
  trained pooler (e5) otherwise gets a randomly initialised dense + tanh layer on its first
  token.

```
RUN_DIR/model/
  config.json, model.safetensors, tokenizer files   the encoder: AutoModel loads it
  head.safetensors                                  weight (C, H), bias (C,)
  jiyi.json                                         {"head": HEAD RECORD, ...}
```

Without jiyi: `AutoModel` gives the encoder; mean-pool its last hidden state over the attention
mask (then divide by the norm when the record says "normalize": true); `v @ weight.T + bias`
are the logits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers.modeling_outputs import SequenceClassifierOutput

from jiyi.data.collate import Encoded, pad_batch, sorted_batches
from jiyi.errors import JiyiError
from jiyi.runs import read_meta

HEAD_FILE = "head.safetensors"
# The head records jiyi.json carries, by type; "normalize" says whether the mean is L2-normalised.
HEADS = {
    "mean-pool-logistic": {"file": HEAD_FILE, "pooling": "mean", "normalize": True},
    "mean-pool-linear": {"file": HEAD_FILE, "pooling": "mean", "normalize": False},
}


def head_record(kind: str, **extra: Any) -> dict[str, Any]:
    """jiyi.json's "head" entry of a model with a head of type `kind` (a key of `HEADS`)."""
    return {"type": kind, **HEADS[kind], **extra}


def sentence_vectors(
    hidden: torch.Tensor, mask: torch.Tensor, normalize: bool = True
) -> torch.Tensor:
    """(B, T, H) last hidden states and their (B, T) mask -> (B, H) mean-pooled vectors (the
    mean over the tokens the mask marks, as `jiyi.inspect.embeddings.pool` "mean"), of unit
    length when `normalize`."""
    keep = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    mean = (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1)  # (B, H)
    return F.normalize(mean, dim=-1) if normalize else mean


class SentenceClassifier(torch.nn.Module):
    """head(dropout(pool(encoder(text)))), pool = the mask's mean, normalised when `normalize`:
    see the module docstring. Dropout acts in training only."""

    def __init__(
        self,
        encoder: Any,
        weight: torch.Tensor,
        bias: torch.Tensor,
        *,
        normalize: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.normalize = normalize
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(weight.shape[1], weight.shape[0])  # H -> C
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.copy_(bias)

    @property
    def config(self) -> Any:
        """The encoder's config; it carries id2label, num_labels and problem_type."""
        return self.encoder.config

    @property
    def base_model(self) -> Any:
        return self.encoder

    def get_input_embeddings(self) -> Any:
        return self.encoder.get_input_embeddings()

    def set_attn_implementation(self, implementation: str) -> None:
        """The encoder's attention kernel (`jiyi.inspect.attention` asks for eager)."""
        self.encoder.set_attn_implementation(implementation)

    def save_pretrained(self, folder: str, **kwargs: Any) -> None:
        """The encoder as a Hugging Face folder, the head beside it (`HEAD_FILE`); jiyi.json's
        "head" entry comes from `head_meta`."""
        self.encoder.save_pretrained(folder, **kwargs)
        weight, bias = (
            t.detach().float().cpu().numpy() for t in (self.head.weight, self.head.bias)
        )
        save_head(folder, weight, bias)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            shape = (input_ids if input_ids is not None else inputs_embeds).shape[:2]  # type: ignore[union-attr]
            device = (input_ids if input_ids is not None else inputs_embeds).device  # type: ignore[union-attr]
            attention_mask = torch.ones(shape, dtype=torch.long, device=device)  # (B, T)
        out = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            **kwargs,
        )
        vectors = sentence_vectors(out.last_hidden_state, attention_mask, self.normalize)  # (B, H)
        logits = self.head(self.dropout(vectors.to(self.head.weight.dtype)))  # (B, C)
        return SequenceClassifierOutput(
            logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )


@torch.inference_mode()
def encode_vectors(encoder: Any, enc: Encoded, *, pad_id: int, batch_size: int) -> np.ndarray:
    """(N, H) unit mean-pooled vectors of the texts of `enc`, in row order (eval mode)."""
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    out = np.zeros((len(enc), int(encoder.config.hidden_size)), dtype=np.float32)
    try:
        for batch in sorted_batches(enc.lengths, batch_size):
            inputs = {k: v.to(device) for k, v in pad_batch(enc, batch, pad_id).items()}
            hidden = encoder(**inputs).last_hidden_state  # (B, T, H)
            out[batch] = sentence_vectors(hidden, inputs["attention_mask"]).float().cpu().numpy()
    finally:
        if was_training:
            encoder.train()
    return out


def label_config(encoder: Any, labels: list[str], multilabel: bool = False) -> None:
    """Write the label mapping into the encoder's config (saved in config.json)."""
    config = encoder.config
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.problem_type = (
        "multi_label_classification" if multilabel else "single_label_classification"
    )


def encoder_without_pooler(path: str | Path, **kwargs: Any) -> Any:
    """`AutoModel` of the folder at `path`, without the dense + tanh pooler on the first token
    where the architecture has one (BERT's `add_pooling_layer`): the head reads the mean."""
    from transformers import AutoModel

    from jiyi.hf import quiet_transformers, use_safetensors

    common = {"trust_remote_code": False, "use_safetensors": use_safetensors(str(path)), **kwargs}
    with quiet_transformers():
        try:
            return AutoModel.from_pretrained(str(path), add_pooling_layer=False, **common)
        except TypeError:  # an architecture without a pooler (DistilBERT) takes no such flag
            return AutoModel.from_pretrained(str(path), **common)


def new_pooled_classifier(
    path: str, labels: list[str], *, multilabel: bool = False, dropout: float | None = None
) -> SentenceClassifier:
    """`--pooling mean`: the encoder at `path` (its own pooler, if any, left out) and a fresh
    linear head for `labels`, initialised as Hugging Face initialises a classifier (normal with
    the config's initializer_range, zero bias); the head's dropout is --dropout, else the
    config's classifier or hidden dropout, as BertForSequenceClassification's."""
    from transformers import AutoConfig

    from jiyi.hf import dropout_config

    try:
        config = dropout_config(AutoConfig.from_pretrained(path, trust_remote_code=False), dropout)
        encoder = encoder_without_pooler(path, config=config)
    except (OSError, ValueError) as e:
        raise JiyiError(f"--model {path}: could not load it as an encoder ({e}).") from None
    label_config(encoder, labels, multilabel)
    hidden = int(encoder.config.hidden_size)
    std = float(getattr(encoder.config, "initializer_range", 0.02))
    weight = torch.randn(len(labels), hidden) * std  # (C, H); torch's seed is set by the run
    p = getattr(encoder.config, "classifier_dropout", None)
    if p is None:
        p = getattr(encoder.config, "hidden_dropout_prob", 0.1)
    return SentenceClassifier(
        encoder, weight, torch.zeros(len(labels)), normalize=False, dropout=float(p)
    )


def save_head(folder: str | Path, weight: np.ndarray, bias: np.ndarray) -> None:
    from safetensors.numpy import save_file

    save_file(
        {"weight": np.ascontiguousarray(weight, dtype=np.float32),
         "bias": np.ascontiguousarray(bias, dtype=np.float32)},
        str(Path(folder) / HEAD_FILE),
    )  # fmt: skip


def head_meta(model: Any) -> dict[str, Any]:
    """The jiyi.json entries that describe `model`'s head: {"head": record} for a
    `SentenceClassifier`, {} for any other model (its head is in its Hugging Face folder)."""
    if not isinstance(model, SentenceClassifier):
        return {}
    return {"head": head_record("mean-pool-logistic" if model.normalize else "mean-pool-linear")}


def is_sentence_classifier(model_dir: str | Path) -> bool:
    """Whether a model folder's jiyi.json names a head on pooled vectors (this module's model)."""
    return isinstance(read_meta(model_dir).get("head"), dict)


def load_sentence_classifier(model_dir: str | Path) -> SentenceClassifier:
    """A model folder with a pooled head (its jiyi.json "head") -> `SentenceClassifier` in eval
    mode."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    head = read_meta(model_dir)["head"]
    if head.get("type") not in HEADS:
        raise JiyiError(
            f"{model_dir}: unknown head type {head.get('type')!r} in jiyi.json (this jiyi knows "
            f"{', '.join(HEADS)}); upgrade jiyi or re-train the run."
        )
    file = model_dir / head.get("file", HEAD_FILE)
    if not file.is_file():
        raise JiyiError(f"{file}: missing; the run's head is gone. Re-run training.")
    encoder = encoder_without_pooler(model_dir)
    weights = load_file(str(file))
    normalize = bool(head.get("normalize", HEADS[head["type"]]["normalize"]))
    return SentenceClassifier(
        encoder, weights["weight"], weights["bias"], normalize=normalize
    ).eval()
