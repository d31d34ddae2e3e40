"""`--precision auto|fp32|bf16`: what auto chooses and says, the `--bf16` alias (flag and the YAML
key of older runs), and a run's config.yaml naming the precision it ran with."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import jiyi.precision as precision
from conftest import train_argv
from jiyi.cli import main
from jiyi.config import TrainConfig, add_dataclass_flags, build_config, load_yaml_config
from jiyi.errors import JiyiError


@pytest.mark.parametrize(
    ("native", "requested", "chosen", "said"),
    [
        (True, "auto", "bf16", "computes bfloat16 natively"),
        (False, "auto", "fp32", "has no native bfloat16"),
        (False, "bf16", "bf16", "emulated"),
        (True, "bf16", "bf16", "--precision bf16"),
        (True, "fp32", "fp32", "--precision fp32"),
    ],
)
def test_resolve_precision(
    monkeypatch: pytest.MonkeyPatch, native: bool, requested: str, chosen: str, said: str
) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda cpuinfo=None: native)
    got, why = precision.resolve_precision(requested, "cpu")
    assert got == chosen and said in why


def test_cpu_flags_are_read_as_words() -> None:
    assert not precision.cpu_has_bf16("flags : avx512_bf16x")  # a word, not a substring
    assert precision.cpu_has_bf16("flags : fpu amx_bf16 amx_tile")


def parse(argv: list[str]) -> TrainConfig:
    import argparse

    parser = argparse.ArgumentParser()
    add_dataclass_flags(parser, TrainConfig)
    return build_config(TrainConfig, vars(parser.parse_args(argv)))


def test_bf16_flag_is_an_alias() -> None:
    assert parse(["--bf16"]).precision == "bf16"
    assert parse(["--precision", "auto"]).precision == "auto"
    assert parse([]).precision == "auto"
    with pytest.raises(SystemExit):
        parse(["--precision", "fp16"])


def test_yaml_of_older_runs(tmp_path: Path) -> None:
    old = tmp_path / "config.yaml"
    old.write_text("bf16: true\nlr: 0.001\n", encoding="utf-8")
    assert load_yaml_config(str(old), TrainConfig) == {"precision": "bf16", "lr": 0.001}
    old.write_text("bf16: false\n", encoding="utf-8")
    assert load_yaml_config(str(old), TrainConfig) == {"precision": "fp32"}
    old.write_text("bf16: maybe\n", encoding="utf-8")
    with pytest.raises(JiyiError, match="key 'bf16' expects true or false"):
        load_yaml_config(str(old), TrainConfig)
    old.write_text("precision: fp16\n", encoding="utf-8")
    with pytest.raises(JiyiError, match="--precision must be one of auto, fp32, bf16"):
        TrainConfig(**load_yaml_config(str(old), TrainConfig)).validate_loop()


def test_auto_is_resolved_said_and_saved(
    tiny_model_dir: Path,
    tiny_data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda cpuinfo=None: False)
    out = tmp_path / "auto"
    argv = train_argv(tiny_model_dir, tiny_data_dir, out, "--precision", "auto", "--max-steps", "2")
    assert main(argv) == 0
    assert (
        "Precision fp32 (--precision auto: this CPU has no native bfloat16)"
        in capsys.readouterr().err
    )
    assert yaml.safe_load((out / "config.yaml").read_text())["precision"] == "fp32"
