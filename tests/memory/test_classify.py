"""`jiyi.memory.classify` and `jiyi.memory.faq` without an encoder: kNN votes worked by hand, the
objective, method selection on synthetic unit vectors, λ tuning, label extension, and FAQ
abstention calibrated on a tiny 4-dimensional memory whose `embed` is replaced by a lookup."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from jiyi.errors import JiyiError
from jiyi.memory.classify import (
    K_GRID,
    LAMBDA_GRID,
    T_GRID,
    MemoryClassifier,
    extend_labels,
    knn_distribution,
    objective,
    tune_augment,
)
from jiyi.memory.faq import ask, calibrate
from jiyi.memory.knn import Memory
from jiyi.memory.store import Store

# ---- helpers ---------------------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[labels]


def _clusters(
    centres: np.ndarray, cluster_class: list[int], per_cluster: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors scattered around each centre; returns (vectors, class index per row)."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for centre, cls in zip(centres, cluster_class, strict=True):
        xs.append(_unit(centre + noise * rng.normal(size=(per_cluster, centres.shape[1]))))
        ys.extend([cls] * per_cluster)
    return np.concatenate(xs).astype(np.float32), np.asarray(ys)


def _held_out_accuracy(
    clf: MemoryClassifier,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    y: np.ndarray,
) -> float:
    """Accuracy of `clf` on test rows, giving kNN its neighbours among the training rows."""
    sims = test_x @ train_x.T
    order = np.argsort(-sims, axis=1)[:, : max(K_GRID)]
    probs = clf.predict_proba(test_x, np.take_along_axis(sims, order, axis=1), train_y[order])
    assert probs.shape == (len(test_x), train_y.shape[1])
    return float((probs.argmax(axis=1) == y).mean())


MANIFEST = {
    "format": 1,
    "model": "x",
    "fingerprint": "f",
    "pooling": "mean",
    "layers": "-1",
    "max_length": 512,
    "dim": 4,
    "task": "classification",
    "index": "flat",
    "index_params": {},
    "payload_columns": ["answer"],
}


def _vec(*scores: float) -> np.ndarray:
    """A unit query whose cosines with the rows e0, e1, e2 are `scores`; e3 takes the rest."""
    head = np.array(scores + (0.0,) * (3 - len(scores)), dtype=np.float64)
    return np.array([*head, math.sqrt(1.0 - float(head @ head))], dtype=np.float32)


@pytest.fixture
def faq_memory(tmp_path: Path) -> Memory:
    """Three FAQ rows at e0 (delivery), e1 (refund), e2 (hours); `embed` looks questions up
    in `mem.table` (a dict the test fills)."""
    path = tmp_path / "faq"
    Store(path).create(dict(MANIFEST))
    mem = Memory.open(path)
    mem.add(
        ["how long is delivery?", "can I get a refund?", "when are you open?"],
        labels=["shipping", "money", "shop"],
        payload=[{"answer": "3 days"}, {"answer": "30 days"}, {"answer": "9 to 5"}],
        ids=["d", "r", "h"],
        vectors=np.eye(4, dtype=np.float32)[:3],
    )
    mem.table = {}  # type: ignore[attr-defined]
    mem.embed = lambda texts, role="query": np.stack([mem.table[t] for t in texts])  # type: ignore[attr-defined,method-assign]
    return mem


# ---- knn_distribution ------------------------------------------------------------------------


def test_knn_distribution_worked_example() -> None:
    # query 0: neighbours A (0.9), B (0.8), A (0.5); query 1: B (0.7), A (0.7), B (0.6); T = 0.1
    scores = np.array([[0.9, 0.8, 0.5], [0.7, 0.7, 0.6]])
    A, B = [1, 0], [0, 1]
    targets = np.array([[A, B, A], [B, A, B]], dtype=np.float32)
    p = knn_distribution(scores, targets, k=3, temperature=0.1)

    # softmax(s / T): weights relative to the best, exp((s - s_max) / T)
    w0 = [math.exp(0.0), math.exp(-0.1 / 0.1), math.exp(-0.4 / 0.1)]  # 1, e^-1, e^-4
    w1 = [math.exp(0.0), math.exp(0.0), math.exp(-0.1 / 0.1)]  # 1, 1, e^-1
    expected = np.array(
        [
            [(w0[0] + w0[2]) / sum(w0), w0[1] / sum(w0)],
            [w1[1] / sum(w1), (w1[0] + w1[2]) / sum(w1)],
        ]
    )
    assert p.shape == (2, 2)
    np.testing.assert_allclose(p, expected, rtol=1e-9)
    # the same numbers, written out: (1 + e^-4) / (1 + e^-1 + e^-4) and 1 / (2 + e^-1)
    np.testing.assert_allclose(p, [[0.7346119, 0.2653881], [0.4223188, 0.5776812]], atol=1e-6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)


def test_knn_distribution_k_takes_only_the_first_columns() -> None:
    scores = np.array([[0.9, 0.8, 0.5]])
    targets = np.array([[[1, 0], [0, 1], [0, 1]]], dtype=np.float32)
    np.testing.assert_allclose(knn_distribution(scores, targets, 1, 0.1), [[1.0, 0.0]])
    e = math.exp(-1.0)
    np.testing.assert_allclose(
        knn_distribution(scores, targets, 2, 0.1), [[1 / (1 + e), e / (1 + e)]], rtol=1e-9
    )


def test_knn_distribution_ignores_minus_inf_and_unlabelled_neighbours() -> None:
    # best neighbour unlabelled (all-zero targets), a labelled one at -inf (a padded slot)
    scores = np.array([[0.95, 0.9, -np.inf, 0.5]])
    targets = np.array([[[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]], dtype=np.float32)
    p = knn_distribution(scores, targets, k=4, temperature=0.1)
    e4 = math.exp(-(0.9 - 0.5) / 0.1)  # only A (0.9) and C (0.5) vote
    np.testing.assert_allclose(p, [[1 / (1 + e4), 0.0, e4 / (1 + e4)]], rtol=1e-9)
    # within k = 2, the only labelled neighbour is A
    np.testing.assert_allclose(knn_distribution(scores, targets, 2, 0.1), [[1.0, 0.0, 0.0]])


def test_knn_distribution_no_labelled_neighbour_is_uniform() -> None:
    scores = np.array([[0.9, 0.8], [-np.inf, -np.inf], [0.7, 0.6]])
    targets = np.zeros((3, 2, 3), dtype=np.float32)
    targets[1] = [[1, 0, 0], [0, 1, 0]]  # labelled but at -inf: do not count
    targets[2] = [[0, 0, 0], [0, 0, 1]]  # one labelled neighbour
    with np.errstate(all="raise"):  # no 0/0, no inf - inf
        p = knn_distribution(scores, targets, k=2, temperature=0.05)
    np.testing.assert_allclose(p[0], [1 / 3] * 3)
    np.testing.assert_allclose(p[1], [1 / 3] * 3)
    np.testing.assert_allclose(p[2], [0.0, 0.0, 1.0])


def test_knn_distribution_multilabel_gives_per_label_weighted_fractions() -> None:
    scores = np.array([[0.8, 0.6]])
    targets = np.array([[[1, 1, 0], [0, 1, 1]]], dtype=np.float32)
    p = knn_distribution(scores, targets, k=2, temperature=0.2)
    e = math.exp(-(0.8 - 0.6) / 0.2)  # e^-1
    np.testing.assert_allclose(p, [[1 / (1 + e), 1.0, e / (1 + e)]], rtol=1e-9)
    assert p.sum() == pytest.approx(2.0)  # not a distribution over labels: one per label


def test_knn_distribution_k_beyond_the_columns_and_tiny_temperature() -> None:
    scores = np.array([[0.9, 0.8]])
    targets = np.array([[[1, 0], [0, 1]]], dtype=np.float32)
    np.testing.assert_allclose(
        knn_distribution(scores, targets, 10, 0.1), knn_distribution(scores, targets, 2, 0.1)
    )
    # s / T = 1e4 would overflow exp without subtracting the best score first
    with np.errstate(all="raise"):
        p = knn_distribution(np.array([[1.0, 1.0]]), targets, 2, 1e-4)
    np.testing.assert_allclose(p, [[0.5, 0.5]])


# ---- objective ---------------------------------------------------------------------------------


def test_objective_single_label_accuracy_and_log_loss() -> None:
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    targets = np.array([[1, 0], [0, 1], [0, 1]], dtype=np.float32)
    acc, neg_nll = objective(probs, targets)
    assert acc == pytest.approx(2 / 3)
    assert neg_nll == pytest.approx((math.log(0.7) + math.log(0.8) + math.log(0.4)) / 3)
    assert neg_nll == pytest.approx(-0.4987031, abs=1e-6)


def test_objective_zero_probability_on_the_truth_is_clipped() -> None:
    acc, neg_nll = objective(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    assert acc == 0.0
    assert neg_nll == pytest.approx(math.log(1e-9))


def test_objective_multilabel_micro_f1_at_one_half() -> None:
    probs = np.array([[0.9, 0.6, 0.1], [0.5, 0.7, 0.2]])
    targets = np.array([[1, 0, 0], [1, 1, 0]], dtype=np.float32)
    f1, neg_nll = objective(probs, targets)
    # predicted (p >= 0.5): {0, 1} and {0, 1}; true: {0} and {0, 1} -> tp 3, fp 1, fn 0
    precision, recall = 3 / 4, 3 / 3
    assert f1 == pytest.approx(2 * precision * recall / (precision + recall))  # 6/7
    bce = -(
        math.log(0.9)
        + math.log(0.4)
        + math.log(0.9)
        + math.log(0.5)
        + math.log(0.7)
        + math.log(0.8)
    )
    assert neg_nll == pytest.approx(-bce / 6)
    # nothing predicted, nothing true in a row: micro-F1 over the rest
    f1, _ = objective(np.array([[0.1, 0.2], [0.9, 0.2]]), np.array([[0, 0], [1, 1]]))
    assert f1 == pytest.approx(2 * 1 / (1 + 2))


# ---- MemoryClassifier.select -----------------------------------------------------------------


def _three_clusters(seed: int, per_cluster: int) -> tuple[np.ndarray, np.ndarray]:
    return _clusters(np.eye(8)[:3], [0, 1, 2], per_cluster, noise=0.15, seed=seed)


def test_select_on_three_clusters_is_accurate_on_held_out_points() -> None:
    x, y = _three_clusters(seed=0, per_cluster=20)
    tx, ty = _three_clusters(seed=1, per_cluster=15)
    targets = _one_hot(y, 3)
    clf = MemoryClassifier.select(x, targets, ["a", "b", "c"])
    assert clf.method in ("knn", "prototype", "logistic")
    assert clf.names == ["a", "b", "c"]
    assert set(clf.scores) == {"knn", "prototype", "logistic"}
    assert all(0.95 <= s <= 1.0 for s in clf.scores.values())
    assert _held_out_accuracy(clf, x, targets, tx, ty) >= 0.95
    assert clf.evaluated_on.startswith("5-fold cross-validation on the memory (60 rows)")
    assert clf.describe()["method"] == clf.method


def test_select_with_a_forced_method_and_validation_data() -> None:
    x, y = _three_clusters(seed=2, per_cluster=20)
    vx, vy = _three_clusters(seed=3, per_cluster=10)
    tx, ty = _three_clusters(seed=4, per_cluster=15)
    targets = _one_hot(y, 3)
    clf = MemoryClassifier.select(
        x, targets, ["a", "b", "c"], validation=(vx, _one_hot(vy, 3)), method="prototype"
    )
    assert clf.method == "prototype"
    assert clf.temperature in T_GRID
    assert clf.model.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(clf.model, axis=1), 1.0, rtol=1e-5)
    assert clf.evaluated_on == "validation (30 rows)"
    assert clf.describe()["k"] is None and clf.describe()["C"] is None
    assert _held_out_accuracy(clf, x, targets, tx, ty) >= 0.95

    logistic = MemoryClassifier.select(x, targets, ["a", "b", "c"], method="logistic")
    assert logistic.method == "logistic" and logistic.param in (1.0, 10.0, 100.0)
    assert "cross-validation" in logistic.evaluated_on
    assert _held_out_accuracy(logistic, x, targets, tx, ty) >= 0.95


def test_select_rejects_one_class_and_unknown_methods() -> None:
    x, _ = _three_clusters(seed=5, per_cluster=5)
    with pytest.raises(JiyiError, match="two classes"):
        MemoryClassifier.select(x, np.ones((len(x), 1), np.float32), ["only"])
    with pytest.raises(JiyiError, match="choose auto"):
        MemoryClassifier.select(x, _one_hot(np.arange(len(x)) % 2, 2), ["a", "b"], method="svm")


def test_select_with_a_class_of_one_example_falls_back_to_kfold() -> None:
    x, y = _clusters(np.eye(8)[:3], [0, 1, 2], 12, noise=0.15, seed=6)
    keep = np.r_[np.arange(24), 24]  # classes a and b, and a single example of c
    x, y = x[keep], y[keep]
    targets = _one_hot(y, 3)
    tx, ty = _clusters(np.eye(8)[:2], [0, 1], 10, noise=0.15, seed=7)
    clf = MemoryClassifier.select(x, targets, ["a", "b", "c"])
    assert clf.evaluated_on.startswith("5-fold cross-validation on the memory (25 rows)")
    assert _held_out_accuracy(clf, x, targets, tx, ty) >= 0.95
    # logistic heads were fitted on folds that miss class c, and still scored on three columns
    assert set(clf.scores) == {"knn", "prototype", "logistic"}


def test_select_prefers_knn_when_class_means_are_useless() -> None:
    # XOR-like: class 0 around ±e0, class 1 around ±e1 -> both class means are ~0 and no
    # linear boundary separates them; only neighbours do.
    e = np.eye(4)
    centres = np.stack([e[0], -e[0], e[1], -e[1]])
    x, y = _clusters(centres, [0, 0, 1, 1], 15, noise=0.1, seed=8)
    tx, ty = _clusters(centres, [0, 0, 1, 1], 10, noise=0.1, seed=9)
    targets = _one_hot(y, 2)
    clf = MemoryClassifier.select(x, targets, ["x", "y"])
    assert clf.method != "prototype"
    assert clf.method == "knn" and int(clf.param) in K_GRID
    assert clf.scores["knn"] >= 0.95
    assert clf.scores["prototype"] < 0.85 and clf.scores["logistic"] < 0.85
    assert _held_out_accuracy(clf, x, targets, tx, ty) >= 0.95
    assert clf.describe()["k"] == int(clf.param)


# ---- tune_augment ------------------------------------------------------------------------------

TUNE_KEYS = {"k", "temperature", "lambda", "validation_score", "model_alone_score", "n_validation"}


def test_tune_augment_trusts_neighbours_that_are_right() -> None:
    n, kmax = 20, 5
    y = np.arange(n) % 2
    targets = _one_hot(y, 2)
    model_probs = np.full((n, 2), 0.5)  # argmax picks class 0: right on half the rows
    scores = np.tile(np.linspace(0.9, 0.5, kmax), (n, 1))
    neighbours = np.repeat(targets[:, None, :], kmax, axis=1)  # every neighbour is right
    out = tune_augment(model_probs, scores, neighbours, targets)
    assert set(out) == TUNE_KEYS
    assert out["lambda"] > 0.5
    assert out["lambda"] == 1.0  # p_kNN puts 1.0 on the truth: any model share costs log loss
    assert out["validation_score"] == 1.0
    assert out["model_alone_score"] == 0.5
    assert out["n_validation"] == n
    assert out["k"] <= kmax and out["temperature"] in T_GRID


def test_tune_augment_ignores_neighbours_that_are_noise() -> None:
    rng = np.random.default_rng(10)
    n, kmax, c = 40, 8, 3
    y = rng.integers(0, c, size=n)
    targets = _one_hot(y, c)
    model_probs = targets.astype(np.float64)  # the model is right and sure
    scores = -np.sort(-rng.uniform(0.2, 0.9, size=(n, kmax)), axis=1)
    neighbours = _one_hot(rng.integers(0, c, size=(n, kmax)), c)
    out = tune_augment(model_probs, scores, neighbours, targets)
    assert set(out) == TUNE_KEYS
    assert out["lambda"] == 0.0
    assert out["validation_score"] == out["model_alone_score"] == 1.0
    assert out["n_validation"] == n
    assert out["k"] in K_GRID and out["k"] <= kmax


def test_tune_augment_learns_a_label_the_model_lacks() -> None:
    # column 2 is a memory-only label: p_model = 0 there, so only the neighbours can reach it
    n, kmax = 12, 3
    y = np.array([0, 1, 2] * 4)
    targets = _one_hot(y, 3)
    model_probs = np.where(y[:, None] == 0, [0.9, 0.1, 0.0], [0.1, 0.9, 0.0])
    scores = np.tile([0.9, 0.8, 0.7], (n, 1))
    neighbours = np.repeat(targets[:, None, :], kmax, axis=1)
    out = tune_augment(model_probs, scores, neighbours, targets)
    assert out["model_alone_score"] == round(8 / 12, 4)
    assert out["validation_score"] == 1.0
    assert out["lambda"] > 0.5 and out["lambda"] in LAMBDA_GRID


# ---- extend_labels -----------------------------------------------------------------------------


def test_extend_labels_keeps_the_model_order_then_adds_new_memory_labels() -> None:
    assert extend_labels(["pos", "neg"], ["billing", "neg", "pos", "refund"]) == [
        "pos",
        "neg",
        "billing",
        "refund",
    ]
    assert extend_labels(["a", "b"], ["b", "a"]) == ["a", "b"]
    assert extend_labels(["a"], []) == ["a"]


# ---- faq ---------------------------------------------------------------------------------------


def test_calibrate_puts_the_threshold_between_right_and_wrong(faq_memory: Memory) -> None:
    faq_memory.table.update(  # type: ignore[attr-defined]
        {
            "delivery time?": _vec(0.9, 0.1),  # -> d, right
            "money back?": _vec(0.0, 0.8),  # -> r, right
            "do you sell shoes?": _vec(0.2, 0.0, 0.4),  # -> h at 0.4, but it should be d
            "what is the weather?": _vec(0.3),  # -> d at 0.3, unanswerable
        }
    )
    out = calibrate(
        faq_memory,
        ["delivery time?", "money back?", "do you sell shoes?", "what is the weather?"],
        ["d", "r", "d", None],
    )
    assert 0.4 < out["threshold"] < 0.8
    assert out["threshold"] == pytest.approx(0.6, abs=1e-6)  # midway between 0.4 and 0.8
    assert out["accuracy"] == 1.0
    assert out["answered"] == 0.5
    assert out["precision"] == 1.0
    assert out["top1_accuracy_answerable"] == round(2 / 3, 4)
    assert out["n_validation"] == 4 and out["n_unanswerable"] == 1
    assert out["matched_by"] == "id"

    by_answer = calibrate(
        faq_memory, ["delivery time?", "do you sell shoes?"], ["3 days", "3 days"], by="answer"
    )
    assert by_answer["threshold"] == pytest.approx(0.65, abs=1e-6)  # between 0.4 and 0.9
    assert by_answer["accuracy"] == 1.0 and by_answer["matched_by"] == "answer"


def test_calibrate_without_unanswerable_questions_always_answers(faq_memory: Memory) -> None:
    faq_memory.table.update(  # type: ignore[attr-defined]
        {"a": _vec(0.9), "b": _vec(0.0, 0.5), "c": _vec(0.0, 0.0, 0.3)}
    )
    out = calibrate(faq_memory, ["a", "b", "c"], ["d", "r", "h"])
    assert out["threshold"] is None
    assert out["accuracy"] == 1.0
    assert out["answered"] == 1.0
    assert out["n_unanswerable"] == 0
    assert out["top1_accuracy_answerable"] == 1.0


def test_ask_abstains_below_the_threshold_and_lists_alternatives(faq_memory: Memory) -> None:
    faq_memory.table.update(  # type: ignore[attr-defined]
        {"sure": _vec(0.9, 0.3, 0.2), "unsure": _vec(0.1, 0.4, 0.2)}
    )
    sure, unsure = ask(faq_memory, ["sure", "unsure"], top_k=3, threshold=0.6)
    assert sure["answered"] is True and sure["answer"] == "3 days"
    assert sure["id"] == "d" and sure["matched_question"] == "how long is delivery?"
    assert sure["score"] == pytest.approx(0.9, abs=1e-6) and sure["threshold"] == 0.6
    assert [a["id"] for a in sure["alternatives"]] == ["r", "h"]
    assert [a["answer"] for a in sure["alternatives"]] == ["30 days", "9 to 5"]
    assert [a["score"] for a in sure["alternatives"]] == pytest.approx([0.3, 0.2], abs=1e-6)
    # below the threshold: no answer, but the best match is still reported
    assert unsure["answered"] is False and unsure["answer"] is None
    assert unsure["id"] == "r" and unsure["score"] == pytest.approx(0.4, abs=1e-6)
    assert len(unsure["alternatives"]) == 2

    (one,) = ask(faq_memory, ["sure"], top_k=2)
    assert one["answered"] is True and one["threshold"] is None  # none given, none stored
    assert [a["id"] for a in one["alternatives"]] == ["r"]
    (only,) = ask(faq_memory, ["sure"])
    assert only["alternatives"] == []

    faq_memory.update_manifest(ask={"threshold": 0.95})  # a stored threshold applies
    (stored,) = ask(faq_memory, ["sure"])
    assert stored["threshold"] == 0.95 and stored["answered"] is False


def test_calibrated_threshold_reproduces_the_calibrated_decisions(faq_memory: Memory) -> None:
    faq_memory.table.update(  # type: ignore[attr-defined]
        {"wrong": _vec(0.0, 0.0, 0.25), "right": _vec(0.250001)}
    )
    out = calibrate(faq_memory, ["wrong", "right"], ["d", "d"])
    assert out["accuracy"] == 1.0  # abstain on "wrong" (score 0.25), answer "right"
    answered = [
        a["answered"] for a in ask(faq_memory, ["wrong", "right"], threshold=out["threshold"])
    ]
    assert answered == [False, True]


def test_calibrate_fits_a_confidence_model_and_matches_answers_too(faq_memory: Memory) -> None:
    """With answers and 24 validation questions, entries are matched by question or answer and
    a logistic confidence decides; ask reproduces the calibrated decisions."""
    e = np.eye(4, dtype=np.float32)
    # the answers live apart from their questions: "30 days" (r) lies along e3
    faq_memory.table.update({"3 days": e[0], "30 days": e[3], "9 to 5": e[2]})  # type: ignore[attr-defined]
    questions, expected = [], []
    for i in range(8):  # clear paraphrases of d (right, high score, wide margin)
        questions.append(f"right {i}")
        faq_memory.table[f"right {i}"] = _vec(0.9 - 0.01 * i, 0.1)  # type: ignore[attr-defined]
        expected.append("d")
    for i in range(8):  # near r's answer only: found through the answer (question cosine 0.1)
        questions.append(f"answer {i}")
        head = np.array([0.0, 0.1, 0.0, 0.85 - 0.01 * i])
        faq_memory.table[f"answer {i}"] = (head / np.linalg.norm(head)).astype(np.float32)  # type: ignore[attr-defined]
        expected.append("r")
    for i in range(8):  # out of scope: close to d and h alike (small margin)
        questions.append(f"oos {i}")
        faq_memory.table[f"oos {i}"] = _vec(0.45 + 0.01 * i, 0.0, 0.44)  # type: ignore[attr-defined]
        expected.append(None)
    out = calibrate(faq_memory, questions, expected)
    model = out["confidence"]
    assert out["threshold_on"] == "confidence" and model["features"] == [
        "question",
        "answer",
        "margin",
    ]
    assert len(model["weights"]) == 3 and out["accuracy"] == 1.0
    assert out["top1_accuracy_answerable"] == 1.0  # the answer paraphrases find r
    assert 0.0 < out["threshold"] < 1.0
    faq_memory.update_manifest(ask=out)  # as `jiyi memory build --validation` saves it
    results = ask(faq_memory, questions)
    assert [r["answered"] for r in results] == [e is not None for e in expected]
    assert [r["id"] for r in results[:16]] == expected[:16]
    r = results[8]
    assert r["answer"] == "30 days" and r["matched_question"] == "can I get a refund?"
    n = np.linalg.norm([0.1, 0.85])
    assert r["score"] == pytest.approx(0.85 / n, abs=1e-6)  # the answer's cosine, not 0.1 / n
    # question, answer, margin over the next entry (d and h: 0 to both their question and answer)
    features = np.array([0.1 / n, 0.85 / n, 0.85 / n - 0.0])
    z = features @ np.array(model["weights"]) + model["bias"]
    assert r["confidence"] == pytest.approx(1 / (1 + np.exp(-z)), abs=1e-6)


def test_too_few_validation_questions_keep_the_score_threshold(faq_memory: Memory) -> None:
    faq_memory.table.update({"a": _vec(0.9), "b": _vec(0.0, 0.0, 0.3)})  # type: ignore[attr-defined]
    out = calibrate(faq_memory, ["a", "b"], ["d", "d"])
    assert out["confidence"] is None and out["threshold_on"] == "score"
    faq_memory.update_manifest(ask=out)
    (r,) = ask(faq_memory, ["a"])
    assert r["confidence"] is None and r["answered"] and r["threshold"] == out["threshold"]
    assert r["confidence"] is None and r["score"] == pytest.approx(0.9, abs=1e-6)
