"""Attention of every layer and head, attention rollout, and head importance.

    with eager_attention(model):
        attn = attention_maps(model, inputs)         # (L, B, H, T, T), rows sum to 1
    rollout = attention_rollout(attn[:, 0])          # (T, T)
    importance = head_importance(model, tokenizer, texts, labels)   # (L, H)

SDPA and flash attention never materialise the attention weights, so `output_attentions`
needs the eager implementation; `eager_attention` switches a model to it and back.
torch is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from jiyi.errors import JiyiError

if TYPE_CHECKING:
    import torch


@contextmanager
def eager_attention(model: Any) -> Iterator[Any]:
    """Run `model` with eager attention inside the block (attention weights come out), then
    restore its implementation (SDPA is faster for everything that does not need them)."""
    before = getattr(model.config, "_attn_implementation", None)
    if before in (None, "eager"):
        yield model
        return
    model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        model.set_attn_implementation(before)


@contextmanager
def frozen(model: Any) -> Iterator[Any]:
    """Parameters stop requiring gradients inside the block (gradients w.r.t. inputs or gates
    only: no weight gradients computed or stored), eval mode; both restored after."""
    flags = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)


def attention_maps(model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Attention probabilities of every layer and head: (L, B, H, T, T), row = query.

    Call inside `eager_attention(model)`. Each row sums to 1 over the unpadded keys.
    """
    import torch

    with torch.no_grad():
        out = model(**inputs, output_attentions=True)
    return stack_attentions(out.attentions)


def stack_attentions(attentions: Sequence[torch.Tensor] | None) -> torch.Tensor:
    """A model output's `attentions` (L tensors of (B, H, T, T)) -> one (L, B, H, T, T) tensor."""
    import torch

    if not attentions or attentions[0] is None:
        raise RuntimeError("the model returned no attention weights; run it under eager_attention")
    return torch.stack([a.float() for a in attentions])  # (L, B, H, T, T)


def attention_rollout(attn: np.ndarray | torch.Tensor) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020) of one text's attentions (L, H, T, T) -> (T, T).

    Per layer: average the heads, add the identity (the residual stream), renormalise the rows;
    then multiply the layers, last on the left: R = Â_L ... Â_2 Â_1. Row i of R says how much
    each input token flows into position i of the last layer; row 0 is the [CLS] summary.

    >>> a = np.full((1, 1, 2, 2), 0.5)      # one layer, one head, uniform attention
    >>> attention_rollout(a)                 # (0.5 * A + 0.5 * I)
    array([[0.75, 0.25],
           [0.25, 0.75]])
    """
    a = np.asarray(attn, dtype=np.float64)
    if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"attention_rollout expects (L, H, T, T), got {a.shape}")
    n = a.shape[-1]
    rollout = np.eye(n)
    for layer in a:  # layer (H, T, T)
        mixed = layer.mean(axis=0) + np.eye(n)  # (T, T)
        mixed /= mixed.sum(axis=-1, keepdims=True)
        rollout = mixed @ rollout
    return rollout


def cls_attention(attn: np.ndarray) -> np.ndarray:
    """The last layer's [CLS] row, averaged over heads: (L, H, T, T) -> (T,)."""
    return np.asarray(attn)[-1, :, 0, :].mean(axis=0)


def attention_entropy(attn: np.ndarray) -> np.ndarray:
    """Mean entropy (nats) of each head's attention rows: (L, H, T, T) -> (L, H).

    Low entropy: a head that looks at a few tokens; log(T): a head that looks everywhere.
    """
    a = np.asarray(attn, dtype=np.float64)
    return -(a * np.log(np.clip(a, 1e-12, None))).sum(axis=-1).mean(axis=-1)


# ---------------------------------------------------------------------------- head importance


def attention_output_projections(model: Any) -> list[Any]:
    """The linear layer that mixes the heads' context vectors, one per layer: its input is the
    concatenation of the heads' outputs (B, T, H * d), so scaling a slice scales one head."""
    base = model.base_model
    encoder = getattr(base, "encoder", None)
    if encoder is not None and hasattr(encoder, "layer"):  # BERT, RoBERTa, ELECTRA, XLM-R, ...
        return [layer.attention.output.dense for layer in encoder.layer]
    transformer = getattr(base, "transformer", None)
    if transformer is not None and hasattr(transformer, "layer"):  # DistilBERT
        return [layer.attention.out_lin for layer in transformer.layer]
    raise JiyiError(
        f"head importance: no attention layers found in {type(model).__name__}; "
        "BERT-like encoders (BERT, RoBERTa, ELECTRA, DistilBERT) are supported."
    )


