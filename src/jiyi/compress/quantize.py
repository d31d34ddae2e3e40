"""Dynamic int8 quantization (torch.ao) and bfloat16 copies, saved as safetensors.

A dynamically quantized model keeps int8 weights for its Linear layers and quantizes
activations on the fly; its state dict holds packed parameters that safetensors cannot store.
`save_int8` writes each quantized Linear as plain tensors (`NAME.int8_weight` int8,
`NAME.int8_scale`, `NAME.int8_zero_point`, `NAME.bias`) beside the fp32 tensors of everything
else; `load_int8` builds the model from its config, quantizes the empty skeleton the same way
and puts the stored integers back, bit for bit.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from jiyi.errors import JiyiError

WEIGHTS = "model.safetensors"


def _quantize_dynamic(model: Any) -> Any:
    with warnings.catch_warnings():  # torch.ao is deprecated in favour of torchao; it still works
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.Linear}, dtype=torch.qint8, inplace=False
        )


def _quantized_linears(model: Any) -> dict[str, Any]:
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    return {name: m for name, m in model.named_modules() if isinstance(m, QLinear)}


def dynamic_int8(model: Any) -> Any:
    """A copy of `model` whose Linear layers hold int8 weights (per-tensor, symmetric ranges
    chosen by torch.ao's default observer) and quantize their inputs at run time."""
    if torch.backends.quantized.engine not in ("x86", "fbgemm", "onednn", "qnnpack"):
        raise JiyiError("dynamic-int8: this torch build has no quantized CPU engine.")
    quantized = _quantize_dynamic(model.float().eval())
    if not _quantized_linears(quantized):
        raise JiyiError("dynamic-int8: the model has no Linear layers to quantize.")
    return quantized


def save_int8(model: Any, out_dir: Path) -> int:
    """Write a dynamically quantized model's tensors to OUT_DIR/model.safetensors; returns bytes."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    linears = _quantized_linears(model)
    for name, module in linears.items():
        weight = module.weight()
        if weight.qscheme() != torch.per_tensor_affine:
            raise JiyiError(f"dynamic-int8: {name} is quantized per channel; not supported.")
        tensors[f"{name}.int8_weight"] = weight.int_repr().contiguous()
        tensors[f"{name}.int8_scale"] = torch.tensor([weight.q_scale()], dtype=torch.float64)
        tensors[f"{name}.int8_zero_point"] = torch.tensor([weight.q_zero_point()])
        bias = module.bias()
        if bias is not None:
            tensors[f"{name}.bias"] = bias.detach().contiguous()
    for name, param in model.state_dict().items():
        owner = name.rsplit(".", 1)[0]
        if isinstance(param, torch.Tensor) and owner not in linears and not param.is_quantized:
            tensors[name] = param.detach().contiguous()
    for name, tensor in list(tensors.items()):  # tied weights share storage: store copies
        tensors[name] = tensor.clone()
    path = out_dir / WEIGHTS
    save_file(tensors, str(path), metadata={"format": "pt", "jiyi": "dynamic-int8"})
    return path.stat().st_size


def load_int8(model_dir: Path) -> Any:
    """The model saved by `save_int8`, quantized and in eval mode."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from jiyi.hf import quiet_transformers

    config = AutoConfig.from_pretrained(str(model_dir))
    with quiet_transformers():
        skeleton = AutoModelForSequenceClassification.from_config(config)
    _apply_pruning_if_any(skeleton, model_dir)
    model = _quantize_dynamic(skeleton.eval())
    tensors = load_file(str(model_dir / WEIGHTS))
    linears = _quantized_linears(model)
    for name, module in linears.items():
        try:
            ints = tensors.pop(f"{name}.int8_weight")
            scale = float(tensors.pop(f"{name}.int8_scale"))
            zero = int(tensors.pop(f"{name}.int8_zero_point"))
        except KeyError:
            raise JiyiError(
                f"{model_dir}: {WEIGHTS} has no int8 weights for {name}; the folder is damaged "
                "or was not written by `jiyi compress --method dynamic-int8`."
            ) from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            weight = torch._make_per_tensor_quantized_tensor(ints, scale, zero)
        module.set_weight_bias(weight, tensors.pop(f"{name}.bias", None))
    expected = {
        k: v
        for k, v in model.state_dict().items()
        if isinstance(v, torch.Tensor) and not v.is_quantized and k.rsplit(".", 1)[0] not in linears
    }
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise JiyiError(
            f"{model_dir}: the int8 weights do not fit the config (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})."
        )
    with torch.no_grad():
        for name, tensor in tensors.items():
            expected[name].copy_(tensor)
    return model.eval()


def _apply_pruning_if_any(model: Any, model_dir: Path) -> None:
    layout = getattr(model.config, "jiyi_pruned_heads", None)
    if layout:
        from jiyi.compress.prune import apply_layout

        apply_layout(model, {int(k): list(v) for k, v in layout.items()})


def to_bf16(model: Any) -> Any:
    """A bfloat16 copy of `model` (weights and arithmetic)."""
    import copy

    return copy.deepcopy(model).to(torch.bfloat16).eval()
