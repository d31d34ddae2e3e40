"""ONNX export, graph optimisation and int8 quantization of a fine-tuned classifier, and an ONNX
Runtime stand-in for the torch model in jiyi's predict path.

    info = export_onnx(model, tokenizer, out / "model.onnx")          # fp32, optimised, checked
    quantize_onnx(out / "model.onnx", out / "model.int8.onnx")        # int8 weights (dynamic)
    clf = OnnxSequenceClassifier(out, "model.onnx", threads=4)       # no torch model in memory
    rows, probs = forward_probs(clf, enc, pad_id=0, batch_size=64, multilabel=False)

The pieces:

* `export_onnx` traces the model with the TorchScript exporter (eager attention; see
  `_export_torchscript` for why not the dynamo one) into one self-contained `.onnx` file: inputs
  `input_ids`, `attention_mask` (and `token_type_ids` when the model's forward takes them), all
  int64 with dynamic axes {0: "batch", 1: "sequence"}, output `logits` (batch, num_labels). ONNX
  Runtime's transformer optimizer then fuses the graph (EmbedLayerNormalization, Attention,
  SkipLayerNormalization, BiasGelu); the fused graph replaces the plain one only if it still runs
  and still matches. Either way the function measures the largest absolute logit difference
  against PyTorch on probe batches of different sizes and lengths, right-padded like `pad_batch`.
* `quantize_onnx` runs ONNX Runtime's dynamic quantizer: int8 weights, per output channel, for
  the MatMul, fused Attention and embedding nodes (the pooler and classifier head stay fp32);
  activations are quantized to uint8 at run time.
* `OnnxSequenceClassifier` wraps an `InferenceSession` with just enough of the torch model's
  surface (`config`, `training`, `eval`, `parameters`, `__call__(**inputs).logits`) for
  `jiyi.predict.forward_probs` to use it unchanged.

Tolerance: an fp32 export must reproduce PyTorch's logits to within `LOGIT_ATOL` = 1e-4 (max
absolute difference). Measured on the fused graphs: 3e-8 on the tiny test BERT, 5e-8 on
MiniLM-L6 (probes up to 33 tokens); float32 summation order, nothing more, so 1e-4 leaves room
for longer inputs and larger models while any real export bug (a wrong mask, a mis-fused head
count, dropout left on) lands orders of magnitude above it. Int8 models are judged by argmax
agreement instead, since quantization moves logits by far more than 1e-4.

onnx and onnxruntime are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from jiyi.errors import JiyiError

LOGIT_ATOL = 1e-4  # max |logit_onnx - logit_torch| an fp32 export must stay within
AXES = {0: "batch", 1: "sequence"}
INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")
_PROBE_SHAPES = ((1, 9), (3, 17), (5, 33))  # (batch, longest length) of the probe batches
_PROBE_MAX_LEN = 48
_MODEL_TYPE = "bert"  # ORT's BERT-family fusions; RoBERTa, ELECTRA and XLM-R share the layout


def export_onnx(model: Any, tokenizer: Any, out_path: Path, *, opset: int = 17) -> dict[str, Any]:
    """Write `model` (an fp32 sequence classifier) to `out_path` as a single-file ONNX model,
    optimised by ONNX Runtime's transformer optimizer when that works, and check it against
    PyTorch.

    Returns {"opset", "exporter", "optimized", "fused_ops", "bytes", "max_abs_logit_diff",
    "tolerance", "within_tolerance", "inputs"}, plus "optimizer_note" when the unoptimised graph
    was kept. `max_abs_logit_diff` is measured here, on probe batches of 1, 3 and 5 rows and up
    to 33 tokens, right-padded, against the model's own forward (its usual attention kernel).
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if any(p.dtype != torch.float32 for p in model.parameters()):
        raise JiyiError("ONNX export needs an fp32 model; export before any bf16/int8 step.")
    names = input_names(model)
    device = next(model.parameters()).device
    probes = _probe_batches(model.config, tokenizer, names, device)
    was_training = model.training
    model.eval()
    tmp = out_path.with_name(out_path.name + ".export.tmp")
    tmp_opt = out_path.with_name(out_path.name + ".optimized.tmp")
    try:
        with torch.inference_mode():  # the reference: the model exactly as jiyi predicts with it
            reference = [model(**batch).logits.float().cpu().numpy() for batch in probes]
        exporter = _export(model, names, probes[1], tmp, opset)
        diff = plain_diff = _max_logit_diff(tmp, probes, reference)
        info: dict[str, Any] = {"optimized": False, "fused_ops": None}
        try:
            fused = _optimize(tmp, tmp_opt, model)
            opt_diff = _max_logit_diff(tmp_opt, probes, reference)
        except Exception as e:  # the optimizer is best effort: keep the plain graph
            info["optimizer_note"] = f"optimizer failed, unoptimised graph kept ({e!s:.300})"
        else:
            if np.isfinite(opt_diff) and opt_diff <= max(LOGIT_ATOL, plain_diff):
                os.replace(tmp_opt, tmp)
                diff = opt_diff
                info = {"optimized": True, "fused_ops": fused}
            else:
                info["optimizer_note"] = (
                    f"optimised graph differs from PyTorch by {opt_diff:.3g} (unoptimised "
                    f"{plain_diff:.3g}); unoptimised graph kept"
                )
        os.replace(tmp, out_path)
    finally:
        model.train(was_training)
        for path in (tmp, tmp_opt):
            path.unlink(missing_ok=True)
    return {
        "opset": model_opset(out_path),
        "exporter": exporter,
        **info,
        "bytes": out_path.stat().st_size,
        "max_abs_logit_diff": float(diff),
        "tolerance": LOGIT_ATOL,
        "within_tolerance": bool(diff <= LOGIT_ATOL),
        "inputs": list(names),
    }


