"""The model of a `--method contrastive` run: an encoder, mean pooling, L2 normalisation and a
linear (logistic) head, with the interface `jiyi.predict.forward_logits` and the inspect verbs
use of a Hugging Face sequence classifier (`config`, `.logits`, `get_input_embeddings`).

```
RUN_DIR/model/
  config.json, model.safetensors, tokenizer files   the tuned encoder: AutoModel loads it
  head.safetensors                                  weight (C, H), bias (C,)
  jiyi.json                                         {"method": "contrastive", "head": HEAD, ...}
```

Without jiyi: `AutoModel` gives the encoder; mean-pool its last hidden state over the attention
mask, divide by the norm, then `softmax(v @ weight.T + bias)` are the probabilities.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers.modeling_outputs import SequenceClassifierOutput

from jiyi.data.collate import Encoded, pad_batch, sorted_batches
from jiyi.runs import read_meta

HEAD_FILE = "head.safetensors"
HEAD = {"type": "mean-pool-logistic", "file": HEAD_FILE, "pooling": "mean", "normalize": True}


def sentence_vectors(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H) last hidden states and their (B, T) mask -> (B, H) unit mean-pooled vectors
    (the mean over the tokens the mask marks, as `jiyi.inspect.embeddings.pool` "mean")."""
    keep = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    mean = (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1)  # (B, H)
    return F.normalize(mean, dim=-1)


class SentenceClassifier(torch.nn.Module):
    """softmax(head(normalise(mean_pool(encoder(text))))): see the module docstring."""

    def __init__(self, encoder: Any, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.encoder = encoder
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
        vectors = sentence_vectors(out.last_hidden_state, attention_mask)  # (B, H)
        logits = self.head(vectors.to(self.head.weight.dtype))  # (B, C)
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


def label_config(encoder: Any, labels: list[str]) -> None:
    """Write the label mapping into the encoder's config (saved in config.json)."""
    config = encoder.config
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.problem_type = "single_label_classification"


def save_head(folder: str | Path, weight: np.ndarray, bias: np.ndarray) -> None:
    from safetensors.numpy import save_file

    save_file(
        {"weight": np.ascontiguousarray(weight, dtype=np.float32),
         "bias": np.ascontiguousarray(bias, dtype=np.float32)},
        str(Path(folder) / HEAD_FILE),
    )  # fmt: skip


def is_sentence_classifier(model_dir: str | Path) -> bool:
    """Whether a model folder's jiyi.json names a head on pooled vectors (this module's model)."""
    return isinstance(read_meta(model_dir).get("head"), dict)


def load_sentence_classifier(model_dir: str | Path) -> SentenceClassifier:
    """RUN_DIR/model of a contrastive run -> `SentenceClassifier` in eval mode."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    from jiyi.errors import JiyiError
    from jiyi.hf import quiet_transformers

    model_dir = Path(model_dir)
    head = read_meta(model_dir)["head"]
    if head.get("type") != HEAD["type"]:
        raise JiyiError(f"{model_dir}: unknown head type {head.get('type')!r} in jiyi.json.")
    file = model_dir / head.get("file", HEAD_FILE)
    if not file.is_file():
        raise JiyiError(f"{file}: missing; the run's head is gone. Re-run training.")
    with quiet_transformers():
        encoder = AutoModel.from_pretrained(
            str(model_dir), trust_remote_code=False, use_safetensors=True
        )
    weights = load_file(str(file))
    return SentenceClassifier(encoder, weights["weight"], weights["bias"]).eval()
