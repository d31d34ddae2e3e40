"""`jiyi train --method contrastive` (jiyi.fewshot): the pairs, the head, the loss, the model, and
a run on the tiny model that predict, evaluate, calibrate, memory and explain take (compress
refuses it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_texts, pooled_head_probs, write_csv
from jiyi.cli import main
from jiyi.config import TrainConfig
from jiyi.errors import JiyiError
from jiyi.fewshot.pairs import sentence_pairs
from jiyi.fewshot.train import cosine_pair_loss

FEWSHOT_FLAGS = ["--method", "contrastive", "--max-length", "32", "--seed", "0", "--lr", "1e-3",
                 "--batch-size", "16"]  # fmt: skip


# ---- pairs ----------------------------------------------------------------------------------


def test_pairs_are_balanced_labelled_right_and_seeded() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    pairs = sentence_pairs(labels, iterations=3, seed=7)
    assert pairs.shape == (2 * len(labels) * 3, 3)
    first, second, positive = pairs.T
    assert positive.sum() == len(pairs) // 2  # one positive and one negative per text a round
    assert (labels[first[positive == 1]] == labels[second[positive == 1]]).all()
    assert (labels[first[positive == 0]] != labels[second[positive == 0]]).all()
    assert (first[positive == 1] != second[positive == 1]).all()  # never a text with itself
    assert np.bincount(first, minlength=len(labels)).tolist() == [6] * len(labels)
    assert (sentence_pairs(labels, iterations=3, seed=7) == pairs).all()
    assert (sentence_pairs(labels, iterations=3, seed=8) != pairs).any()


def test_a_class_of_one_text_is_its_own_positive() -> None:
    pairs = sentence_pairs(np.array([0, 1, 1]), iterations=2, seed=0)
    pos = pairs[pairs[:, 2] == 1]
    assert pos[pos[:, 0] == 0, 1].tolist() == [0, 0]
    with pytest.raises(JiyiError, match="2\\+ classes"):
        sentence_pairs(np.array([1, 1, 1]), iterations=1, seed=0)


# ---- the loss and the head -------------------------------------------------------------------


def test_cosine_pair_loss_is_the_mse_of_the_cosine() -> None:
    u = torch.tensor([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])
    v = torch.tensor([[0.0, 2.0], [2.0, 2.0], [-3.0, -4.0]])
    target = torch.tensor([1.0, 1.0, 0.0])
    # cosines 0, 1, -1 -> errors (0-1)^2, (1-1)^2, (-1-0)^2
    assert cosine_pair_loss(u, v, target).item() == pytest.approx((1 + 0 + 1) / 3)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_linear_head_gives_the_logistic_regressions_probabilities(n_classes: int) -> None:
    from sklearn.linear_model import LogisticRegression

    from jiyi.memory.classify import fit_linear_head

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = np.arange(60) % n_classes
    x[np.arange(60), y] += 2.0
    weight, bias = fit_linear_head(x, y, n_classes, c=1.0)
    assert weight.shape == (n_classes, 5) and bias.shape == (n_classes,)
    probs = torch.softmax(torch.from_numpy(x @ weight.T.astype(np.float64) + bias), -1).numpy()
    reference = LogisticRegression(C=1.0, max_iter=2000).fit(x, y).predict_proba(x)
    np.testing.assert_allclose(probs, reference, atol=1e-5)


def test_linear_head_gives_an_absent_class_no_probability() -> None:
    from jiyi.memory.classify import fit_linear_head

    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    weight, bias = fit_linear_head(x, np.array([0, 0, 2, 2]), 3)
    probs = torch.softmax(torch.from_numpy(x @ weight.T + bias), -1).numpy()
    assert probs[:, 1].max() < 1e-9 and probs.argmax(1).tolist() == [0, 0, 2, 2]


# ---- flags ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "contrastive", "task": "ner"}, "--method only applies to --task classification"),
        ({"method": "contrastive", "task": "multilabel"}, "--method only applies to --task classification"),
        ({"pair_iterations": 5, "task": "ner"}, "--pair-iterations only applies to --task classification"),
        ({"method": "nope"}, "--method must be one of finetune, contrastive"),
        ({"pair_iterations": 5}, "--pair-iterations applies to --method contrastive only"),
        ({"method": "contrastive", "pair_iterations": 0}, "--pair-iterations must be at least 1"),
        ({"method": "contrastive", "augment": "all"}, "--augment does not apply to --method contrastive"),
        ({"method": "contrastive", "class_weights": "balanced"}, "--class-weights does not apply"),
        ({"method": "contrastive", "text_pair_column": "b"}, "--text-pair-column does not apply"),
    ],
)  # fmt: skip
def test_flags_that_do_not_fit_are_refused_by_name(settings: dict, message: str) -> None:
    with pytest.raises(JiyiError, match=message):
        TrainConfig(**settings)


def test_the_default_method_is_finetune_and_its_runs_are_unchanged(trained_run: Path) -> None:
    from jiyi.runs import run_meta
    from jiyi.tasks import task_of_run

    assert TrainConfig().method == "finetune"
    assert "head" not in run_meta(trained_run) and "method" not in run_meta(trained_run)
    spec = task_of_run(trained_run)
    assert spec.method == "finetune" and spec.can("compress")


# ---- a run ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fewshot_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 training texts per class; the tiny validation and test sets."""
    root = tmp_path_factory.mktemp("fewshot-data")
    write_csv(root / "train.csv", make_texts(16, seed=2))
    write_csv(root / "validation.csv", make_texts(60, seed=3))
    write_csv(root / "test.csv", make_texts(60, seed=4))
    return root


