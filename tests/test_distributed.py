"""`accelerate launch --multi_gpu --num_processes 2 -m jiyi train ...` on a CPU-only machine (torchrun,
gloo; accelerate picks MULTI_CPU when no GPU is there): data sharded, metrics
gathered, only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.distributed
def test_two_process_training(tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JIYI_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
        "-m", "jiyi", "train", "--model", str(tiny_model_dir),
        "--train", str(tiny_data_dir / "train.csv"), "--validation", str(tiny_data_dir / "validation.csv"),
        "--test", str(tiny_data_dir / "test.csv"), "--output", str(out),
        "--epochs", "4", "--batch-size", "8", "--lr", "3e-3", "--max-length", "32", "--seed", "0",
    ]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert events[0]["world_size"] == 2
    assert sum(e["event"] == "start" for e in events) == 1, "only rank 0 writes"
    # 240 examples / (8 per process * 2 processes) = 15 steps per epoch
    assert events[0]["total_steps"] == 60
    evals = [e for e in events if e["event"] == "eval"]
    assert len(evals) == 4 and all(e["n"] == 60 for e in evals), (
        "validation gathered from both ranks"
    )
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 60 and metrics["accuracy"] >= 0.9


@pytest.mark.distributed
def test_two_process_pretraining(tiny_model_dir: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "\n".join(f"the film was good and the music {i} was fine" for i in range(400)) + "\n",
        "utf-8",
    )
    out = tmp_path / "ddp-mlm"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JIYI_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29518",
        "-m", "jiyi", "pretrain", "--corpus", str(corpus), "--architecture", "tiny",
        "--tokenizer", str(tiny_model_dir), "--output", str(out), "--epochs", "2",
        "--batch-size", "8", "--max-length", "32", "--heldout-fraction", "0.1", "--log-every", "1",
    ]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    events = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "start" for e in events) == 1, "only rank 0 writes"
    start = events[0]
    assert start["world_size"] == 2
    train = [e for e in events if e["event"] == "train"]
    # each step takes one batch per process: two epochs of the stream in total_steps steps
    assert train[-1]["step"] == start["total_steps"] and train[-1]["epoch"] == 1
    evals = [e for e in events if e["event"] == "eval"]
    assert evals[-1]["perplexity"] < evals[0]["perplexity"]
    assert (out / "model" / "model.safetensors").is_file()
