"""`jiyi probe` and `jiyi drift`: CKA's invariances, probes that find the task where training put
it, drift of a model against itself (none) and against its fine-tuned run (some)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from jiyi.cli import main as run_cli
from jiyi.inspect.drift import layer_of_parameter, linear_cka
from jiyi.inspect.probe import probe_layers

PNG = b"\x89PNG\r\n\x1a\n"


def test_linear_cka_identity_invariances_and_a_worked_value() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 16))
    Q, _ = np.linalg.qr(rng.normal(size=(16, 16)))  # a random orthogonal matrix
    assert linear_cka(X, X) == pytest.approx(1.0)
    assert linear_cka(X, 3.5 * X @ Q) == pytest.approx(1.0)  # rotation and isotropic scaling
    assert linear_cka(X, X + 7.0) == pytest.approx(1.0)  # centered: a shift does not count
    assert linear_cka(X, X @ Q[:, :8]) == pytest.approx(linear_cka(X @ Q, X @ Q[:, :8]))
    assert linear_cka(X, rng.normal(size=(200, 16))) < 0.2  # unrelated
    assert linear_cka(X, X * np.arange(1, 17)) < 1.0  # anisotropic scaling does count
    worked = linear_cka(np.array([[1, 0], [0, 1], [0, 0]]), np.array([[1], [0], [0]]))
    assert worked == pytest.approx(np.sqrt(0.625))  # (5/9) / (sqrt(10/9) * 2/3)
    assert np.isnan(linear_cka(X, np.ones((200, 3))))


def test_layer_of_parameter() -> None:
    assert layer_of_parameter("embeddings.word_embeddings.weight") == 0
    assert layer_of_parameter("encoder.layer.0.output.dense.weight") == 1
    assert layer_of_parameter("transformer.layer.5.ffn.lin1.weight") == 6  # DistilBERT
    assert layer_of_parameter("pooler.dense.weight") is None


def test_probe_layers_finds_the_separable_layer() -> None:
    rng = np.random.default_rng(0)
    labels = np.array(["a", "b"] * 50)
    noise = rng.normal(size=(100, 4))
    separable = noise + 4.0 * (labels == "a")[:, None]
    results = probe_layers(np.stack([noise, separable]), labels, folds=5)
    assert [r["layer"] for r in results] == [0, 1]
    assert results[1]["accuracy"] == 1.0 and results[1]["std"] == 0.0
    assert results[0]["accuracy"] < 0.75


def test_probe_cli_writes_json_and_png(
    tiny_model_dir: Path, trained_run: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "probe"
    rc = run_cli(
        ["probe", str(trained_run), "--data", str(tiny_data_dir / "train.csv"), "--output",
         str(out), "--compare", str(tiny_model_dir), "--max-examples", "200", "--folds", "4"]
    )  # fmt: skip
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["probe.json", "probe.png"]
    assert (out / "probe.png").read_bytes().startswith(PNG)
    result = json.loads((out / "probe.json").read_text())
    assert result["model"] == str(trained_run) and result["n_examples"] == 200
    assert result["compare"]["model"] == str(tiny_model_dir)
    for layers in (result["layers"], result["compare"]["layers"]):
        assert [r["layer"] for r in layers] == [0, 1, 2]  # embeddings + 2 layers
        assert all(0 <= r["accuracy"] <= 1 and r["std"] >= 0 for r in layers)
    assert result["layers"][-1]["accuracy"] > 0.8  # the fine-tuned top layer knows the task
    counts = result["labels"]
    assert sorted(counts) == ["neg", "pos"] and sum(counts.values()) == 200
    assert result["majority_baseline"] == max(counts.values()) / 200


def test_probe_errors(
    trained_run: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["probe", str(trained_run), "--output", str(tmp_path / "p")]
    data = str(tiny_data_dir / "test.csv")
    assert run_cli([*base, "--data", data, "--folds", "40"]) == 2
    assert "--folds 40" in capsys.readouterr().err
    assert run_cli([*base, "--data", data, "--label-column", "y"]) == 2
    assert "--label-column" in capsys.readouterr().err
    assert run_cli([*base, "--data", data, "--compare", str(tmp_path / "nope")]) == 2
    assert "--compare" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_drift_of_a_model_with_itself_is_none(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "drift"
    data = str(tiny_data_dir / "test.csv")
    assert run_cli(["drift", str(tiny_model_dir), str(tiny_model_dir), "--data", data,
                    "--output", str(out)]) == 0  # fmt: skip
    result = json.loads((out / "drift.json").read_text())
    assert [r["layer"] for r in result["layers"]] == [0, 1, 2]
    assert all(r["cka"] == pytest.approx(1.0) for r in result["layers"])
    assert all(r["weight_change"] == 0.0 for r in result["layers"])


def test_drift_after_fine_tuning(
    tiny_model_dir: Path, trained_run: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "drift"
    rc = run_cli(
        ["drift", str(tiny_model_dir), str(trained_run), "--data",
         str(tiny_data_dir / "test.csv"), "--output", str(out), "--max-examples", "50"]
    )  # fmt: skip
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["drift.json", "drift.png"]
    assert (out / "drift.png").read_bytes().startswith(PNG)
    result = json.loads((out / "drift.json").read_text())
    assert result["n_examples"] == 50 and result["finetuned_path"] == str(trained_run / "model")
    assert all(0 < r["weight_change"] < 10 for r in result["layers"])
    assert all(0 <= r["cka"] <= 1 + 1e-6 for r in result["layers"])
    assert min(r["cka"] for r in result["layers"]) < 0.999  # the representations moved


def test_drift_refuses_different_architectures(
    tiny_model_dir: Path,
    tiny_data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shallow = Path(shutil.copytree(tiny_model_dir, tmp_path / "shallow"))
    config = json.loads((shallow / "config.json").read_text())
    (shallow / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1}))
    rc = run_cli(
        ["drift", str(tiny_model_dir), str(shallow), "--data", str(tiny_data_dir / "test.csv"),
         "--output", str(tmp_path / "d")]
    )  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert str(tiny_model_dir) in err and str(shallow) in err and "architecture" in err
    assert not (tmp_path / "d").exists()
