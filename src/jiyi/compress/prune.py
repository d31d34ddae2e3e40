"""Physical attention-head pruning for BERT-like encoders (transformers 5 dropped `prune_heads`).

    importance = head_scores(model, tokenizer, val_texts, val_labels)   # (L, H)
    heads = choose_heads(importance, 0.3)          # {layer: [original head ids]}
    prune_heads(model, heads)                      # smaller q/k/v and output matrices, in place
    save_model(model, tokenizer, out)              # config.json carries "jiyi_pruned_heads"
    model = load_pruned(out)                       # rebuild, re-apply the layout, strict load

Pruning head h of a layer removes rows h*d..(h+1)*d of the query, key and value projections
(their out-features) and the same columns of `attention.output.dense` (its in-features); the
layer then computes exactly what the unpruned layer computes with head h's output gated to zero.
The attention forward of transformers 5 reshapes with `(-1, attention_head_size)`, so the head
count follows from the sliced weights; `num_attention_heads` and `all_head_size` are updated too
so that nothing reads a stale width. `config.num_attention_heads` keeps the original count and
`config.jiyi_pruned_heads` ({"layer": [heads]}, original numbering) records what was removed.

A pruned folder does not load with a plain `from_pretrained` (its matrices are smaller than the
config says); `load_pruned` is the way back in. torch is imported inside the functions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.errors import JiyiError

LAYOUT_KEY = "jiyi_pruned_heads"  # in config.json: {"layer": [pruned head ids]}, original numbering
_KEPT_ATTR = "jiyi_kept_heads"  # on each self-attention module: the original ids of its heads


def choose_heads(importance: np.ndarray, ratio: float) -> dict[int, list[int]]:
    """The `round(ratio * L * H)` globally least important heads, as {layer: sorted head ids}.

    Every layer keeps at least one head (a layer's last head is skipped and the next least
    important head elsewhere taken instead; with nothing left to take, fewer are pruned). Ties
    go to the lower (layer, head). Only layers that lose a head appear.

    >>> choose_heads(np.array([[0.1, 0.9], [0.2, 0.05]]), 0.5)
    {0: [0], 1: [1]}
    """
    scores = np.asarray(importance, dtype=np.float64)
    if scores.ndim != 2 or 0 in scores.shape:
        raise JiyiError(
            f"head importance must be a (layers, heads) array, got shape {scores.shape}."
        )
    if not np.all(np.isfinite(scores)):
        raise JiyiError("head importance has NaN or infinite entries; cannot rank the heads.")
    if not 0.0 <= float(ratio) < 1.0:
        raise JiyiError(f"--ratio {ratio}: the share of heads to prune must be in [0, 1).")
    n_layers, n_heads = scores.shape
    budget = round(float(ratio) * n_layers * n_heads)
    order = np.lexsort((np.arange(scores.size), scores.ravel()))  # by score, then flat index
    left = [n_heads] * n_layers
    chosen: dict[int, list[int]] = {}
    for flat in order:
        if budget <= 0:
            break
        layer, head = divmod(int(flat), n_heads)
        if left[layer] <= 1:
            continue
        left[layer] -= 1
        chosen.setdefault(layer, []).append(head)
        budget -= 1
    return {layer: sorted(chosen[layer]) for layer in sorted(chosen)}


def encoder_layers(model: Any) -> list[Any]:
    """The encoder's transformer layers (`model.base_model.encoder.layer`): BERT, RoBERTa,
    ELECTRA, XLM-R. Others raise a JiyiError naming the model class."""
    base = getattr(model, "base_model", model)
    encoder = getattr(base, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is None or not all(_is_prunable(layer) for layer in layers):
        raise JiyiError(
            f"{type(model).__name__}: head pruning and layer distillation support BERT-like "
            "encoders (base_model.encoder.layer[i].attention.self with query/key/value), "
            "e.g. BERT, RoBERTa, ELECTRA, MiniLM."
        )
    return list(layers)


def _is_prunable(layer: Any) -> bool:
    attention = getattr(layer, "attention", None)
    self_attn = getattr(attention, "self", None)
    output = getattr(attention, "output", None)
    return all(hasattr(self_attn, name) for name in ("query", "key", "value")) and hasattr(
        output, "dense"
    )


def kept_heads(model: Any) -> list[list[int]]:
    """The original ids of the heads each layer still has (all of them in an unpruned model)."""
    n_heads = int(model.config.num_attention_heads)
    return [
        list(getattr(layer.attention.self, _KEPT_ATTR, range(n_heads)))
        for layer in encoder_layers(model)
    ]


def prune_heads(model: Any, heads: dict[int, Sequence[int]]) -> None:
    """Remove `heads` ({layer: original head ids}) from `model` in place, physically.

    Head ids count in the unpruned model's numbering, so pruning twice composes; ids already
    gone are ignored. A layer must keep at least one head. Call it before building an optimizer
    (the sliced weights are new Parameters). `config.jiyi_pruned_heads` is updated, so
    `save_pretrained` writes the layout into config.json.
    """
    import torch

    layers = encoder_layers(model)
    n_heads = int(model.config.num_attention_heads)
    plan = _check_heads(heads, len(layers), n_heads)
    with torch.no_grad():
        for index, remove in plan.items():
            attn = layers[index].attention.self
            kept = list(getattr(attn, _KEPT_ATTR, range(n_heads)))
            stay = [pos for pos, head in enumerate(kept) if head not in remove]
            if not stay:
                raise JiyiError(
                    f"layer {index}: pruning heads {sorted(remove)} would leave no head; "
                    "keep at least one head per layer."
                )
            if len(stay) == len(kept):
                continue
            size = int(attn.attention_head_size)
            rows = torch.cat([torch.arange(p * size, (p + 1) * size) for p in stay])
            for name in ("query", "key", "value"):
                _slice_linear(getattr(attn, name), rows, dim=0)
            _slice_linear(layers[index].attention.output.dense, rows, dim=1)
            attn.num_attention_heads = len(stay)
            attn.all_head_size = len(stay) * size
            setattr(attn, _KEPT_ATTR, [kept[p] for p in stay])
    layout = {
        str(i): sorted(set(range(n_heads)) - set(kept))
        for i, kept in enumerate(kept_heads(model))
        if len(kept) < n_heads
    }
    setattr(model.config, LAYOUT_KEY, layout)


def _check_heads(heads: dict[int, Sequence[int]], n_layers: int, n_heads: int) -> dict[int, set]:
    plan: dict[int, set] = {}
    for layer, ids in heads.items():
        layer = int(layer)
        if not 0 <= layer < n_layers:
            raise JiyiError(f"pruning: layer {layer} outside 0..{n_layers - 1}.")
        ids = {int(h) for h in ids}
        bad = sorted(h for h in ids if not 0 <= h < n_heads)
        if bad:
            raise JiyiError(f"pruning: layer {layer} has no heads {bad} (0..{n_heads - 1}).")
        if len(ids) >= n_heads:
            raise JiyiError(f"pruning: layer {layer} would lose all its {n_heads} heads.")
        plan.setdefault(layer, set()).update(ids)
    return plan


def _slice_linear(linear: Any, index: Any, dim: int) -> None:
    """Keep the out-features (dim 0) or in-features (dim 1) `index` of an nn.Linear, in place."""
    import torch

    weight = linear.weight
    index = index.to(weight.device)
    linear.weight = torch.nn.Parameter(
        weight.index_select(dim, index).clone(), requires_grad=weight.requires_grad
    )
    if dim == 0:
        if linear.bias is not None:
            bias = linear.bias
            linear.bias = torch.nn.Parameter(
                bias.index_select(0, index).clone(), requires_grad=bias.requires_grad
            )
        linear.out_features = len(index)
    else:
        linear.in_features = len(index)


def pruned_layout(model_or_config: Any) -> dict[int, list[int]]:
    """The pruned heads a model (or its config) records: {layer: sorted original head ids}."""
    config = getattr(model_or_config, "config", model_or_config)
    if isinstance(config, dict):  # a parsed config.json
        raw = config.get(LAYOUT_KEY) or {}
    else:
        raw = getattr(config, LAYOUT_KEY, None) or {}
    return {int(layer): sorted(int(h) for h in ids) for layer, ids in raw.items() if ids}


def is_pruned(model_or_config: Any) -> bool:
    return bool(pruned_layout(model_or_config))


def apply_layout(model: Any, heads: dict[int, Sequence[int]]) -> None:
    """Shape a freshly built, unpruned model (e.g. from its config) like a pruned one, so the
    pruned state dict loads into it with strict=True. Its weights are whatever they were."""
    n_heads = int(model.config.num_attention_heads)
    if any(len(kept) != n_heads for kept in kept_heads(model)):
        raise JiyiError("apply_layout needs an unpruned model; this one already lost heads.")
    prune_heads(model, heads)


def load_pruned(model_dir: str | Path) -> Any:
    """A saved (pruned or not) sequence-classification folder -> model in eval mode.

    Builds the model from config.json, re-applies `jiyi_pruned_heads`, then loads the
    safetensors weights strictly: any missing, unexpected or mis-shaped tensor is an error,
    never a silent re-initialisation.
    """
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from jiyi.hf import quiet_transformers

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise JiyiError(f"{model_dir}: no config.json; expected a model folder.")
    state = {}
    for path in _weight_files(model_dir):
        state.update(load_file(str(path)))
    with quiet_transformers():
        config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=False)
        model = AutoModelForSequenceClassification.from_config(config, trust_remote_code=False)
    apply_layout(model, pruned_layout(config))
    dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(dtypes) == 1:
        model.to(next(iter(dtypes)))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise JiyiError(f"{model_dir}: the weights do not match the (pruned) config: {e}") from None
    model.eval()
    return model


def _weight_files(model_dir: Path) -> list[Path]:
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values()
        return [model_dir / name for name in sorted(set(shards))]
    raise JiyiError(f"{model_dir}: no model.safetensors weights.")


def head_scores(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[Any],
    *,
    max_length: int = 128,
    batch_size: int = 16,
) -> np.ndarray:
    """Head importance (L, H) of an unpruned model on labelled texts (Michel et al. 2019: the
    sensitivity of the loss to gating each head), each layer's row L2-normalised."""
    from jiyi.inspect.attention import head_importance

    if is_pruned(model):
        raise JiyiError(
            "head importance needs the unpruned model (its heads are scored in the original "
            "numbering); score the model before pruning it."
        )
    return head_importance(
        model, tokenizer, texts, labels, batch_size=batch_size, max_length=max_length
    )
