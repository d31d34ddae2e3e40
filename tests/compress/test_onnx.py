"""ONNX export, ORT optimisation and int8 quantization of the tiny trained run; predictions
through `forward_probs` on ONNX Runtime. fp32 tolerance: max |logit diff| <= LOGIT_ATOL (1e-4)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from conftest import make_texts  # noqa: E402
from jiyi.compress import onnx as jonnx  # noqa: E402
from jiyi.compress.onnx import (  # noqa: E402
    LOGIT_ATOL,
    OnnxSequenceClassifier,
    export_onnx,
    quantize_onnx,
)
from jiyi.data.collate import encode, pad_batch, sorted_batches  # noqa: E402
from jiyi.errors import JiyiError  # noqa: E402
from jiyi.models import load_classifier  # noqa: E402
from jiyi.predict import forward_probs, read_meta  # noqa: E402


def onnx_folder(model_dir: Path, dst: Path) -> Path:
    """An artifact-like folder: the source's config.json, the ONNX file written beside it."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_dir / "config.json", dst / "config.json")
    return dst


@pytest.fixture(scope="module", autouse=True)
def _one_thread(trained_run: Path) -> Any:
    """One torch thread here (after the shared run is trained, so it is built as elsewhere):
    on a busy 2-core machine two OpenMP threads made the torch side ~100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def torch_model(trained_run: Path) -> tuple[Any, Any, dict]:
    model, tokenizer = load_classifier(trained_run / "model")
    return model, tokenizer, read_meta(trained_run / "model")


@pytest.fixture(scope="module")
def exported(
    trained_run: Path, torch_model: tuple, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    model, tokenizer, _ = torch_model
    folder = onnx_folder(trained_run / "model", tmp_path_factory.mktemp("onnx"))
    info = export_onnx(model, tokenizer, folder / "model.onnx")
    return folder, info


@pytest.fixture(scope="module")
def quantized(exported: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> tuple:
    folder, _ = exported
    out = onnx_folder(folder, tmp_path_factory.mktemp("onnx-int8"))
    return out, quantize_onnx(folder / "model.onnx", out / "model.onnx")


def encoded(tokenizer: Any, meta: dict, texts: list[str]) -> Any:
    return encode(tokenizer, texts, None, int(meta.get("max_length", 32)))


def test_export_matches_torch_logits_and_probabilities(torch_model, exported) -> None:
    model, tokenizer, meta = torch_model
    folder, info = exported
    assert info["exporter"] == "torchscript" and info["optimized"] is True
    # the full BERT fusion: embeddings, attention, residual + layer norm, bias + GELU
    assert {"EmbedLayerNormalization", "Attention", "SkipLayerNormalization"} <= set(
        info["fused_ops"]
    )
    assert info["max_abs_logit_diff"] <= LOGIT_ATOL and info["within_tolerance"]
    assert info["bytes"] == (folder / "model.onnx").stat().st_size
    assert model.training is False and model.config._attn_implementation != "eager"  # restored

    texts = [t for t, _ in make_texts(20, seed=7)]
    texts[3] = " ".join(["plot"] * 60)  # cut to max_length: the longest row of its batch
    enc = encoded(tokenizer, meta, texts)
    assert len(set(enc.lengths.tolist())) > 3  # rows differ in length: batches carry padding
    clf = OnnxSequenceClassifier(folder, threads=1)
    for batch_size in (1, 3, 16):
        rows_t, probs_t = forward_probs(
            model, enc, pad_id=0, batch_size=batch_size, multilabel=False
        )
        rows_o, probs_o = forward_probs(clf, enc, pad_id=0, batch_size=batch_size, multilabel=False)
        np.testing.assert_array_equal(rows_t, rows_o)
        np.testing.assert_allclose(probs_o, probs_t, rtol=0, atol=LOGIT_ATOL)
        for batch in sorted_batches(enc.lengths, batch_size):
            inputs = pad_batch(enc, batch, tokenizer.pad_token_id)
            with torch.inference_mode():
                expected = model(**inputs).logits.numpy()
            got = clf(**inputs).logits
            assert got.dtype == torch.float32 and got.shape == (len(batch), 2)
            np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=LOGIT_ATOL)


def test_graph_has_dynamic_axes_opset_and_embedded_weights(exported) -> None:
    folder, info = exported
    proto = onnx.load(str(folder / "model.onnx"))
    inputs = {i.name: i.type.tensor_type for i in proto.graph.input}
    assert set(inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    for tensor in inputs.values():
        assert tensor.elem_type == onnx.TensorProto.INT64
        assert [d.dim_param for d in tensor.shape.dim] == ["batch", "sequence"]
    (logits,) = proto.graph.output
    dims = logits.type.tensor_type.shape.dim
    assert logits.name == "logits" and dims[0].dim_param == "batch" and dims[1].dim_value == 2
    default = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    assert info["opset"] == default[0] == 17
    assert not any(onnx.external_data_helper.uses_external_data(t) for t in proto.graph.initializer)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.onnx"]


def test_int8_is_smaller_and_agrees_with_torch(torch_model, exported, quantized) -> None:
    model, tokenizer, meta = torch_model
    _, info = exported
    qfolder, qinfo = quantized
    assert qinfo["bytes"] == (qfolder / "model.onnx").stat().st_size < info["bytes"]
    assert qinfo["fp32_bytes"] == info["bytes"] and qinfo["ratio"] < 1
    assert qinfo["weight_type"] == "QInt8" and qinfo["quantized_nodes"] >= 4
    ops = {n.op_type for n in onnx.load(str(qfolder / "model.onnx")).graph.node}
    assert {"QAttention", "MatMulInteger", "QEmbedLayerNormalization"} <= ops

    enc = encoded(tokenizer, meta, [t for t, _ in make_texts(60, seed=4)])
    _, probs_t = forward_probs(model, enc, pad_id=0, batch_size=16, multilabel=False)
    clf = OnnxSequenceClassifier(qfolder, threads=1)
    _, probs_q = forward_probs(clf, enc, pad_id=0, batch_size=16, multilabel=False)
    agreement = float(np.mean(probs_q.argmax(1) == probs_t.argmax(1)))
    assert agreement >= 0.95, agreement


def test_onnx_classifier_cannot_train_and_uses_requested_threads(exported) -> None:
    folder, _ = exported
    clf = OnnxSequenceClassifier(folder, threads=2)
    assert clf.session.get_session_options().intra_op_num_threads == 2
    assert clf.session.get_session_options().inter_op_num_threads == 1
    assert clf.eval() is clf and clf.training is False and clf.train(False) is clf
    with pytest.raises(JiyiError, match="cannot be trained"):
        clf.train()
    assert next(clf.parameters()).device.type == "cpu"
    assert clf.config.num_labels == 2
    with pytest.raises(JiyiError, match="no such ONNX model"):
        OnnxSequenceClassifier(folder, "missing.onnx")


def test_pruned_heads_fuse_per_layer_and_match(trained_run: Path, tmp_path: Path) -> None:
    from jiyi.compress.prune import prune_heads

    model, tokenizer = load_classifier(trained_run / "model")
    prune_heads(model, {0: [1, 2]})  # layer 0 keeps 2 heads, layer 1 all 4
    info = export_onnx(model, tokenizer, tmp_path / "model.onnx")
    assert info["optimized"] and info["fused_ops"]["Attention"] == 2
    assert info["max_abs_logit_diff"] <= LOGIT_ATOL
    qinfo = quantize_onnx(tmp_path / "model.onnx", tmp_path / "model.int8.onnx")
    assert qinfo["bytes"] < info["bytes"]


def test_optimizer_failure_keeps_the_plain_graph(
    torch_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tokenizer, _ = torch_model

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("fusion exploded")

    monkeypatch.setattr(jonnx, "_optimize", broken)
    info = export_onnx(model, tokenizer, tmp_path / "model.onnx")
    assert info["optimized"] is False and info["fused_ops"] is None
    assert "fusion exploded" in info["optimizer_note"]
    assert info["max_abs_logit_diff"] <= LOGIT_ATOL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temp files left


def test_dynamo_exporter_is_the_fallback(
    torch_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A torch without the legacy exporter still exports (a few seconds: torch.export)."""
    model, tokenizer, _ = torch_model

    def gone(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("TorchScript exporter removed")

    monkeypatch.setattr(jonnx, "_export_torchscript", gone)
    info = export_onnx(model, tokenizer, tmp_path / "model.onnx")
    assert info["exporter"] == "dynamo" and info["opset"] == 17
    assert info["max_abs_logit_diff"] <= LOGIT_ATOL
    proto = onnx.load(str(tmp_path / "model.onnx"))
    for tensor in proto.graph.input:
        assert [d.dim_param for d in tensor.type.tensor_type.shape.dim] == ["batch", "sequence"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # weights embedded
