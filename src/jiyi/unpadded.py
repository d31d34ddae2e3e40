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
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from jiyi.data.collate import sorted_batches
from jiyi.dropout import dropout

GROUP = 8  # texts per attention pass: sorted by length, each group padded to its own longest
# The share of a batch's positions that must be padding before the unpadded path pays for its
# gathers and its attention groups: the 1,275 Rotten Tomatoes test texts sorted by length in
# passes of 64 (~2% padding) ran 6% slower unpadded (351-379 against 390-415 texts/s); random
# batches of 32 (~48% padding) in one unpadded pass 17-32% faster than in padded passes of 8.
MIN_PADDING = 0.15
# The packed matrix's rows are rounded up to one of 16 sizes per power of two (`padded_rows`):
# oneDNN compiles a kernel for every matrix shape it meets, and a packed batch of random texts
# has a new token count at almost every step. Unrounded, the training steps' matrix products
# ran 1.45x slower than the same tokens in padded batches (52k Rotten Tomatoes tokens, bf16,
# 2 threads: 4.48 against 3.11 s); the extra rows (3% on average) cost far less.
ROW_SIZES_PER_OCTAVE = 16

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
    tokens = x.shape[0]
    extra = padded_rows(tokens) - tokens  # zero rows after the tokens; attention never reads them
    x = torch.cat([x, x.new_zeros(extra, hidden)]) if extra else x
    plan = AttentionPlan.of(keep.sum(1))
    slots = sum(plan.sizes)
    # each row's place in [the groups' attention outputs, then `extra` zero rows]
    order = torch.cat([plan.order, torch.arange(slots, slots + extra, device=x.device)])
    for layer in layers:
        sa = layer.attention.self
        heads, size = int(sa.num_attention_heads), int(sa.attention_head_size)
        scale = getattr(sa, "scaling", size**-0.5)
        drop = float(sa.dropout.p) if sa.training else 0.0
        # one gather for every group (index_select: its gradient is cheap on the CPU, where
        # advanced indexing's accumulating index_put is not), then a view per group
        picked = project_qkv(sa, x).index_select(0, plan.gather)
        outs = []
        for block, (n, width), mask in zip(
            picked.split(plan.sizes), plan.shapes, plan.masks, strict=True
        ):
            q, k, v = block.view(n, width, 3, heads, size).permute(2, 0, 3, 1, 4)
            a = attend(q, k, v, mask, drop, scale)  # (n, heads, width, size)
            outs.append(a.transpose(1, 2).reshape(n * width, heads * size))
        outs.append(picked.new_zeros(extra, heads * size))  # the extra rows' (zero) outputs
        attended = torch.cat(outs).index_select(0, order)  # back to the packed order
        out, ffn = layer.attention.output, layer.output
        a = out.LayerNorm(out.dropout(out.dense(attended)) + x)
        x = ffn.LayerNorm(ffn.dropout(ffn.dense(layer.intermediate(a))) + a)
    result = x.new_zeros(batch * length, x.shape[1])
    result.index_copy_(0, flat, x[:tokens])
    return result.view(batch, length, x.shape[1])


def padded_rows(tokens: int) -> int:
    """`tokens` rounded up to a multiple of 1/`ROW_SIZES_PER_OCTAVE` of its power of two (and of
    16): a few dozen matrix shapes over any mix of batches, at most 1/16 more rows above 256.

    >>> [padded_rows(n) for n in (1, 16, 17, 500, 513, 1000, 1025)]
    [16, 16, 32, 512, 544, 1024, 1088]
    """
    step = max(16, (1 << max(tokens - 1, 1).bit_length()) // (2 * ROW_SIZES_PER_OCTAVE))
    return -(-tokens // step) * step


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    drop: float,
    scale: float,
) -> torch.Tensor:
    """Scaled dot-product attention of (texts, heads, width, size) queries, keys and values,
    `mask` (texts, 1, 1, width) marking real keys. With dropout on the CPU (where torch takes
    its unfused math path then) it is written out, scores and softmax in float32, so the
    probabilities' dropout draws `jiyi.dropout`'s cheaper mask; otherwise torch's fused kernel."""
    if not drop or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, scale=scale)
    scores = torch.matmul(q, k.transpose(-2, -1)).float() * scale  # (texts, heads, width, width)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = dropout(scores.softmax(-1), drop)
    return torch.matmul(probs.to(v.dtype), v)


def project_qkv(sa: Any, x: torch.Tensor) -> torch.Tensor:
    """(tokens, 3 × hidden): the query, key and value projections of `x`, side by side; one
    matrix product where the three are plain linear layers (not LoRA-wrapped)."""
    linears = (sa.query, sa.key, sa.value)
    if all(type(m) is torch.nn.Linear and m.bias is not None for m in linears):
        weight = torch.cat([m.weight for m in linears])
        return F.linear(x, weight, torch.cat([m.bias for m in linears]))
    return torch.cat([m(x) for m in linears], dim=1)


@dataclass(frozen=True)
class AttentionPlan:
    """Texts sorted by length in groups of `GROUP` (`jiyi.data.collate.sorted_batches`), each
    padded to its own longest text, as rows of one matrix: `gather` (slots) picks each slot's
    packed token (padded slots take token 0, which the masks hide and whose outputs are
    dropped), `sizes`/`shapes` cut it into groups of (texts, width), `masks` mark each group's
    real keys (None: no padding), and `order` (tokens) gives each packed token's slot.

    >>> plan = AttentionPlan.of(torch.tensor([2, 1]))
    >>> plan.gather.tolist(), plan.shapes, plan.order.tolist()
    ([0, 1, 2, 0], [(2, 2)], [0, 1, 2])
    """

    gather: torch.Tensor
    shapes: list[tuple[int, int]]
    masks: list[torch.Tensor | None]
    order: torch.Tensor

    @property
    def sizes(self) -> list[int]:
        """Slots per group: texts × width."""
        return [n * width for n, width in self.shapes]

    @classmethod
    def of(cls, lengths: torch.Tensor) -> AttentionPlan:
        device = lengths.device
        starts = torch.cumsum(lengths, 0) - lengths
        gathers, slots, packed, shapes, masks = [], [], [], [], []
        offset = 0
        for batch in sorted_batches(lengths.cpu().numpy(), GROUP):
            members = torch.as_tensor(batch, device=device)
            own = lengths[members]
            positions = torch.arange(int(own.max()), device=device)[None, :]
            valid = positions < own[:, None]
            tokens = starts[members][:, None] + positions
            gathers.append(torch.where(valid, tokens, 0).reshape(-1))
            slots.append(valid.reshape(-1).nonzero().squeeze(1) + offset)
            packed.append(tokens[valid])
            shapes.append(tuple(valid.shape))
            masks.append(None if bool(valid.all()) else valid[:, None, None, :])
            offset += valid.numel()
        order = torch.empty(int(lengths.sum()), dtype=torch.long, device=device)
        order[torch.cat(packed)] = torch.cat(slots)
        return cls(torch.cat(gathers), shapes, masks, order)


__all__ = [
    "GROUP",
    "MIN_PADDING",
    "AttentionPlan",
    "attend",
    "bert_shaped",
    "enable",
    "padded_rows",
    "project_qkv",
    "run_unpadded",
    "token_mask",
    "unpadding",
]
