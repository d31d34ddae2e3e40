"""`jiyi memory ...`, `jiyi ask` and `jiyi predict --memory` end to end on the tiny model: build,
tune, kNN-augmented and memory-only prediction, learning a new class by adding rows, forgetting
for good, and the errors a user can cause."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from conftest import build_faq_memory, make_texts, write_csv
from jiyi.cli import main as run_cli
from jiyi.memory.knn import Memory


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def memory_dir(trained_run: Path, tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A memory of the tiny train set, embedded by the fine-tuned run, tuned on validation."""
    out = tmp_path_factory.mktemp("mem") / "mem"
    code = run_cli(
        ["memory", "build", str(trained_run), "--data", str(tiny_data_dir / "train.csv"),
         "--validation", str(tiny_data_dir / "validation.csv"), "--output", str(out),
         "--max-length", "32"]
    )  # fmt: skip
    assert code == 0
    return out


def test_build_tunes_both_predictors(memory_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_cli(["memory", "stats", str(memory_dir)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["rows"] == 240 and stats["labels"] == {"neg": 120, "pos": 120}
    tuned = stats["tuned"]
    assert tuned["classifier"]["method"] in ("knn", "prototype", "logistic")
    assert tuned["classifier"]["evaluated_on"].startswith("validation (60 rows)")
    (knn,) = tuned["knn"].values()
    assert knn["n_validation"] == 60
    assert 0.0 <= knn["lambda"] <= 1.0 and knn["k"] >= 1
    assert knn["validation_score"] >= knn["model_alone_score"]  # λ = 0 is in the grid


def test_predict_with_memory_augmented_and_alone(
    trained_run: Path, memory_dir: Path, tiny_data_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "aug.jsonl"
    argv = ["predict", str(trained_run), "--memory", str(memory_dir), "--input",
            str(tiny_data_dir / "test.csv"), "--output", str(out), "--neighbours", "3"]  # fmt: skip
    assert run_cli(argv) == 0
    rows = jsonl(out.read_text())
    gold = [label for _, label in make_texts(60, seed=4)]
    assert len(rows) == 60
    assert sum(r["label"] == g for r, g in zip(rows, gold, strict=True)) / 60 > 0.8
    first = rows[0]
    assert set(first["probabilities"]) == {"neg", "pos"}
    assert abs(sum(first["probabilities"].values()) - 1) < 1e-4
    assert len(first["neighbours"]) == 3
    assert abs(sum(n["weight"] for n in first["neighbours"]) - 1) < 1e-4
    scores = [n["score"] for n in first["neighbours"]]
    assert scores == sorted(scores, reverse=True)

    alone = tmp_path / "alone.jsonl"
    argv = ["predict", "--memory", str(memory_dir), "--input", str(tiny_data_dir / "test.csv"),
            "--output", str(alone)]  # fmt: skip
    assert run_cli(argv) == 0
    rows = jsonl(alone.read_text())
    assert sum(r["label"] == g for r, g in zip(rows, gold, strict=True)) / 60 > 0.8
    capsys.readouterr()


def test_learns_a_new_class_without_retraining(
    trained_run: Path, memory_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    import shutil

    mem = tmp_path / "mem"
    shutil.copytree(memory_dir, mem)
    weights = (trained_run / "model" / "model.safetensors").read_bytes()
    new = [f"the zebra {w} zebra" for w in ("film", "plot", "cast", "music", "story", "scene")]
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(
        "".join(json.dumps({"text": t, "label": "zebra"}) + "\n" for t in new).encode())))  # fmt: skip
    assert run_cli(["memory", "add", str(mem)]) == 0
    probe = tmp_path / "probe.txt"
    probe.write_text("zebra film zebra\nzebra story zebra scene\n")
    out = tmp_path / "p.jsonl"
    argv = ["predict", "--memory", str(mem), "--input", str(probe), "--output", str(out),
            "--memory-method", "knn"]  # fmt: skip
    assert run_cli(argv) == 0
    assert [r["label"] for r in jsonl(out.read_text())] == ["zebra", "zebra"]
    argv = ["predict", str(trained_run), "--memory", str(mem), "--input", str(probe),
            "--output", str(out)]  # fmt: skip
    assert run_cli(argv) == 0
    rows = jsonl(out.read_text())
    assert all("zebra" in r["probabilities"] for r in rows)
    assert all(r["probabilities"]["zebra"] > 0 for r in rows)
    assert (trained_run / "model" / "model.safetensors").read_bytes() == weights
    capsys.readouterr()


def test_lambda_tuning_keeps_a_new_class_when_the_model_is_perfect(
    trained_run: Path, memory_dir: Path, tmp_path: Path, capsys
) -> None:
    """A model sure and right on every validation row ties λ = 0 for best there; the memory's
    rows of a label the model lacks must still pull λ up so that label can be predicted."""
    import shutil

    import numpy as np

    import jiyi
    from jiyi.memory.predict import (
        AugmentedPredictor,
        augment_settings,
        load_validation,
        save_validation,
    )

    mem_dir = tmp_path / "mem"
    shutil.copytree(memory_dir, mem_dir)
    memory = Memory(mem_dir)
    val = load_validation(memory)
    assert val is not None
    truth = dict(zip(val[0], val[1], strict=True))
    new = [f"the zebra {w} zebra" for w in ("film", "plot", "cast", "music", "story", "scene")]
    memory.add(new, labels=["zebra"] * len(new))

    class Perfect:  # the run's classifier, sure and right on validation, sure of "pos" elsewhere
        def __init__(self, clf: object) -> None:
            self.clf = clf

        def __getattr__(self, name: str) -> object:
            return getattr(self.clf, name)

        def predict_proba(self, texts: list[str], pairs: object = None) -> np.ndarray:
            return np.eye(2)[[self.labels.index(truth.get(t, "pos")) for t in texts]]

    predictor = AugmentedPredictor(Perfect(jiyi.load(trained_run)), memory)
    settings = predictor.settings
    assert settings["memory_rows_left_out"] == len(new)
    assert settings["n_validation"] == 60 + len(new)
    assert settings["lambda"] > 0.5
    probe = ["zebra film zebra", "zebra story scene"]
    assert [r["label"] for r in predictor.predict(probe)] == ["zebra", "zebra"]
    # validation rows that show the new label leave the memory's own rows out of the tuning
    save_validation(memory, [*val[0], *probe], [*val[1], "zebra", "zebra"])
    settings = augment_settings(predictor.clf, memory, retune=True)
    assert settings["memory_rows_left_out"] == 0 and settings["n_validation"] == 62
    capsys.readouterr()


def test_forget_is_final_and_query_shows_scores(memory_dir: Path, tmp_path: Path, capsys) -> None:
    import shutil

    mem = tmp_path / "mem"
    shutil.copytree(memory_dir, mem)
    text = make_texts(240, seed=2)[7][0]
    assert run_cli(["memory", "query", str(mem), text, "-k", "2"]) == 0
    (hit, second) = jsonl(capsys.readouterr().out)[0]["hits"]
    assert hit["text"] == text and hit["score"] > 0.999 and hit["score"] >= second["score"]
    assert run_cli(["memory", "forget", str(mem), hit["id"]]) == 0
    assert run_cli(["memory", "query", str(mem), text, "-k", "3"]) == 0
    hits = jsonl(capsys.readouterr().out)[0]["hits"]
    assert hit["id"] not in {h["id"] for h in hits}
    assert len(Memory.open(mem)) == 239
    disk = b"".join(
        p.read_bytes() for p in mem.rglob("*") if p.is_file() and "validation" not in p.parts
    )
    assert text.encode() not in disk  # erased from the snapshot and the log, not only hidden


def test_user_errors(
    memory_dir: Path, tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, capsys
) -> None:
    def error(argv: list[str]) -> str:
        assert run_cli(argv) == 2
        return capsys.readouterr().err

    assert "another model" in error(
        ["memory", "query", str(memory_dir), "a film", "--model", str(tiny_model_dir)]
    )
    assert "no row with id 'nope'" in error(["memory", "forget", str(memory_dir), "nope"])
    assert "query is empty" in error(["memory", "query", str(memory_dir), " "])
    assert "not an empty folder" in error(
        ["memory", "build", str(tiny_model_dir), "--data", str(tiny_data_dir / "train.csv"),
         "--output", str(memory_dir)]
    )  # fmt: skip
    assert "no such memory" in error(["memory", "stats", str(tmp_path / "none")])
    assert "RUN_DIR, --memory" in error(["predict", "--input", "-"])
    bad = write_csv(tmp_path / "bad.csv", [("a film", "x")], header=("review", "label"))
    assert 'no column "text"' in error(["memory", "add", str(memory_dir), "--data", str(bad)])
    assert len(Memory.open(memory_dir)) == 240


def test_faq_ask_abstains_below_the_calibrated_threshold(
    tiny_model_dir: Path, tmp_path: Path, capsys
) -> None:
    mem = build_faq_memory(tiny_model_dir, tmp_path)
    capsys.readouterr()
    ask = json.loads((mem / "memory.json").read_text())["ask"]
    assert ask["accuracy"] == 1.0 and ask["threshold"] is not None
    assert run_cli(["ask", str(mem), "good great film", "--json", "--top-k", "2"]) == 0
    (r,) = jsonl(capsys.readouterr().out)
    assert r["answered"] and r["answer"] == "Answer A" and r["id"] == "a"
    assert len(r["alternatives"]) == 1
    assert run_cli(["ask", str(mem), "unrelated words"]) == 0
    assert capsys.readouterr().out.startswith("no confident answer")


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_build_with_an_approximate_index(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, kind: str, capsys
) -> None:
    mem = tmp_path / kind
    argv = ["memory", "build", str(tiny_model_dir), "--data", str(tiny_data_dir / "train.csv"),
            "--output", str(mem), "--index", kind, "--max-length", "32"]  # fmt: skip
    assert run_cli(argv) == 0
    assert (mem / f"snap-{Memory.open(mem).state.generation:06d}" / "index.faiss").is_file()
    capsys.readouterr()
    text = make_texts(240, seed=2)[3][0]
    assert run_cli(["memory", "query", str(mem), text, "-k", "1"]) == 0
    out = capsys.readouterr().out
    assert jsonl(out)[0]["hits"][0]["text"] == text
