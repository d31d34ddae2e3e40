"""`jiyi env --bench`: the machine's matmul peak, a training step and a prediction batch of a
model, their MFU, and what `--precision auto` chooses; bad flags named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import jiyi.machine as machine
from jiyi.cli import main
from jiyi.precision import resolve_precision


def test_bench_report_on_the_tiny_model(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(machine, "MATMUL_SIZE", 256)
    assert main(["env", "--bench", "--model", str(tiny_model_dir), "--batch-size", "4",
                 "--max-length", "16", "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["precision_auto"] == resolve_precision("auto", "cpu")[0]
    assert set(report["precisions"]) in ({"fp32"}, {"fp32", "bf16"})
    for timing in report["precisions"].values():
        assert timing["train_step_s"] > 0 and timing["predict_batch_s"] > 0
        assert timing["matmul_peak_flops_per_s"] > 1e6
        assert timing["train_tokens_per_s"] == pytest.approx(64 / timing["train_step_s"])
        assert timing["train_mfu"] > 0 and timing["predict_mfu"] > 0
    assert ("bf16_train_speedup" in report) == ("bf16" in report["precisions"])


def test_bench_table(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = {
        "model": "m", "batch_size": 4, "max_length": 16, "torch_threads": 2, "cpu_cores": 2,
        "busy_at_start": 0.5, "precision_auto": "fp32",
        "precisions": {"fp32": {
            "matmul_peak_flops_per_s": 1e11, "train_step_s": 0.5, "train_tokens_per_s": 128.0,
            "train_mfu": 0.25, "predict_batch_s": 0.1, "predict_texts_per_s": 40.0,
            "predict_mfu": 0.3,
        }},
        "warning": "other processes used 50% of the CPU",
    }  # fmt: skip
    text = machine.render_bench(report)
    assert "100.0 GFLOP/s" in text and "25%" in text and "30%" in text
    assert (
        "--precision auto chooses fp32 here" in text and "Warning: other processes used 50%" in text
    )
    assert "50% busy with other work" in text
    bf16 = dict(report, precision_auto="bf16", bf16_train_speedup=1.6, bf16_predict_speedup=3.1)
    bf16["precisions"] = {**report["precisions"], "bf16": report["precisions"]["fp32"]}
    text = machine.render_bench(bf16)
    assert "training steps 1.60× and prediction 3.10× as fast" in text
    assert "jiyi compress RUN --method bf16" in text  # how prediction gets that speed


def test_model_flops_counts_dense_weights_and_attention() -> None:
    class Config:
        vocab_size, hidden_size, num_hidden_layers = 1000, 8, 2

    # 6 x (10,000 - 8,000 embedding parameters + attention 2 x 2 layers x 4 tokens x 8) x 16 tokens
    assert machine.model_flops(Config, 10_000, tokens=16, length=4) == 6.0 * (2000 + 128) * 16


@pytest.mark.parametrize("flag", ["--batch-size", "--max-length"])
def test_bad_sizes_are_named(
    tiny_model_dir: Path, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["env", "--bench", "--model", str(tiny_model_dir), flag, "0"]) == 2
    assert f"{flag} must be at least 1" in capsys.readouterr().err


def test_max_length_past_the_model_is_named(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["env", "--bench", "--model", str(tiny_model_dir), "--max-length", "100000"]) == 2
    assert "--max-length 100000" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("peaks", "warned"), [((4e10, 6e10), True), ((6e10, 5.8e10), False), ((2e10, 2.1e10), True)]
)
def test_the_peak_is_the_higher_of_two_windows(
    monkeypatch: pytest.MonkeyPatch, peaks: tuple[float, float], warned: bool
) -> None:
    samples = iter(peaks)
    timing = {"train_flops_per_s": 3e10, "predict_flops_per_s": 3.6e10}
    monkeypatch.setattr(machine, "busy_share", lambda: 0.0)
    monkeypatch.setattr(machine, "device_has_bf16", lambda device: False)
    monkeypatch.setattr(machine, "matmul_peak", lambda precision: next(samples))
    monkeypatch.setattr(machine, "model_timings", lambda *args: dict(timing))
    monkeypatch.setattr(machine, "resolve_precision", lambda *args: ("fp32", ""))
    monkeypatch.setattr("jiyi.models.resolve_model", lambda model: model)
    monkeypatch.setattr("jiyi.models.position_limit", lambda path: None)
    report = machine.machine_bench("m", 4, 16)
    fp32 = report["precisions"]["fp32"]
    assert fp32["matmul_peak_samples"] == list(peaks)
    assert fp32["matmul_peak_flops_per_s"] == max(peaks)
    assert fp32["train_mfu"] == pytest.approx(3e10 / max(peaks))
    # a peak that moved by more than 15%, or an MFU above 100% (2.1e10 < 3.6e10), is said
    assert ("peak moved between" in report.get("warning", "")) == warned
    assert ("the model ran at 171% of the higher" in report.get("warning", "")) == (peaks[1] < 3e10)
