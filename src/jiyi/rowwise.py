"""Row-wise updates of a vocabulary table: a step pays for the rows its batch touched.

A batch of 32 Rotten Tomatoes texts touches about 600 of MiniLM's 30,522 word-embedding rows,
yet dense training pays for all of them every step: the backward pass fills a 30,522 x 384
gradient, clipping takes its norm and scales it, AdamW updates 11.7M numbers (half of MiniLM's
parameters; 96M of me5-small's 118M). `RowEmbedding` gathers the rows a batch uses into a small
leaf tensor and embeds from it, so the gradient is (rows touched, dim); `collect` merges the
rows of an accumulation group and hands them to clipping; `AdamW` updates those rows of the
table and their moments (torch's AdamW formula, its state keys, so checkpoints and resume work
either way) and leaves the others as they are.

That is "lazy" Adam (TensorFlow's LazyAdam, torch's SparseAdam): a row no batch touched keeps
its value instead of drifting on its decaying momentum and weight decay. Rows a step touches
get exactly dense AdamW's update:

    >>> table = RowEmbedding(10, 4)  # a vocabulary of 10 rows
    >>> opt = AdamW(table.parameters(), lr=0.1, tables=[table])
    >>> before = table.weight.detach().clone()
    >>> table(torch.tensor([[1, 2, 2]])).sum().backward()
    >>> opt.step()
    >>> changed = (table.weight != before).any(dim=1)
    >>> changed.nonzero().flatten().tolist(), tuple(opt.state[table.weight]["exp_avg"].shape)
    ([1, 2], (10, 4))

`jiyi.loop.build_optimizer` turns the input vocabulary table of the model it trains
(`get_input_embeddings()`) into a `RowEmbedding` when that is a trainable `torch.nn.Embedding`
of its own: not one tied to an output layer (masked-LM pretraining, prompts), which gets a dense
gradient anyway, and not in a multi-process run, whose gradient reduction sees parameters only.
Position and token-type tables stay dense (a batch touches most of their rows). A table that
also gets a dense gradient in a step (the --l1 penalty) takes its rows into that gradient and
the dense update, exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F


class RowEmbedding(torch.nn.Embedding):
    """`torch.nn.Embedding` whose training forward embeds from the rows its input uses (a leaf
    tensor kept in `pending` until `collect`); in eval mode, or without gradients, the same as
    `torch.nn.Embedding` (the same parameters and state dict)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # (row ids, rows) a batch
        self.rows: tuple[torch.Tensor, torch.Tensor] | None = None  # merged, for the update

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled() and self.weight.requires_grad):
            return super().forward(input)
        ids, inverse = torch.unique(input, return_inverse=True)  # (U,), input's shape
        rows = self.weight.detach().index_select(0, ids).requires_grad_()  # (U, D)
        self.pending.append((ids, rows))
        return F.embedding(inverse, rows, scale_grad_by_freq=self.scale_grad_by_freq)


def enable(model: torch.nn.Module) -> list[RowEmbedding]:
    """Turn the input vocabulary table of each transformers model in `model` into a
    `RowEmbedding` where it is a trainable `torch.nn.Embedding` no other layer shares; returns
    the tables that are `RowEmbedding`s now (what `AdamW(tables=...)` updates)."""
    uses: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        uses[id(p)] = uses.get(id(p), 0) + 1
    found: list[Any] = []
    for m in model.modules():
        table = m.get_input_embeddings() if hasattr(m, "get_input_embeddings") else None
        if isinstance(table, torch.nn.Embedding) and all(table is not t for t in found):
            found.append(table)
    tables = []
    for table in found:
        if isinstance(table, RowEmbedding):
            tables.append(table)
        elif (
            type(table) is torch.nn.Embedding
            and table.weight.requires_grad
            and not table.sparse
            and table.max_norm is None
            and uses.get(id(table.weight)) == 1
        ):
            table.__class__ = RowEmbedding
            table.pending, table.rows = [], None
            tables.append(table)
    return tables


