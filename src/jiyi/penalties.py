"""What the weights pay: weight decay and the --l1 penalty apply to the weight matrices only
(never biases or LayerNorm weights), and how sparse those weights end up.

>>> decay, rest = decay_split(model)       # weight matrices, the rest
>>> loss = loss + l1_penalty(decay, 1e-5)  # or soft_threshold_(decay, lr * 1e-5) after a step
"""

from __future__ import annotations

from typing import Any

import torch


def decay_split(model: torch.nn.Module) -> tuple[list[Any], list[Any]]:
    """(weight matrices, the rest): weight decay and --l1 apply to the first list only, never to
    biases or LayerNorm weights. Tied weights appear once; frozen ones in neither list."""
    decay, no_decay = [], []
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:  # tied weights appear once
            continue
        seen.add(id(p))
        if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name or name.endswith(".bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    return decay, no_decay


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weight matrices only: not on biases or LayerNorm weights."""
    decay, no_decay = decay_split(model)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def l1_penalty(weights: list[Any], lam: float) -> torch.Tensor:
    """lam * sum(|w|) over `weights` (float32), e.g. 0.1 * (|1| + |-2|) = 0.3 for one tensor [1, -2]."""
    return lam * sum((w.abs().sum(dtype=torch.float32) for w in weights), torch.zeros(()))


@torch.no_grad()
def soft_threshold_(weights: list[Any], amount: float) -> None:
    """The proximal step of the L1 penalty, in place: w <- sign(w) * max(|w| - amount, 0), so
    every weight within `amount` of 0 becomes exactly 0 ([0.5, -0.05] by 0.1 -> [0.4, 0])."""
    for w in weights:
        w.copy_(w.sign() * (w.abs() - amount).clamp_min(0))


@torch.no_grad()
def weight_sparsity(model: torch.nn.Module, threshold: float = 1e-3) -> dict[str, Any]:
    """How sparse the weights that weight decay and --l1 apply to are: the fraction with
    |w| < threshold (`near_zero`) and exactly 0 (`exact_zero`), over `n_weights` numbers."""
    weights = decay_split(model)[0]
    n = sum(w.numel() for w in weights)
    near = sum(int((w.abs() < threshold).sum()) for w in weights)
    zero = sum(int((w == 0).sum()) for w in weights)
    return {
        "threshold": threshold,
        "near_zero": near / max(1, n),
        "exact_zero": zero / max(1, n),
        "n_weights": n,
    }
