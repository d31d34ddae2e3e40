"""Model resolution and offline behaviour: with HF_HUB_OFFLINE=1 nothing touches the network."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from conftest import copy_tree
from jiyi.cli import main
from jiyi.errors import JiyiError
from jiyi.models import load_for_classification, resolve_model


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"network call attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_offline_training_makes_no_network_call(
    no_network: None, tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    rc = main(
        [
            "train",
            "--model",
            str(tiny_model_dir),
            "--train",
            str(tiny_data_dir / "train.csv"),
            "--output",
            str(tmp_path / "run"),
            "--epochs",
            "1",
            "--max-length",
            "32",
        ]
    )
    assert rc == 0


def test_offline_hub_id_is_a_clear_error(no_network: None) -> None:
    with pytest.raises(JiyiError, match="HF_HUB_OFFLINE"):
        resolve_model("bert-base-uncased")


def test_minilm_alias_resolves_offline(no_network: None) -> None:
    path = Path(resolve_model("minilm"))
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def test_run_directory_resolves_to_its_model(trained_run: Path) -> None:
    assert resolve_model(str(trained_run)) == str(trained_run / "model")


def test_missing_folder_and_pickled_weights_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(JiyiError, match="no such folder"):
        resolve_model("./does/not/exist")
    pickled = copy_tree(tiny_model_dir, tmp_path / "pickled")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(JiyiError, match="safetensors"):
        load_for_classification(str(pickled), ["a", "b"])


def test_head_of_another_shape_is_reinitialised(trained_run: Path) -> None:
    model, _ = load_for_classification(str(trained_run / "model"), ["x", "y", "z"])
    assert model.config.num_labels == 3 and model.config.id2label == {0: "x", 1: "y", 2: "z"}
    assert model.classifier.out_features == 3


def test_dropout_override(tiny_model_dir: Path) -> None:
    model, _ = load_for_classification(str(tiny_model_dir), ["a", "b"], dropout=0.3)
    assert (
        model.config.hidden_dropout_prob == 0.3 and model.config.attention_probs_dropout_prob == 0.3
    )
