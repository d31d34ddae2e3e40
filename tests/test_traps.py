"""The traps of a first hour, each through the CLI: exit 2, one line naming the flag or path, no
traceback, no folder left behind. --max-length past the model's positions, a run failing before
its first step, --resume with changed settings, an --output of the wrong kind; and what a
finished run leaves on disk (model/, no optimizer state, the usual file modes)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import make_texts, write_csv
from jiyi.cli import main

QUICK = ["--batch-size", "8", "--lr", "3e-3", "--seed", "0", "--threads", "1"]


def one_error_line(err: str, *needles: str) -> str:
    """The CLI's error: one line (rich may wrap nothing here), no traceback, naming `needles`."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("jiyi ")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("small-data")
    write_csv(root / "train.csv", make_texts(40, seed=2))
    write_csv(root / "validation.csv", make_texts(16, seed=3))
    return root


def train_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--model", str(model), "--train", str(data / "train.csv"),
            "--validation", str(data / "validation.csv"), "--output", str(out), *QUICK, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def lean_run(
    tiny_model_dir: Path, small_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """A finished run with default --max-length (128, more than the tiny model's 64 positions):
    (its folder, what it said on stderr)."""
    import io
    from contextlib import redirect_stderr

    out = tmp_path_factory.mktemp("lean") / "run"
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(train_args(tiny_model_dir, small_data, out, "--max-steps", "3")) == 0
    return out, err.getvalue()


# --- --max-length ---------------------------------------------------------------------------


def test_max_length_past_the_positions_is_refused_before_anything_is_written(
    tiny_model_dir: Path, small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs" / "long"
    assert main(train_args(tiny_model_dir, small_data, out, "--max-length", "1000")) == 2
    one_error_line(capsys.readouterr().err, "--max-length 1000", "at most 64 tokens")
    assert not (tmp_path / "runs").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(train_args(tiny_model_dir, small_data, empty, "--max-length", "65")) == 2
    one_error_line(capsys.readouterr().err, "--max-length 65", "--max-length 64 or less")
    assert list(empty.iterdir()) == []


def test_pretrain_from_a_model_checks_max_length_too(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"{text}\n" for text, _ in make_texts(50, seed=5)))
    argv = ["pretrain", "--from", str(tiny_model_dir), "--corpus", str(corpus)]
    assert main([*argv, "--max-length", "80", "--output", str(tmp_path / "p")]) == 2
    one_error_line(capsys.readouterr().err, "--max-length 80", f"--from {tiny_model_dir}")
    assert not (tmp_path / "p").exists()


def test_default_max_length_is_cut_to_the_positions(lean_run: tuple[Path, str]) -> None:
    run, err = lean_run
    assert "--max-length 128 is more than the 64 tokens" in err and "using 64" in err
    assert yaml.safe_load((run / "config.yaml").read_text())["max_length"] == 64
    assert json.loads((run / "model" / "jiyi.json").read_text())["max_length"] == 64


def test_position_limit_leaves_out_roberta_padding_offset(tmp_path: Path) -> None:
    from transformers import BertConfig, T5Config, XLMRobertaConfig

    from jiyi.models import position_limit

    XLMRobertaConfig(max_position_embeddings=514, pad_token_id=1).save_pretrained(tmp_path / "x")
    BertConfig(max_position_embeddings=512).save_pretrained(tmp_path / "b")
    T5Config().save_pretrained(tmp_path / "t")
    assert position_limit(str(tmp_path / "x")) == 512
    assert position_limit(str(tmp_path / "b")) == 512
    assert position_limit(str(tmp_path / "t")) is None  # relative positions: no fixed limit
    assert position_limit(str(tmp_path / "missing")) is None


# --- a run that fails before its first step --------------------------------------------------


def nan_penalty(monkeypatch: pytest.MonkeyPatch) -> None:
    """--l1's penalty made NaN: the loop refuses the first step ("The training loss became nan")."""
    import torch

    import jiyi.loop

    monkeypatch.setattr(jiyi.loop, "l1_penalty", lambda weights, lam: torch.tensor(float("nan")))


def test_failure_at_the_first_step_leaves_no_folder(
    tiny_model_dir: Path,
    small_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    nan_penalty(monkeypatch)
    out = tmp_path / "a" / "b" / "run"  # the parents are this run's too
    assert main(train_args(tiny_model_dir, small_data, out, "--l1", "0.1", "--max-steps", "2")) == 2
    one_error_line(capsys.readouterr().err, "loss became nan at step 0")
    assert not (tmp_path / "a").exists()


def test_failure_at_the_first_step_empties_only_what_it_made(
    tiny_model_dir: Path,
    small_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    nan_penalty(monkeypatch)
    out = tmp_path / "w" / "given"
    out.mkdir(parents=True)  # an empty folder made by the user stays, and stays empty
    argv = train_args(tiny_model_dir, small_data, out, "--l1", "0.1", "--trim-vocab")
    assert main(argv) == 2
    one_error_line(capsys.readouterr().err, "loss became nan")
    assert out.is_dir() and list(out.iterdir()) == []  # trimmed-base went with the rest
    assert [p.name for p in out.parent.iterdir()] == ["given"]


def test_discard_if_unstarted(tmp_path: Path) -> None:
    from jiyi.runs import discard_if_unstarted

    def failing(run: Path, started: bool) -> None:
        (run / "trimmed-base").mkdir(parents=True)
        if started:
            (run / "config.yaml").write_text("epochs: 1\n")
        raise RuntimeError("boom")

    for name, resume, started, kept in (
        ("new", False, False, False),
        ("started", False, True, True),
        ("resumed", True, False, True),
    ):
        run = tmp_path / name / "run"
        with pytest.raises(RuntimeError), discard_if_unstarted(run, resume):
            failing(run, started)
        assert (run / "trimmed-base").is_dir() is kept, name
        assert (tmp_path / name).exists() is kept, name
    other = tmp_path / "other"
    (other / "keep.txt").parent.mkdir()
    (other / "keep.txt").write_text("not ours")
    with pytest.raises(RuntimeError), discard_if_unstarted(other, False):
        raise RuntimeError("boom")
    assert (other / "keep.txt").read_text() == "not ours"


# --- --resume with changed settings ----------------------------------------------------------


@pytest.fixture
def interrupted_run(tiny_model_dir: Path, small_data: Path, tmp_path: Path) -> Path:
    """A run with checkpoints at steps 2 and 3 of 3, as if killed after step 2 (its final
    checkpoint removed)."""
    out = tmp_path / "run"
    argv = ["--max-steps", "3", "--save-steps", "1", "--max-length", "16"]
    argv += ["--keep-final-checkpoint"]
    assert main(train_args(tiny_model_dir, small_data, out, *argv)) == 0
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["step-000002", "step-000003"]  # the last --keep-checkpoints 2
    assert {p.name for p in (out / "checkpoints" / ckpts[0]).iterdir()} == {
        "model.safetensors",
        "optimizer.pt",
        "rng.safetensors",
        "state.json",
    }
    shutil.rmtree(out / "checkpoints" / "step-000003")
    return out


def test_resume_takes_corrected_safe_settings_and_refuses_the_others(
    interrupted_run: Path,
    tiny_model_dir: Path,
    small_data: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = interrupted_run
    capsys.readouterr()
    assert main([*train_args(tiny_model_dir, small_data, out, "--lr", "0.5"), "--resume"]) == 2
    one_error_line(capsys.readouterr().err, "--resume: --lr 0.5 differs", "--max-length")
    argv = [*train_args(tiny_model_dir, small_data, out, "--max-length", "24"), "--resume"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "--resume: continuing with --max-length 24 (was 16)" in err
    assert "Resuming from" in err and "step 2" in err
    settings = yaml.safe_load((out / "config.yaml").read_text())
    assert settings["max_length"] == 24 and settings["lr"] == 3e-3
    events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(e.get("step", 0) for e in events) == 3


def test_resume_continues_a_finished_run_given_more_steps(
    tiny_model_dir: Path, small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = train_args(tiny_model_dir, small_data, out, "--max-length", "16", "--max-steps", "2")
    assert main([*argv, "--keep-final-checkpoint"]) == 0
    assert main([*train_args(tiny_model_dir, small_data, out, "--max-steps", "4"), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "had finished at step 2; continuing to 4" in err
    events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "eval"] == [2, 4]
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["step-000002", "step-000004"]  # the last --keep-checkpoints, as asked
    assert main([*train_args(tiny_model_dir, small_data, out, "--max-steps", "4"), "--resume"]) == 0
    assert "re-running its final evaluation" in capsys.readouterr().err


def test_resume_of_a_lean_finished_run_says_what_to_do(
    lean_run: tuple[Path, str],
    tiny_model_dir: Path,
    small_data: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, _ = lean_run
    before = sorted(str(p) for p in run.rglob("*"))
    assert main([*train_args(tiny_model_dir, small_data, run), "--resume"]) == 2
    one_error_line(capsys.readouterr().err, "kept no resumable checkpoint", "--model")
    assert sorted(str(p) for p in run.rglob("*")) == before


# --- --output of the wrong kind --------------------------------------------------------------


def test_wrong_kind_of_output_path(
    lean_run: tuple[Path, str],
    tiny_model_dir: Path,
    small_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run, _ = lean_run
    a_file = tmp_path / "some.csv"
    a_file.write_text("text,label\n")
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    cases = [
        (train_args(tiny_model_dir, small_data, a_file), f"--output {a_file}: that is a file"),
        (train_args(tiny_model_dir, small_data, a_file / "run"), f"{a_file} is a file"),
        (["predict", str(run), "--input", str(small_data / "validation.csv"),
          "--output", str(a_dir)], f"--output {a_dir}: that is a folder"),
        (["evaluate", str(run), "--data", str(small_data / "validation.csv"),
          "--output", str(a_file)], f"--output {a_file}: that is a file"),
    ]  # fmt: skip
    for argv, needle in cases:
        assert main(argv) == 2, argv
        one_error_line(capsys.readouterr().err, needle)
    assert a_file.read_text() == "text,label\n" and list(a_dir.iterdir()) == []


FOLDER_VERBS = [  # {run}: a finished run, {csv}: labelled data, {out}: an existing file
    "data export rotten-tomatoes --output {out}",
    "probe {run} --data {csv} --output {out}",
    "drift {run} {run} --data {csv} --output {out}",
    "explain {run} --text good --output {out}",
    "tokenizer train --corpus {csv} --vocab-size 100 --output {out}",
    "compress {run} --method int8 --output {out}",
    "memory build {run} --data {csv} --output {out}",
    "curve --model {run} --train {csv} --output {out}",
    "bias {run} --data {csv} --output {out}",
]


@pytest.mark.parametrize("command", FOLDER_VERBS, ids=lambda c: " ".join(c.split()[:2]))
def test_every_verb_refuses_a_file_for_its_output_folder(
    command: str,
    lean_run: tuple[Path, str],
    small_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a_file = tmp_path / "some.csv"
    a_file.write_text("text,label\n")
    run, csv = str(lean_run[0]), str(small_data / "train.csv")
    assert main(command.format(run=run, csv=csv, out=a_file).split()) == 2
    one_error_line(capsys.readouterr().err, f"--output {a_file}: that is a file")
    assert a_file.read_text() == "text,label\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".jiyi-cache") == ["some.csv"]


def test_embed_refuses_a_folder_for_its_output_file(
    lean_run: tuple[Path, str], small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["embed", str(lean_run[0]), "--input", str(small_data / "train.csv")]
    assert main([*argv, "--output", str(tmp_path)]) == 2
    one_error_line(capsys.readouterr().err, f"--output {tmp_path}: that is a folder")


# --- what a finished run leaves --------------------------------------------------------------


def test_a_finished_run_is_lean_and_says_its_size(lean_run: tuple[Path, str]) -> None:
    run, err = lean_run
    assert {p.name for p in run.iterdir()} == {
        "config.yaml",
        "model",
        "metrics.jsonl",
        "logs",
        "README.md",
    }
    assert not list(run.rglob("optimizer.pt"))
    size = [line for line in err.splitlines() if line.startswith("Run folder")]
    assert len(size) == 1 and "model/" in size[0] and "no checkpoint" in size[0], err


def test_every_file_written_has_the_usual_mode(lean_run: tuple[Path, str]) -> None:
    run, _ = lean_run
    mask = os.umask(0)
    os.umask(mask)
    modes = {str(p.relative_to(run)): p.stat().st_mode & 0o777 for p in run.rglob("*")}
    assert modes["model/model.safetensors"] == 0o666 & ~mask
    for name, mode in modes.items():
        want = 0o777 & ~mask if (run / name).is_dir() else 0o666 & ~mask
        assert mode == want, (name, oct(mode))