def quantize_onnx(in_path: Path, out_path: Path) -> dict[str, Any]:
    """Dynamic int8 quantization of an (optimised) fp32 ONNX classifier with ONNX Runtime.

    Returns {"bytes", "fp32_bytes", "ratio", "weight_type", "activation_type", "per_channel",
    "reduce_range", "op_types", "quantized_nodes", "fp32_nodes"} (the head nodes kept fp32).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    in_path, out_path = Path(in_path), Path(out_path)
    if not in_path.is_file():
        raise JiyiError(f"{in_path}: no such ONNX model to quantize.")
    # Choices for BERT-like encoders on CPU:
    # * op types MatMul and Attention: the projections and feed-forward layers, nearly all the
    #   compute. MatMulConstBOnly (the dynamic default, set explicitly) keeps activation x
    #   activation products (Q.K^T and P.V in an unfused graph) in fp32.
    # * EmbedLayerNormalization / Gather: the embedding tables, int8 too. They cost no compute
    #   but are half of a small encoder's weights (MiniLM-L6: 30522 x 384 of 22.7M parameters),
    #   so leaving them fp32 shrinks it only 1.5x (measured) instead of about 4x; on the tiny
    #   test model they add 10% to the int8 probability error (2.4e-4 -> 2.6e-4, max over 200
    #   texts).
    # * the pooler and the classifier head stay fp32 (the quantizer would rewrite their Gemm
    #   as MatMul + Add and quantize it): a few hidden x hidden weights, the last layers before
    #   the logits; on the tiny test model this halves the int8 models' probability error.
    # * per_channel: one scale per output column. Columns of a fine-tuned projection differ in
    #   range by an order of magnitude; one scale per matrix would crush the small ones.
    # * reduce_range=False: full 8-bit weights. 7-bit weights only matter on pre-VNNI x86, where
    #   the u8 x s8 pair sums of VPMADDUBSW can saturate int16; ORT's own guidance is that this
    #   rarely hurts accuracy, and CPUs with AVX512-VNNI / AVX-VNNI (or ARM) never saturate.
    op_types = ["MatMul", "Attention", "EmbedLayerNormalization", "Gather"]
    options = {"per_channel": True, "reduce_range": False}
    source = onnx.load(str(in_path), load_external_data=False).graph
    head = [
        n.name
        for n in source.node
        if n.op_type in ("Gemm", "MatMul") and ("classifier" in n.name or "pooler" in n.name)
    ]
    exclude = head + [f"{name}_MatMul" for name in head]  # the name after the Gemm rewrite
    with _quiet_quantizer():
        quantize_dynamic(
            in_path,
            out_path,
            op_types_to_quantize=op_types,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            # onnx's shape inference cannot type the outputs of contrib ops (Attention,
            # SkipLayerNormalization): every float tensor in an fp32 export is FLOAT.
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
            **options,
        )
    graph = onnx.load(str(out_path), load_external_data=False).graph
    quantized = sum(
        n.op_type
        in ("MatMulInteger", "DynamicQuantizeMatMul", "QAttention", "QEmbedLayerNormalization")
        for n in graph.node
    )
    size, fp32 = out_path.stat().st_size, in_path.stat().st_size
    return {
        "bytes": size,
        "fp32_bytes": fp32,
        "ratio": round(size / fp32, 4),
        "weight_type": "QInt8",
        "activation_type": "QUInt8 (dynamic)",
        **options,
        "op_types": op_types,
        "quantized_nodes": int(quantized),
        "fp32_nodes": sorted(head),
    }


class OnnxSequenceClassifier:
    """An ONNX Runtime session that stands in for the torch model in `forward_probs`.

    `model(**pad_batch(...)).logits` returns a float32 torch tensor (B, num_labels); inputs the
    graph does not declare are ignored. `config` is the folder's transformers config (labels,
    problem type).
    """

    training = False

    def __init__(self, model_dir: Path, onnx_file: str = "model.onnx", threads: int | None = None):
        from transformers import AutoConfig

        model_dir = Path(model_dir)
        path = model_dir / onnx_file
        if not path.is_file():
            raise JiyiError(f"{path}: no such ONNX model; run `jiyi compress --method onnx`.")
        self.model_dir = model_dir
        self.path = path
        self.threads = int(threads or torch.get_num_threads())
        self.session = _session(path, self.threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.config = AutoConfig.from_pretrained(str(model_dir))

    def eval(self) -> OnnxSequenceClassifier:
        return self

    def train(self, mode: bool = True) -> OnnxSequenceClassifier:
        if mode:
            raise JiyiError(
                f"{self.path}: an ONNX model cannot be trained; fine-tune the torch model and "
                "export it again."
            )
        return self

    def parameters(self) -> Iterator[torch.Tensor]:
        """One empty CPU tensor, so that `next(model.parameters()).device` says cpu."""
        yield torch.empty(0)

    def __call__(self, **inputs: torch.Tensor) -> SimpleNamespace:
        feed = {}
        for name in self.input_names:
            value = inputs.get(name)
            if value is None and name == "token_type_ids" and "input_ids" in inputs:
                value = torch.zeros_like(inputs["input_ids"])  # what the model defaults to
            if value is None:
                raise JiyiError(f"{self.path}: the ONNX model needs input {name!r}.")
            feed[name] = value.detach().cpu().numpy().astype(np.int64, copy=False)
        (logits,) = self.session.run(["logits"], feed)
        return SimpleNamespace(logits=torch.from_numpy(logits))

    def __repr__(self) -> str:
        return f"OnnxSequenceClassifier({str(self.path)!r}, threads={self.threads})"


def input_names(model: Any) -> tuple[str, ...]:
    """The graph inputs: input_ids, attention_mask, and token_type_ids if forward takes it."""
    params = inspect.signature(model.forward).parameters
    return tuple(n for n in INPUT_ORDER if n != "token_type_ids" or n in params)


def model_opset(path: Path) -> int:
    """The default-domain (ai.onnx) opset an ONNX file imports."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx"))