@pytest.fixture(scope="module")
def contrastive_run(
    tiny_model_dir: Path, fewshot_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("fewshot") / "run"
    argv = ["train", "--model", str(tiny_model_dir), "--train", str(fewshot_data / "train.csv"),
            "--validation", str(fewshot_data / "validation.csv"),
            "--test", str(fewshot_data / "test.csv"), "--output", str(out), *FEWSHOT_FLAGS]  # fmt: skip
    assert main(argv) == 0
    return out


def test_the_run_folder_is_a_normal_run_with_the_head(contrastive_run: Path) -> None:
    model = contrastive_run / "model"
    assert {p.name for p in contrastive_run.iterdir()} >= {
        "config.yaml",
        "metrics.jsonl",
        "model",
        "eval",
        "logs",
    }
    assert {p.name for p in model.iterdir()} == {
        "config.json", "model.safetensors", "head.safetensors", "jiyi.json", "tokenizer.json",
        "tokenizer_config.json",
    }  # fmt: skip
    meta = json.loads((model / "jiyi.json").read_text())
    assert meta["task"] == "classification" and meta["method"] == "contrastive"
    assert meta["head"] == {"type": "mean-pool-logistic", "file": "head.safetensors",
                            "pooling": "mean", "normalize": True, "C": 1.0}  # fmt: skip
    assert meta["calibration"]["method"] == "temperature"
    config = json.loads((model / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    records = [
        json.loads(line) for line in (contrastive_run / "metrics.jsonl").read_text().splitlines()
    ]
    start = next(r for r in records if r["event"] == "start")
    # 16 texts x 20 rounds x (1 positive + 1 negative); 640 / 16 = 40 steps in the 1 default epoch
    assert (start["n_pairs"], start["n_positive_pairs"], start["total_steps"]) == (640, 320, 40)
    assert [r["step"] for r in records if r["event"] == "eval"] == [40]
    saved = (contrastive_run / "config.yaml").read_text()
    assert "method: contrastive" in saved and "epochs: 1.0" in saved
    metrics = json.loads((contrastive_run / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 60 and metrics["accuracy"] > 0.6


def test_the_encoder_learnt_to_pull_same_label_texts_together(
    contrastive_run: Path, tiny_model_dir: Path, fewshot_data: Path
) -> None:
    """The mean cosine of same-label pairs minus that of different-label pairs, on the training
    texts: larger with the tuned encoder than with the one it started from."""
    from jiyi.inspect.embeddings import embed_texts

    rows = [line.split(",") for line in (fewshot_data / "train.csv").read_text().splitlines()[1:]]
    texts, labels = [t for t, _ in rows], np.array([lab for _, lab in rows])
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(texts), dtype=bool)

    def gap(model: Path) -> float:
        v = embed_texts(str(model), texts, pooling="mean", max_length=32)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        cos = v @ v.T
        return float(cos[same & off_diagonal].mean() - cos[~same].mean())

    assert gap(contrastive_run / "model") > gap(tiny_model_dir) + 0.1


def test_predict_is_the_encoder_mean_pooled_then_the_head(contrastive_run: Path) -> None:
    """jiyi.load gives softmax(normalise(mean-pool(AutoModel(text))) @ W.T + b) / T, computed
    here from the folder's files without jiyi's model class."""
    import jiyi

    texts = ["a great and moving film", "dull boring plot", "the story"]
    got = jiyi.load(contrastive_run).predict_proba(texts)
    expected = pooled_head_probs(contrastive_run / "model", texts, normalize=True)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_evaluate_predict_and_calibrate_take_the_run(
    contrastive_run: Path, fewshot_data: Path, tmp_path: Path
) -> None:
    trained = json.loads((contrastive_run / "eval" / "metrics.json").read_text())
    assert main(["evaluate", str(contrastive_run), "--data", str(fewshot_data / "test.csv"),
                 "--output", str(tmp_path / "ev")]) == 0  # fmt: skip
    again = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert again["accuracy"] == trained["accuracy"] and again["n"] == 60
    assert main(["predict", str(contrastive_run), "--input", str(fewshot_data / "test.csv"),
                 "--output", str(tmp_path / "p.jsonl")]) == 0  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    gold = [
        line.rsplit(",", 1)[1] for line in (fewshot_data / "test.csv").read_text().splitlines()[1:]
    ]
    assert np.mean([r["label"] == g for r, g in zip(rows, gold, strict=True)]) == pytest.approx(
        trained["accuracy"]
    )
    copy = tmp_path / "run"
    import shutil

    shutil.copytree(contrastive_run, copy)
    assert main(["calibrate", str(copy), "--data", str(fewshot_data / "validation.csv")]) == 0


def test_memory_builds_on_the_tuned_encoder_and_augments_the_run(
    contrastive_run: Path, fewshot_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jiyi.memory.predict import is_classifier_run

    assert is_classifier_run(contrastive_run)
    mem = tmp_path / "mem"
    assert main(["memory", "build", str(contrastive_run), "--data", str(fewshot_data / "train.csv"),
                 "--validation", str(fewshot_data / "validation.csv"), "--output", str(mem)]) == 0  # fmt: skip
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["dim"] == 32  # the tuned encoder's vectors
    (tuned,) = stats["tuned"]["knn"].values()  # the run's k, temperature and λ were tuned
    assert tuned["run"] == str(contrastive_run / "model") and tuned["n_validation"] == 60
    assert main(["predict", str(contrastive_run), "--memory", str(mem), "--input",
                 str(fewshot_data / "test.csv"), "--output", str(tmp_path / "p.jsonl")]) == 0  # fmt: skip
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 60


def test_explain_works_and_compress_refuses_by_name(
    contrastive_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", str(contrastive_run), "--text", "a great moving film", "--output",
                 str(tmp_path / "ex")]) == 0  # fmt: skip
    assert main(["compress", str(contrastive_run), "--method", "dynamic-int8", "--output",
                 str(tmp_path / "int8")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "jiyi compress applies to" in err and "not --method contrastive classification" in err
    assert not (tmp_path / "int8").exists()


def test_a_fine_tune_can_start_from_the_contrastive_run(
    contrastive_run: Path, fewshot_data: Path, tmp_path: Path
) -> None:
    """`--model RUN_DIR` loads the tuned encoder under a new classification head."""
    out = tmp_path / "ft"
    argv = ["train", "--model", str(contrastive_run), "--train", str(fewshot_data / "train.csv"),
            "--validation", str(fewshot_data / "validation.csv"), "--output", str(out),
            "--max-steps", "2", "--max-length", "32", "--batch-size", "8"]  # fmt: skip
    assert main(argv) == 0
    assert "head" not in json.loads((out / "model" / "jiyi.json").read_text())


def test_a_stopped_contrastive_run_resumes_as_one(
    tiny_model_dir: Path, fewshot_data: Path, tmp_path: Path
) -> None:
    """--resume without --method continues the contrastive run (its config.yaml says so)."""
    out = tmp_path / "run"
    argv = ["train", "--model", str(tiny_model_dir), "--train", str(fewshot_data / "train.csv"),
            "--validation", str(fewshot_data / "validation.csv"), "--output", str(out),
            "--method", "contrastive", "--pair-iterations", "2", "--max-length", "32",
            "--lr", "1e-3", "--batch-size", "16", "--max-steps", "2", "--keep-final-checkpoint"]  # fmt: skip
    assert main(argv) == 0
    assert main(["train", "--output", str(out), "--resume", "--max-steps", "4"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "eval"] == [2, 4]
    meta = json.loads((out / "model" / "jiyi.json").read_text())
    assert meta["method"] == "contrastive" and meta["step"] in (2, 4)
