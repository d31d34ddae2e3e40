"""Forward passes without padding for BERT-shaped encoders, in inference and in training.

A batch of texts of unequal length is padded to its longest one, and every linear layer pays for
the padding: on random Rotten Tomatoes texts, 32 to a batch (what a server gathers from its
clients, or a training loop that does not group texts by length), the padded tokens are about
twice the real ones. Under `with unpadding():`, an encoder that `enable()` prepared runs its
linear layers, layer norms, activations and dropout on the batch's real tokens only (one matrix
of all of them), and its attention on the batch's texts sorted by length in groups of `GROUP`,
each group padded to its own longest text. The hidden states at real positions are those of the
encoder's own forward (to float rounding; in training, with dropout in the same places, and the
same gradients); padded positions hold zeros, which no head reads (the pooler reads [CLS], mean
pooling and token classification the attention mask).

It runs only where nothing else can see the difference: inside `unpadding()`, with right
padding, no cross-attention, cache, gradient checkpointing, `output_attentions` or
`output_hidden_states`; and only where it pays: when at least `MIN_PADDING` of the batch's
positions are padding. Anywhere else the encoder's own forward runs (explanations through
autograd, `jiyi embed`'s hidden states, a batch sorted by length).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
import torch.nn.functional as F

from jiyi.data.collate import sorted_batches

GROUP = 8  # texts per attention pass: sorted by length, each group padded to its own longest
# The share of a batch's positions that must be padding before the unpadded path pays for its
# gathers and its attention groups: the 1,275 Rotten Tomatoes test texts sorted by length in
# passes of 64 (~2% padding) ran 6% slower unpadded (351-379 against 390-415 texts/s); random
# batches of 32 (~48% padding) in one unpadded pass 17-32% faster than in padded passes of 8.
MIN_PADDING = 0.15

_ACTIVE: ContextVar[bool] = ContextVar("jiyi_unpadding", default=False)
_SUBCLASSES: dict[type, type] = {}


@contextmanager
def unpadding() -> Iterator[None]:
    """Let enabled encoders skip padding for the forward passes run inside (this thread only)."""
    token = _ACTIVE.set(True)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def enable(model: Any) -> bool:
    """Prepare the BERT-shaped encoder inside `model` for `unpadding()`; False if it has none.

    The encoder's class is swapped for a subclass whose forward takes the unpadded path when it
    may and calls the original otherwise, so parameters, state dict and copies are unchanged.
    """
    if not isinstance(model, torch.nn.Module):
        return False
    for module in model.modules():
        layers = getattr(module, "layer", None)
        if (
            isinstance(layers, torch.nn.ModuleList)
            and len(layers)
            and all(map(bert_shaped, layers))
        ):
            base = type(module)
            if base not in _SUBCLASSES and not getattr(base, "jiyi_unpadded", False):
                _SUBCLASSES[base] = type(
                    f"Unpadded{base.__name__}",
                    (base,),
                    {"forward": _forward, "jiyi_unpadded": True, "__module__": __name__},
                )
            module.__class__ = _SUBCLASSES.get(base, base)
            return True
    return False


def bert_shaped(layer: Any) -> bool:
    """Whether `layer` is a BERT encoder layer this module knows how to run (BERT, RoBERTa,
    XLM-R, multilingual-e5: self-attention, then a feed-forward block, post-layer-norm)."""
    try:
        sa = layer.attention.self
        parts = (
            sa.query,
            sa.key,
            sa.value,
            layer.attention.output.dense,
            layer.attention.output.LayerNorm,
            layer.intermediate,
            layer.output.dense,
            layer.output.LayerNorm,
            layer.attention.output.dropout,
            layer.output.dropout,
        )
        heads, size = int(sa.num_attention_heads), int(sa.attention_head_size)
        dropout = float(sa.dropout.p)
    except (AttributeError, TypeError):
        return False
    return (
        all(callable(p) for p in parts)
        and heads * size > 0
        and 0 <= dropout < 1
        and not hasattr(layer, "crossattention")
        and not getattr(layer, "chunk_size_feed_forward", 0)
        and getattr(sa, "position_embedding_type", "absolute") == "absolute"
        and not getattr(sa, "is_decoder", False)
    )


def token_mask(
    attention_mask: Any, batch: int, length: int, device: Any = "cpu"
) -> torch.Tensor | None:
    """The (batch, length) bool mask of real tokens behind the mask a BERT model hands its
    encoder (None: no padding; 2-d 0/1; 4-d bool or additive float), or None if it is not a
    right-padded padding mask this module can read."""
    if attention_mask is None:
        return torch.ones(batch, length, dtype=torch.bool, device=device)
    if not isinstance(attention_mask, torch.Tensor):
        return None
    if attention_mask.dim() == 4 and attention_mask.shape[1] == 1:
        row = attention_mask[:, 0, 0, :]  # the [CLS] query's row: a padding mask's rows are alike
        keep = row if row.dtype == torch.bool else row == 0
    elif attention_mask.dim() == 2:
        keep = attention_mask.bool()
    else:
        return None
    if tuple(keep.shape) != (batch, length):
        return None
    lengths = keep.sum(1)
    prefix = torch.arange(length, device=keep.device)[None, :] < lengths[:, None]
    return keep if bool(torch.equal(keep, prefix)) and bool((lengths > 0).all()) else None


def _forward(self: Any, hidden_states: torch.Tensor, attention_mask: Any = None, *args, **kwargs):
    plain = (
        not _ACTIVE.get()
        or (self.training and checkpointed(self))
        or any(a is not None for a in args)
        or kwargs.get("encoder_hidden_states") is not None
        or kwargs.get("cache") is not None
        or kwargs.get("output_attentions")
        or kwargs.get("output_hidden_states")
    )
    shape = hidden_states.shape
    keep = None if plain else token_mask(attention_mask, shape[0], shape[1], hidden_states.device)
    if keep is None or int(keep.sum()) > (1 - MIN_PADDING) * keep.numel():
        return super(type(self), self).forward(hidden_states, attention_mask, *args, **kwargs)
    from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions

    out = run_unpadded(self.layer, hidden_states, keep)
    return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=out)


def checkpointed(encoder: Any) -> bool:
    """Whether gradient checkpointing is on for `encoder` (its own flag or its layers')."""
    modules = [encoder, *encoder.layer]
    return any(bool(getattr(m, "gradient_checkpointing", False)) for m in modules)


def run_unpadded(layers: Any, hidden_states: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """BERT layers over the real tokens of `hidden_states` (batch, length, hidden) marked by
    `keep` (right padding); returns the same shape, zeros at the padded positions."""
    batch, length, hidden = hidden_states.shape
    flat = keep.reshape(-1).nonzero().squeeze(1)  # real positions, row-major
    x = hidden_states.reshape(batch * length, hidden).index_select(0, flat)  # (tokens, hidden)
    groups = attention_groups(keep.sum(1), len(flat))
    for layer in layers:
        sa = layer.attention.self
        heads, size = int(sa.num_attention_heads), int(sa.attention_head_size)
        scale = getattr(sa, "scaling", size**-0.5)
        qkv = torch.cat([sa.query(x), sa.key(x), sa.value(x)], dim=1)
        qkv = torch.cat([qkv, qkv.new_zeros(1, qkv.shape[1])])  # row `tokens`: the padding
        attended = qkv.new_empty(x.shape[0], heads * size)  # bfloat16 under autocast
        drop = float(sa.dropout.p) if sa.training else 0.0
        for gather, valid, rows, real in groups:
            n, width = gather.shape
            # index_select and index_copy_: their gradients are cheap on the CPU where those of
            # advanced indexing (an accumulating index_put) are not
            picked = qkv.index_select(0, gather.reshape(-1))
            q, k, v = picked.view(n, width, 3, heads, size).permute(2, 0, 3, 1, 4)
            mask = None if bool(valid.all()) else valid[:, None, None, :]
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, scale=scale)
            a = a.transpose(1, 2).reshape(n * width, heads * size)
            attended.index_copy_(0, rows, a.index_select(0, real))
        out, ffn = layer.attention.output, layer.output
        a = out.LayerNorm(out.dropout(out.dense(attended)) + x)
        x = ffn.LayerNorm(ffn.dropout(ffn.dense(layer.intermediate(a))) + a)
    result = x.new_zeros(batch * length, x.shape[1])
    result.index_copy_(0, flat, x)
    return result.view(batch, length, x.shape[1])


def attention_groups(
    lengths: torch.Tensor, tokens: int
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Texts sorted by length in groups of `GROUP` (`jiyi.data.collate.sorted_batches`): per
    group, (gather, valid, rows, real), where `gather` (texts, longest) indexes the packed token
    matrix (`tokens` = the padding row), `valid` marks real tokens, `rows` are their packed rows
    in `valid`'s order and `real` their positions in the flattened group.

    >>> [g.tolist() for g in attention_groups(torch.tensor([2, 1]), 3)[0]]
    [[[0, 1], [2, 3]], [[True, True], [True, False]], [0, 1, 2], [0, 1, 2]]
    """
    starts = torch.cumsum(lengths, 0) - lengths
    groups = []
    for batch in sorted_batches(lengths.cpu().numpy(), GROUP):
        members = torch.as_tensor(batch, device=lengths.device)
        own = lengths[members]
        positions = torch.arange(int(own.max()), device=lengths.device)[None, :]
        valid = positions < own[:, None]
        gather = torch.where(valid, starts[members][:, None] + positions, tokens)
        groups.append((gather, valid, gather[valid], valid.reshape(-1).nonzero().squeeze(1)))
    return groups


__all__ = [
    "GROUP",
    "MIN_PADDING",
    "attention_groups",
    "bert_shaped",
    "enable",
    "run_unpadded",
    "token_mask",
    "unpadding",
]
