"""End-to-end `jiyi train` on the tiny model: what it writes, determinism, resume, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.numpy import load_file

from conftest import TRAIN_FLAGS, make_texts, train_argv, write_csv
from jiyi.cli import main


def files_under(root: Path) -> set[str]:
    return {
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "logs" not in p.parts
    }


def test_train_writes_the_run_directory(trained_run: Path) -> None:
    files = files_under(trained_run)
    assert {
        "config.yaml",
        "metrics.jsonl",
        "model/config.json",
        "model/model.safetensors",
        "model/tokenizer.json",
        "model/tokenizer_config.json",
        "model/jiyi.json",
        "eval/metrics.json",
        "eval/report.html",
        "eval/errors.jsonl",
        "eval/confusion_matrix.png",
        "eval/roc_curve.png",
        "eval/reliability.png",
    } <= files
    assert not [f for f in files if f.endswith(".tmp") or "/." in f], "temporary files left behind"
    assert any(p.name.startswith("events.out.tfevents") for p in (trained_run / "logs").iterdir())
    # a finished run keeps model/ and no resumable state (tests/test_traps.py: what a kept
    # checkpoint holds, and --resume of a finished run)
    assert not (trained_run / "checkpoints").exists()

    config = json.loads((trained_run / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    assert config["label2id"] == {"neg": 0, "pos": 1}
    settings = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert (
        settings["lr"] == 3e-3
        and settings["truncation"] == "head+tail"
        and settings["epochs"] == 4.0
    )

    events = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "test" and kinds.count("eval") == 4
    assert events[0]["n_train"] == 240 and events[0]["labels"] == ["neg", "pos"]
    losses = [e["loss"] for e in events if e["event"] == "train"]
    assert losses[-1] < losses[0], "the loss should fall on this learnable task"

    metrics = json.loads((trained_run / "eval" / "metrics.json").read_text())
    for key in (
        "accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "f1_micro",
        "f1_weighted",
        "roc_auc",
        "per_class",
        "n",
    ):
        assert key in metrics
    assert metrics["n"] == 60 and metrics["accuracy"] >= 0.9


def test_model_folder_loads_without_jiyi(trained_run: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = str(trained_run / "model")
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    with torch.no_grad():
        logits = model(**tok(["the film was great"], return_tensors="pt")).logits
    import jiyi

    ours = jiyi.load(str(trained_run)).predict_proba(["the film was great"])
    t = json.loads((trained_run / "model" / "jiyi.json").read_text())["calibration"]["temperature"]
    np.testing.assert_allclose(torch.softmax(logits / t, -1).numpy(), ours, atol=1e-5)


def test_training_is_deterministic(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, trained_run: Path
) -> None:
    out = tmp_path / "again"
    assert main(train_argv(tiny_model_dir, tiny_data_dir, out)) == 0
    a = load_file(str(trained_run / "model" / "model.safetensors"))
    b = load_file(str(out / "model" / "model.safetensors"))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ma = json.loads((trained_run / "eval" / "metrics.json").read_text())
    mb = json.loads((out / "eval" / "metrics.json").read_text())
    assert ma == mb


def test_refuses_to_overwrite_a_run(
    trained_run: Path, tiny_model_dir: Path, tiny_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(train_argv(tiny_model_dir, tiny_data_dir, trained_run)) == 2
    assert "already exists" in capsys.readouterr().err


def test_early_stopping_and_best_model_restore(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "es"
    argv = train_argv(
        tiny_model_dir, tiny_data_dir, out, "--patience", "1", "--evals-per-epoch", "4"
    )
    argv[argv.index("--epochs") + 1] = "20"
    assert main(argv) == 0
    events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in events if e["event"] == "eval"]
    assert len(evals) < 20 * 4, "early stopping should have ended the run"
    assert not evals[-1]["improved"]
    best = max(e["accuracy"] for e in evals)
    meta = json.loads((out / "model" / "jiyi.json").read_text())
    assert meta["validation"]["accuracy"] == best
    assert meta["step"] == next(e["step"] for e in evals if e["accuracy"] == best)


def run_cli(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JIYI_NO_PROGRESS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "jiyi", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def wait_for_checkpoint(
    out: Path, proc: subprocess.Popen, min_step: int, timeout: float = 120
) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        ckpts = (
            sorted((out / "checkpoints").glob("step-*/state.json"))
            if (out / "checkpoints").is_dir()
            else []
        )
        if any(int(p.parent.name[5:]) >= min_step for p in ckpts):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_kill_and_resume_matches_an_uninterrupted_run(
    how: str, tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, trained_run: Path
) -> None:
    # the uninterrupted run is `trained_run` (same flags); this one dies mid-epoch 2 and resumes
    out = tmp_path / "killed"
    proc = run_cli(train_argv(tiny_model_dir, tiny_data_dir, out, "--save-steps", "3"))
    wait_for_checkpoint(out, proc, min_step=20)  # epoch 2 starts at step 16 (15 steps/epoch)
    proc.send_signal(getattr(signal, how))
    _, err = proc.communicate(timeout=60)
    if how == "SIGTERM":
        assert proc.returncode == 2 and "Stopped by SIGTERM" in err and "--resume" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not (out / "eval").exists(), "the killed run should not have finished"
    assert main(["train", "--output", str(out), "--resume"]) == 0
    ma = json.loads((trained_run / "eval" / "metrics.json").read_text())
    mb = json.loads((out / "eval" / "metrics.json").read_text())
    assert ma == mb
    a = load_file(str(trained_run / "model" / "model.safetensors"))
    b = load_file(str(out / "model" / "model.safetensors"))
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)


def test_multilabel_training(tiny_model_dir: Path, tmp_path: Path) -> None:
    import random

    rng = random.Random(0)
    rows = []
    for text, label in make_texts(300, seed=5):
        tags = [label] + (["long"] if len(text.split()) > 7 else [])
        rng.shuffle(tags)
        rows.append((text, json.dumps(tags)))
    write_csv(tmp_path / "train.csv", rows[:240])
    write_csv(tmp_path / "test.csv", rows[240:])
    out = tmp_path / "ml"
    argv = [
        "train",
        "--model",
        str(tiny_model_dir),
        "--train",
        str(tmp_path / "train.csv"),
        "--test",
        str(tmp_path / "test.csv"),
        "--output",
        str(out),
        "--task",
        "multilabel",
        "--metric",
        "f1_micro",
        *TRAIN_FLAGS,
    ]
    assert main(argv) == 0
    meta = json.loads((out / "model" / "jiyi.json").read_text())
    assert len(meta["thresholds"]) == 3
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert set(config["label2id"]) == {"long", "neg", "pos"}
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["f1_micro"] > 0.7
    import jiyi

    pred = jiyi.load(str(out)).predict(["the film was great and good"])[0]
    assert isinstance(pred["label"], list) and set(pred["probabilities"]) == {"long", "neg", "pos"}


def test_text_pairs(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = [(t, "the film", label) for t, label in make_texts(200, seed=6)]
    import csv

    with open(tmp_path / "pairs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["premise", "hypothesis", "gold"])
        w.writerows(rows)
    out = tmp_path / "pairs"
    argv = [
        "train",
        "--model",
        str(tiny_model_dir),
        "--train",
        str(tmp_path / "pairs.csv"),
        "--output",
        str(out),
        "--text-column",
        "premise",
        "--text-pair-column",
        "hypothesis",
        "--label-column",
        "gold",
        *TRAIN_FLAGS,
    ]
    assert main(argv) == 0
    meta = json.loads((out / "model" / "jiyi.json").read_text())
    assert meta["text_pair_column"] == "hypothesis"
    events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert events[0]["n_validation"] == 20 and events[0]["n_train"] == 180  # stratified 10% carved


def test_truncation_is_reported(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [(" ".join([t] * 6), label) for t, label in make_texts(120, seed=7)]
    write_csv(tmp_path / "long.csv", rows)
    out = tmp_path / "long"
    assert (
        main(
            [
                "train",
                "--model",
                str(tiny_model_dir),
                "--train",
                str(tmp_path / "long.csv"),
                "--output",
                str(out),
                "--epochs",
                "1",
                "--max-length",
                "16",
                "--truncation",
                "tail",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "were longer than --max-length 16 and were cut (tail)" in err
    start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert start["truncated"]["train"] == 108


def test_augmentation_adds_examples(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "aug"
    argv = train_argv(
        tiny_model_dir, tiny_data_dir, out, "--augment", "all", "--augment-copies", "2"
    )
    argv[argv.index("--epochs") + 1] = "1"
    assert main(argv) == 0
    start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert start["n_augmented"] == 480 and start["n_train"] == 720


def test_grad_accum_and_bf16_run(tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "acc"
    argv = train_argv(tiny_model_dir, tiny_data_dir, out, "--grad-accum", "2", "--bf16")
    argv[argv.index("--epochs") + 1] = "1"
    assert main(argv) == 0
    events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert events[0]["total_steps"] == 8  # 15 batches of 16, two per optimizer step, last one alone
    assert [e["step"] for e in events if e["event"] == "eval"] == [8]


def test_nan_loss_stops_with_a_message(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nan"
    argv = train_argv(tiny_model_dir, tiny_data_dir, out, "--max-grad-norm", "0")
    argv[argv.index("--lr") + 1] = "1e30"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "The training loss became" in err and "Lower --lr" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("order", "random_texts", "unpadded_steps"),
    [("auto", True, True), ("random", True, True), ("length", False, False)],
)
def test_batch_order(
    order: str,
    random_texts: bool,
    unpadded_steps: bool,
    tiny_model_dir: Path,
    tiny_data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A BERT-shaped encoder trains on its real tokens only, so by default its batches are
    random texts; `--batch-order length` gives the length-grouped batches and padded steps."""
    from jiyi import unpadded
    from jiyi.data import collate

    pools: list[int] = []  # the mega-batch each epoch's batches were sorted in (1: random)
    batches = collate.length_grouped_batches
    monkeypatch.setattr(
        collate, "length_grouped_batches", lambda *a: pools.append(a[4]) or batches(*a)
    )
    calls: list[bool] = []
    real = unpadded.run_unpadded
    monkeypatch.setattr(
        unpadded, "run_unpadded", lambda *a: calls.append(torch.is_grad_enabled()) or real(*a)
    )
    argv = train_argv(tiny_model_dir, tiny_data_dir, tmp_path / "run", "--batch-order", order)
    argv[argv.index("--epochs") + 1] = "1"
    assert main(argv) == 0
    assert pools and all((pool == 1) == random_texts for pool in pools)
    assert (True in calls) == unpadded_steps  # training steps on the unpadded path
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text(encoding="utf-8"))
    assert config["batch_order"] == order
