"""`jiyi serve` on a `--method contrastive` run (jiyi.fewshot): predict answers as `jiyi.load`
does, and explain works on the encoder + logistic head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import make_texts, write_csv
from jiyi.cli import main as run_cli
from jiyi.serve.classification import ClassificationService
from jiyi.serve.settings import Settings


@pytest.fixture(scope="module")
def contrastive_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fewshot-serve")
    write_csv(root / "train.csv", make_texts(16, seed=2))
    write_csv(root / "validation.csv", make_texts(20, seed=3))
    out = root / "run"
    assert run_cli(["train", "--model", str(tiny_model_dir), "--train", str(root / "train.csv"),
                    "--validation", str(root / "validation.csv"), "--output", str(out),
                    "--method", "contrastive", "--pair-iterations", "2", "--max-length", "32",
                    "--lr", "1e-3", "--batch-size", "16"]) == 0  # fmt: skip
    return out


def test_serve_predicts_and_explains_a_contrastive_run(
    contrastive_run: Path, start_server: Any
) -> None:
    from jiyi.predict import load

    server = start_server(Settings(max_wait_ms=5), ClassificationService(load(contrastive_run)))
    texts = [t for t, _ in make_texts(6, seed=9)]
    got = httpx.post(f"{server.url}/v1/predict", json={"texts": texts}, timeout=30).json()
    expected = load(contrastive_run).predict(texts)
    assert [p["label"] for p in got["predictions"]] == [p["label"] for p in expected]
    for g, e in zip(got["predictions"], expected, strict=True):
        assert g["probabilities"] == pytest.approx(e["probabilities"], abs=1e-5)
    info = httpx.get(f"{server.url}/v1/info").json()
    assert info["task"] == "classification" and info["labels"] == ["neg", "pos"]
    r = httpx.post(f"{server.url}/v1/explain", json={"text": texts[0], "steps": 4}, timeout=60)
    assert r.status_code == 200, r.text
