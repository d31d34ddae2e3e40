"""`jiyi train --pooling mean` (jiyi.pooled): a linear head on the mean-pooled last layer, trained
end to end; the run folder, what predict computes from its files, the verbs that take it, the
flags that do not fit it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import pooled_head_probs, train_argv
from jiyi.cli import main
from jiyi.config import TrainConfig
from jiyi.errors import JiyiError


@pytest.fixture(scope="module")
def mean_run(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("pooling") / "run"
    assert main(train_argv(tiny_model_dir, tiny_data_dir, out, "--pooling", "mean")) == 0
    return out


def test_the_run_holds_the_encoder_and_a_linear_head(mean_run: Path) -> None:
    model = mean_run / "model"
    assert {"config.json", "model.safetensors", "head.safetensors", "jiyi.json"} <= {
        p.name for p in model.iterdir()
    }
    meta = json.loads((model / "jiyi.json").read_text())
    assert meta["head"] == {"type": "mean-pool-linear", "file": "head.safetensors",
                            "pooling": "mean", "normalize": False}  # fmt: skip
    assert meta.get("method", "finetune") == "finetune"
    config = json.loads((model / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    from safetensors.numpy import load_file

    keys = load_file(str(model / "model.safetensors")).keys()
    assert not any("pooler" in k for k in keys)  # the head reads the mean, not a pooler
    assert "pooling: mean" in (mean_run / "config.yaml").read_text()
    metrics = json.loads((mean_run / "eval" / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.6  # the tiny task is learnable; a head that never trained is 0.5


def test_predict_is_the_mean_of_the_encoder_then_the_head(mean_run: Path) -> None:
    """jiyi.load gives softmax((mean-pool(AutoModel(text)) @ W.T + b) / T), computed here from the
    folder's files without jiyi's model class (no normalisation: "normalize": false)."""
    import jiyi

    texts = ["a great and moving film", "dull boring plot", "the story"]
    got = jiyi.load(mean_run).predict_proba(texts)
    expected = pooled_head_probs(mean_run / "model", texts, normalize=False)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_evaluate_and_memory_take_the_run_and_compress_refuses_it(
    mean_run: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jiyi.memory.predict import is_classifier_run

    trained = json.loads((mean_run / "eval" / "metrics.json").read_text())
    assert main(["evaluate", str(mean_run), "--data", str(tiny_data_dir / "test.csv"),
                 "--output", str(tmp_path / "ev")]) == 0  # fmt: skip
    assert (
        json.loads((tmp_path / "ev" / "metrics.json").read_text())["accuracy"]
        == trained["accuracy"]
    )
    assert is_classifier_run(mean_run)
    assert main(["compress", str(mean_run), "--method", "dynamic-int8", "--output",
                 str(tmp_path / "int8")]) == 2  # fmt: skip
    assert "mean-pooled vectors (jiyi.pooled)" in capsys.readouterr().err
    assert not (tmp_path / "int8").exists()


def test_a_killed_run_resumes_with_its_head(
    mean_run: Path, tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    """Checkpoints hold the head beside the encoder: a run stopped by SIGTERM in epoch 2 and
    resumed ends with `mean_run`'s weights (the same flags, uninterrupted)."""
    import signal

    from safetensors.numpy import load_file

    from test_train import run_cli, wait_for_checkpoint

    out = tmp_path / "killed"
    proc = run_cli(train_argv(tiny_model_dir, tiny_data_dir, out, "--pooling", "mean",
                              "--save-steps", "3"))  # fmt: skip
    wait_for_checkpoint(out, proc, min_step=20)  # epoch 2 starts at step 16 (15 steps/epoch)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "Stopped by SIGTERM" in err
    assert main(["train", "--output", str(out), "--resume"]) == 0
    for name in ("head.safetensors", "model.safetensors"):
        a = load_file(str(mean_run / "model" / name))
        b = load_file(str(out / "model" / name))
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=f"{name}: {k}")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"pooling": "max"}, "--pooling must be one of cls, mean"),
        ({"pooling": "mean", "task": "ner"}, "--pooling applies to --task classification and multilabel, not ner"),
        ({"pooling": "mean", "lora_r": 8}, "--pooling mean does not combine with --lora-r"),
        ({"pooling": "mean", "method": "contrastive"}, "--pooling does not apply to --method contrastive"),
    ],
)  # fmt: skip
def test_flags_that_do_not_fit_are_refused_by_name(settings: dict, message: str) -> None:
    with pytest.raises(JiyiError, match=message.replace("(", r"\(")):
        TrainConfig(train="t.csv", output="o", **settings)