@contextmanager
def head_gates(model: Any, gates: torch.Tensor) -> Iterator[torch.Tensor]:
    """Multiply each head's output by a gate inside the block: gates (B, L, H), one per example.

    A gate of 1 changes nothing, 0 removes the head (the `head_mask` of older transformers,
    which 5.x no longer accepts). Gates of ones with `requires_grad` give ∂loss/∂gate.
    """
    n_heads = gates.shape[-1]

    def hook_for(layer: int) -> Any:
        def scale(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
            context = args[0]  # (B, T, H * d)
            b, t, width = context.shape
            per_head = context.view(b, t, n_heads, width // n_heads)  # (B, T, H, d)
            gate = gates[:, layer].to(context.dtype)[:, None, :, None]  # (B, 1, H, 1)
            return ((per_head * gate).view(b, t, width), *args[1:])

        return scale

    projections = attention_output_projections(model)
    if gates.shape[1] != len(projections):
        raise ValueError(f"gates for {gates.shape[1]} layers, model has {len(projections)}")
    handles = [p.register_forward_pre_hook(hook_for(i)) for i, p in enumerate(projections)]
    try:
        yield gates
    finally:
        for handle in handles:
            handle.remove()


def head_importance(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[Any],
    *,
    batch_size: int = 16,
    max_length: int = 128,
    normalize: bool = True,
) -> np.ndarray:
    """Importance of every attention head (Michel, Levy & Neubig 2019): (L, H), non-negative.

    I_h = E_x |∂L(x)/∂ξ_h|, where ξ_h is a gate on head h's output (all ones, so the model is
    unchanged) and L(x) the loss of example x against its label. Each example has its own row
    of gates, so one backward pass per batch gives every example's own gradient and the
    absolute value is taken per example, as the formula says (the paper's code takes it per
    batch). With `normalize`, each layer's row is divided by its L2 norm, as in the paper.

    `labels`: class ids or label names (mapped through `model.config.label2id`); for a
    multi-label model, a collection of names (or a 0/1 vector) per text.
    """
    import torch

    from jiyi.data.collate import encode, pad_batch, sorted_batches

    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if not texts:
        raise JiyiError("head importance needs at least one labelled text.")
    multilabel = model.config.problem_type == "multi_label_classification"
    targets = _label_targets(model, labels, multilabel)  # (N,) long or (N, C) float
    n_layers = len(attention_output_projections(model))
    n_heads = model.config.num_attention_heads
    device = next(model.parameters()).device
    enc = encode(tokenizer, list(texts), None, max_length)
    total = torch.zeros(n_layers, n_heads, dtype=torch.float64)
    with frozen(model):
        for batch in sorted_batches(enc.lengths, batch_size):
            inputs = {
                k: v.to(device)
                for k, v in pad_batch(enc, batch, tokenizer.pad_token_id or 0).items()
            }
            gates = torch.ones(len(batch), n_layers, n_heads, device=device, requires_grad=True)
            with head_gates(model, gates):
                logits = model(**inputs).logits.float()  # (B, C)
            y = targets[batch].to(device)
            if multilabel:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, y, reduction="none"
                ).mean(dim=-1)  # (B,)
            else:
                loss = torch.nn.functional.cross_entropy(logits, y, reduction="none")  # (B,)
            (grad,) = torch.autograd.grad(loss.sum(), gates)  # (B, L, H): ∂L(x_b)/∂ξ
            total += grad.abs().sum(dim=0).double().cpu()
    importance = (total / len(texts)).numpy()  # (L, H)
    if normalize:
        norms = np.linalg.norm(importance, axis=-1, keepdims=True)  # (L, 1)
        importance = importance / (norms + 1e-20)
    return importance


def _label_targets(model: Any, labels: Sequence[Any], multilabel: bool) -> torch.Tensor:
    import torch

    label2id = {str(k): int(v) for k, v in (model.config.label2id or {}).items()}
    n_classes = model.config.num_labels

    def class_id(value: Any) -> int:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if not 0 <= int(value) < n_classes:
                raise JiyiError(f"head importance: class id {value} outside 0..{n_classes - 1}.")
            return int(value)
        if str(value) not in label2id:
            raise JiyiError(
                f"head importance: label {value!r} is not one the model knows "
                f"({', '.join(label2id)})."
            )
        return label2id[str(value)]

    if not multilabel:
        return torch.tensor([class_id(v) for v in labels], dtype=torch.long)
    rows = torch.zeros(len(labels), n_classes)
    for i, value in enumerate(labels):
        if isinstance(value, str):
            value = (value,)
        values = list(value)
        if len(values) == n_classes and all(v in (0, 1, 0.0, 1.0) for v in values):
            rows[i] = torch.tensor([float(v) for v in values])  # already a 0/1 vector
        else:
            for v in values:
                rows[i, class_id(v)] = 1.0
    return rows