def collect(tables: Iterable[RowEmbedding]) -> list[torch.Tensor]:
    """Merge each table's rows touched since its last update (an accumulation group's batches,
    a row counted once, its gradients summed; the padding row left out) into `table.rows` =
    (row ids, rows as a leaf whose .grad is their gradient). Returns those leaves, for gradient
    clipping beside the other parameters. A table that has a dense gradient too adds its rows
    to that gradient instead. Calling it again before the update changes nothing."""
    leaves = []
    for table in tables:
        if table.pending:
            table.rows = _merge(table)
            table.pending = []
        if table.rows is None:
            continue
        ids, leaf = table.rows
        if table.weight.grad is not None:  # dense too (the --l1 penalty): one exact update
            table.weight.grad.index_add_(0, ids, leaf.grad.to(table.weight.grad.dtype))
            table.rows = None
            continue
        leaves.append(leaf)
    return leaves


def _merge(table: RowEmbedding) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.cat([i for i, _ in table.pending])
    grads = torch.cat([torch.zeros_like(r) if r.grad is None else r.grad for _, r in table.pending])
    if len(table.pending) > 1:  # a row in several batches: one row, the summed gradient
        ids, inverse = torch.unique(ids, return_inverse=True)
        grads = grads.new_zeros(len(ids), grads.shape[1]).index_add_(0, inverse, grads)
    if table.padding_idx is not None:  # torch.nn.Embedding never trains the padding row
        keep = ids != table.padding_idx
        ids, grads = ids[keep], grads[keep]
    leaf = table.weight.detach().index_select(0, ids)  # (U, D): the rows, their gradient
    leaf.grad = grads
    return ids, leaf


class AdamW(torch.optim.AdamW):
    """torch's AdamW (fused where asked) for the parameters, and for each of `tables` the rows
    its batches touched (`collect`): the same update, on those rows and their moments only."""

    def __init__(self, params: Any, *, tables: Iterable[RowEmbedding] = (), **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        if self.defaults["amsgrad"] or self.defaults["maximize"]:
            raise ValueError("jiyi.rowwise.AdamW has no amsgrad or maximize.")
        self.tables = list(tables)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        collect(self.tables)  # before the dense step: a table with a dense gradient joins it
        loss = super().step(closure)
        groups = {id(p): g for g in self.param_groups for p in g["params"]}
        for table in self.tables:
            if table.rows is not None:
                self._update_rows(table.weight, *table.rows, groups[id(table.weight)])
                table.rows = None
        return loss

    def _update_rows(
        self, weight: torch.Tensor, ids: torch.Tensor, rows: torch.Tensor, group: dict[str, Any]
    ) -> None:
        state = self.state[weight]
        if not state:  # AdamW's own keys and types: a dense step can take over (and vice versa)
            state["step"] = torch.zeros((), dtype=torch.float32, device=weight.device)
            state["exp_avg"] = torch.zeros_like(weight, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(weight, memory_format=torch.preserve_format)
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        state["step"] += 1
        step = float(state["step"])
        grad = rows.grad.to(weight.dtype)
        m = state["exp_avg"].index_select(0, ids).lerp_(grad, 1 - beta1)  # (U, D)
        v = state["exp_avg_sq"].index_select(0, ids).mul_(beta2)
        v.addcmul_(grad, grad, value=1 - beta2)
        rows.mul_(1 - lr * group["weight_decay"])
        denom = (v.sqrt() / (1 - beta2**step) ** 0.5).add_(eps)
        rows.addcdiv_(m, denom, value=-lr / (1 - beta1**step))
        state["exp_avg"].index_copy_(0, ids, m)
        state["exp_avg_sq"].index_copy_(0, ids, v)
        weight.index_copy_(0, ids, rows)


__all__ = ["AdamW", "RowEmbedding", "collect", "enable"]
