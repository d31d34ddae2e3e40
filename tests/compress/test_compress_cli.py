"""`jiyi compress` end to end on the tiny run: every method writes a folder that `jiyi predict`
and `jiyi evaluate` take with no extra flag, agrees with the original, records its making, and
the report measures each artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import make_texts
from jiyi.cli import main as run_cli
from jiyi.compress.pipeline import parse_methods
from jiyi.errors import JiyiError
from jiyi.precision import cpu_has_bf16


def predict_labels(folder: Path, texts_file: Path, out: Path) -> list[str]:
    assert run_cli(["predict", str(folder), "--input", str(texts_file), "--output", str(out)]) == 0
    return [json.loads(line)["label"] for line in out.read_text().splitlines()]


@pytest.fixture(scope="module")
def probe_texts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("probe") / "texts.txt"
    path.write_text("".join(t + "\n" for t, _ in make_texts(60, seed=4)))
    return path


METHODS = ["dynamic-int8", "onnx", "onnx-int8", "prune-heads", "distill"]
if cpu_has_bf16():
    METHODS.append("bf16")


@pytest.mark.parametrize("method", METHODS)
def test_each_method_is_a_drop_in(
    method: str, trained_run: Path, tiny_data_dir: Path, probe_texts: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    extra = {"prune-heads": ["--ratio", "0.25"], "distill": ["--layers", "1", "--epochs", "3",
             "--lr", "3e-3"]}.get(method, [])  # fmt: skip
    argv = ["compress", str(trained_run), "--method", method, "--output", str(out), *extra]
    assert run_cli(argv) == 0
    printed = capsys.readouterr().out
    assert "| original |" in printed and f"| {method} |" in printed
    meta = json.loads((out / "jiyi.json").read_text())
    chain = meta["compress"]["chain"]
    assert [s["method"] for s in chain] == [method]
    assert len(meta["compress"]["origin"]["weights_sha256"]) == 64
    assert meta["task"] == "classification"  # the source's metadata is kept
    original = predict_labels(trained_run, probe_texts, tmp_path / "a.jsonl")
    compressed = predict_labels(out, probe_texts, tmp_path / "b.jsonl")
    agree = sum(a == b for a, b in zip(original, compressed, strict=True)) / len(original)
    assert agree >= 0.95, (method, agree)
    report = json.loads((out / "compress.json").read_text())
    first, second = report["results"]
    assert first["name"] == "original" and second["name"] == method
    for r in report["results"]:
        assert r["size_mb"] > 0 and r["parameters"] > 0
        assert r["latency_ms_p50"] > 0 and r["throughput_texts_per_s"] > 0
        assert 0 <= r["accuracy"] <= 1 and r["latency_tokens"] <= 32
    if method in ("prune-heads", "distill"):
        assert second["parameters"] < first["parameters"]
        # new weights, new logits: the calibration is fitted again, on the run's validation file
        source = json.loads((trained_run / "model" / "jiyi.json").read_text())["calibration"]
        refit = meta["calibration"]
        assert refit["method"] == source["method"] and refit["n"] == source["n"]
        assert refit["log_loss_before"] != source["log_loss_before"]  # the new model's logits
    if method in ("dynamic-int8", "onnx-int8"):
        assert second["size_mb"] < first["size_mb"]
    evaluated = tmp_path / "eval"
    argv = ["evaluate", str(out), "--data", str(tiny_data_dir / "test.csv"), "--output",
            str(evaluated)]  # fmt: skip
    assert run_cli(argv) == 0
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert abs(metrics["accuracy"] - second["accuracy"]) < 1e-9  # the report measured the same
    capsys.readouterr()


def test_chain_and_report_only(
    trained_run: Path, probe_texts: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "chain"
    argv = ["compress", str(trained_run), "--method", "prune-heads,onnx-int8", "--ratio", "0.25",
            "--output", str(out)]  # fmt: skip
    assert run_cli(argv) == 0
    steps = sorted(p.name for p in (out / "steps").iterdir())
    assert steps == ["01-prune-heads"]
    meta = json.loads((out / "jiyi.json").read_text())
    assert [s["method"] for s in meta["compress"]["chain"]] == ["prune-heads", "onnx-int8"]
    assert meta["format"] == "onnx"
    labels = predict_labels(out, probe_texts, tmp_path / "c.jsonl")
    assert len(labels) == 60
    capsys.readouterr()
    assert run_cli(["compress", str(trained_run), "--output", str(out), "--report-only"]) == 0
    rows = json.loads((out / "compress.json").read_text())["results"]
    assert [r["name"] for r in rows] == ["original", "prune-heads", "onnx-int8"]


def test_bad_chains_and_flags(trained_run: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(JiyiError, match="must come last"):
        parse_methods("onnx,distill")
    with pytest.raises(JiyiError, match="must come last"):
        parse_methods("dynamic-int8,onnx")
    with pytest.raises(JiyiError, match="choose from"):
        parse_methods("zip")
    assert parse_methods("distill, prune-heads ,onnx-int8") == [
        "distill",
        "prune-heads",
        "onnx-int8",
    ]
    argv = ["compress", str(trained_run), "--method", "distill", "--layers", "9", "--output",
            str(tmp_path / "x")]  # fmt: skip
    assert run_cli(argv) == 2
    assert "--layers 9" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing half-written