class _Logits(torch.nn.Module):
    """Named tensor inputs in, the logits tensor out (no ModelOutput for the exporters)."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits


def _export(model: Any, names: tuple[str, ...], example: dict, path: Path, opset: int) -> str:
    wrapper = _Logits(model).eval()
    args = tuple(example[n] for n in names)
    try:
        with _eager_attention(model):
            _export_torchscript(wrapper, args, names, path, opset)
        return "torchscript"
    except Exception as e:  # the legacy exporter is deprecated; a torch without it -> dynamo
        logging.getLogger(__name__).info("TorchScript ONNX export failed (%s); trying dynamo", e)
        path.unlink(missing_ok=True)
    try:
        _export_dynamo(wrapper, args, names, path, opset)
    except Exception as e:
        raise JiyiError(f"ONNX export of {type(model).__name__} failed: {e!s:.500}") from e
    return "dynamo"


def _export_torchscript(
    wrapper: torch.nn.Module, args: tuple, names: tuple[str, ...], path: Path, opset: int
) -> None:
    """The TorchScript exporter over eager attention, because it is the one whose graph ONNX
    Runtime's transformer optimizer fuses fully. Measured on a BERT (torch 2.13, transformers
    5.24, onnxruntime 1.32): TorchScript + eager fuses EmbedLayerNormalization, Attention,
    SkipLayerNormalization and BiasGelu (the graph shrinks to ~20 nodes); TorchScript + SDPA
    and the dynamo exporter (either attention) both match PyTorch too, but the optimizer
    finds no Attention or embedding pattern in them, only SkipLayerNorm and BiasGelu. The
    trace is safe here: a classifier's forward has no data-dependent control flow once
    transformers sees it is being traced (it keeps the padding mask instead of skipping it).
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*aten::index operator of advanced indexing.*")
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            dynamo=False,
            input_names=list(names),
            output_names=["logits"],
            dynamic_axes={**dict.fromkeys(names, AXES), "logits": {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
        )


def _export_dynamo(
    wrapper: torch.nn.Module, args: tuple, names: tuple[str, ...], path: Path, opset: int
) -> None:
    import warnings

    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with warnings.catch_warnings():
        # every input shares the two Dims on purpose; torch.export's own deprecation noise
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        program = torch.onnx.export(
            wrapper,
            args,
            dynamo=True,
            input_names=list(names),
            output_names=["logits"],
            dynamic_shapes={n: {0: batch, 1: sequence} for n in names},
            opset_version=opset,
            verbose=False,
        )
    program.save(str(path), external_data=False)


@contextlib.contextmanager
def _eager_attention(model: Any) -> Iterator[None]:
    """Switch the model to eager attention (whose graph ORT fuses), then back."""
    before = getattr(model.config, "_attn_implementation", None)
    switch = before not in (None, "eager") and hasattr(model, "set_attn_implementation")
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(before)


def _attention_modules(model: Any) -> dict[str, tuple[int, int]]:
    """{module name: (heads, head size)} of the self-attention modules (BERT-like layout)."""
    return {
        name: (int(m.num_attention_heads), int(m.attention_head_size))
        for name, m in model.named_modules()
        if isinstance(getattr(m, "num_attention_heads", None), int)
        and isinstance(getattr(m, "attention_head_size", None), int)
    }


def _head_layout(model: Any) -> tuple[int, int]:
    """(num_heads, hidden_size) for the optimizer: the config's when every layer has them,
    (0, 0) = read each layer's off the graph when the layers differ (pruned heads)."""
    config = model.config
    heads = int(getattr(config, "num_attention_heads", 0) or 0)
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    counts = {h for h, _ in _attention_modules(model).values()}
    if not heads or not hidden or counts - {heads}:
        return 0, 0
    return heads, hidden


def _pin_head_counts(path: Path, model: Any) -> int:
    """Write each layer's head count into its graph so the optimizer can read it per layer.

    transformers 5 reshapes Q, K and V with `view(B, T, -1, head_size)`, which the TorchScript
    exporter writes as Concat(B, T, -1, head_size); with no head count in the graph, the
    optimizer's auto-detection (num_heads=0) gives up and leaves attention unfused. After head
    pruning no single num_heads fits every layer, so the -1 of each layer's Concat becomes that
    layer's count (the reshape computes the same shape). Nodes are matched to modules by the
    exporter's scope names ("/model/bert/encoder/layer.0/attention/self/Concat"); returns how
    many were pinned (0 if the names do not match, e.g. after a dynamo export).
    """
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    graph = proto.graph
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant" and n.attribute}
    initializers = {i.name: i for i in graph.initializer}

    def value(name: str) -> list[int] | None:
        if name in initializers:
            return numpy_helper.to_array(initializers[name]).reshape(-1).tolist()
        node = constants.get(name)
        if node is None or node.attribute[0].name != "value":
            return None
        return numpy_helper.to_array(node.attribute[0].t).reshape(-1).tolist()

    scopes = {f".model.{name}.": layout for name, layout in _attention_modules(model).items()}
    pinned = 0
    for node in graph.node:
        if node.op_type != "Concat" or len(node.input) != 4:
            continue
        dotted = node.name.replace("/", ".")
        layout = next((v for k, v in scopes.items() if dotted.startswith(k)), None)
        if layout is None or value(node.input[2]) != [-1] or value(node.input[3]) != [layout[1]]:
            continue
        name = f"jiyi_num_heads_{layout[0]}"
        if name not in initializers:
            initializers[name] = numpy_helper.from_array(np.array([layout[0]], np.int64), name)
            graph.initializer.append(initializers[name])
        node.input[2] = name
        pinned += 1
    if pinned:
        onnx.save(proto, str(path))
    return pinned


def _optimize(src: Path, dst: Path, model: Any) -> dict[str, int]:
    """ORT's transformer optimizer, Python fusions only (opt_level 0): the saved graph stays
    provider-neutral and the session applies ORT_ENABLE_ALL when it loads. Returns the counts
    of the fused operators it created (zeros dropped)."""
    from onnxruntime.transformers.optimizer import optimize_model

    num_heads, hidden_size = _head_layout(model)
    if num_heads == 0:
        shutil.copyfile(src, dst)
        if _pin_head_counts(dst, model):
            src = dst
    with _quiet_loggers(("fusion_", "onnx_model", "onnxruntime.transformers")):
        optimized = optimize_model(
            str(src),
            model_type=_MODEL_TYPE,
            num_heads=num_heads,
            hidden_size=hidden_size,
            opt_level=0,
            use_gpu=False,
        )
        stats = optimized.get_fused_operator_statistics()
        optimized.save_model_to_file(str(dst), use_external_data_format=False)
    return {op: int(n) for op, n in stats.items() if n}


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _probe_batches(
    config: Any, tokenizer: Any, names: tuple[str, ...], device: torch.device
) -> list[dict[str, torch.Tensor]]:
    """Right-padded batches of random token ids, as `pad_batch` builds them: [CLS] ... [SEP]
    then padding, rows of different lengths, a second segment in the largest batch."""
    generator = torch.Generator().manual_seed(0)
    vocab = int(getattr(config, "vocab_size", 0) or len(tokenizer))
    limits = [getattr(config, "max_position_embeddings", None), tokenizer.model_max_length]
    cap = min([_PROBE_MAX_LEN] + [int(x) - 2 for x in limits if x and int(x) < 10**6])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    two_segments = int(getattr(config, "type_vocab_size", 1) or 1) > 1
    batches = []
    for b, (size, longest) in enumerate(_PROBE_SHAPES):
        longest = max(2, min(longest, cap))
        lengths = [max(2, longest - 5 * row) for row in range(size)]
        if size > 1:
            lengths[-1] = 2  # nothing but [CLS] [SEP]: the most padding a row can have
        ids = torch.full((size, longest), pad, dtype=torch.int64)
        mask = torch.zeros((size, longest), dtype=torch.int64)
        types = torch.zeros((size, longest), dtype=torch.int64)
        for row, n in enumerate(lengths):
            ids[row, :n] = torch.randint(0, vocab, (n,), generator=generator)
            if first is not None:
                ids[row, 0] = first
            if last is not None:
                ids[row, n - 1] = last
            mask[row, :n] = 1
            if two_segments and b == len(_PROBE_SHAPES) - 1:
                types[row, n // 2 : n] = 1
        full = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        batches.append({n: full[n].to(device) for n in names})
    return batches


def _max_logit_diff(path: Path, probes: list[dict], reference: list[np.ndarray]) -> float:
    session = _session(path, torch.get_num_threads())
    declared = [i.name for i in session.get_inputs()]
    worst = 0.0
    for batch, expected in zip(probes, reference, strict=True):
        feed = {n: batch[n].cpu().numpy() for n in declared}
        (logits,) = session.run(["logits"], feed)
        if logits.shape != expected.shape:
            return float("inf")
        worst = max(worst, float(np.max(np.abs(logits.astype(np.float64) - expected))))
    return worst


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """quantize_dynamic logs a root-logger warning urging "pre-processing" (symbolic shape
    inference + ORT graph optimisation): our input is already optimised, so drop that line."""
    root = logging.getLogger()
    drop = _DropMessage("Please consider to run pre-processing")
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


@contextlib.contextmanager
def _quiet_loggers(prefixes: tuple[str, ...]) -> Iterator[None]:
    """Errors only from the loggers whose names start with `prefixes` (the ORT optimizer's
    modules log under top-level names such as "fusion_attention")."""
    names = [n for n in list(logging.root.manager.loggerDict) if n.startswith(prefixes)]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
