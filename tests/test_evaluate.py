"""jiyi.evaluate: every number pinned against scikit-learn or a hand computation."""

import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from jiyi.evaluate import (
    PRIMARY_METRICS,
    calibration_inputs,
    classification_metrics,
    expected_calibration_error,
    metric_is_better,
    multilabel_metrics,
    reliability_bins,
    tune_thresholds,
)

HEADLINE_KEYS = {
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "f1_micro",
    "f1_weighted",
    "roc_auc",
    "per_class",
    "n",
    "ece",
    "log_loss",
}


def assert_plain_json(obj):
    """Only Python floats/ints/str/None/list/dict: json.dumps works and round-trips exactly."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            assert isinstance(key, str)
            assert_plain_json(value)
    elif isinstance(obj, list):
        for value in obj:
            assert_plain_json(value)
    else:
        assert obj is None or type(obj) in (float, int, str), f"{obj!r} is {type(obj)}"
        assert not (isinstance(obj, float) and not math.isfinite(obj))


def binary_case():
    y = np.array([0, 0, 1, 1, 1])
    p1 = np.array([0.1, 0.6, 0.7, 0.4, 0.9])
    return y, np.stack([1 - p1, p1], axis=1)  # predictions: 0 1 1 0 1


def test_binary_hand_computed():
    y, probs = binary_case()
    m = classification_metrics(y, probs, ["neg", "pos"])
    assert set(m) == HEADLINE_KEYS | {"confusion_matrix"}
    assert m["n"] == 5
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["per_class"] == {
        "neg": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2},
        "pos": pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}),
    }
    assert m["precision_macro"] == pytest.approx(7 / 12)
    assert m["recall_macro"] == pytest.approx(7 / 12)
    assert m["f1_macro"] == pytest.approx(7 / 12)
    assert m["f1_micro"] == pytest.approx(3 / 5)
    assert m["f1_weighted"] == pytest.approx((2 * 0.5 + 3 * 2 / 3) / 5)
    # positive scores {0.7, 0.4, 0.9} vs negative {0.1, 0.6}: 5 of 6 pairs ordered right
    assert m["roc_auc"] == pytest.approx(5 / 6)
    assert m["confusion_matrix"] == [[1, 1], [1, 2]]
    p_true = np.array([0.9, 0.4, 0.7, 0.4, 0.9])
    assert m["log_loss"] == pytest.approx(-np.mean(np.log(p_true)))
    # confidences 0.9 0.6 0.7 0.6 0.9, correct 1 0 1 0 1: three bins
    assert m["ece"] == pytest.approx(2 / 5 * 0.1 + 2 / 5 * 0.6 + 1 / 5 * 0.3)
    assert_plain_json(m)


def test_three_class_against_sklearn():
    y = np.array([0, 1, 2, 2, 1, 0, 2, 1])
    probs = np.array(
        [
            [0.7, 0.2, 0.1],
            [0.1, 0.5, 0.4],
            [0.2, 0.2, 0.6],
            [0.3, 0.4, 0.3],
            [0.6, 0.3, 0.1],
            [0.5, 0.25, 0.25],
            [0.1, 0.1, 0.8],
            [0.2, 0.7, 0.1],
        ]
    )
    labels = ["a", "b", "c"]
    m = classification_metrics(y, probs, labels)
    pred = probs.argmax(1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    for avg in ("macro",):
        assert m[f"precision_{avg}"] == pytest.approx(
            skm.precision_score(y, pred, average=avg, zero_division=0)
        )
        assert m[f"recall_{avg}"] == pytest.approx(
            skm.recall_score(y, pred, average=avg, zero_division=0)
        )
    for avg in ("macro", "micro", "weighted"):
        assert m[f"f1_{avg}"] == pytest.approx(skm.f1_score(y, pred, average=avg, zero_division=0))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr"))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, probs))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    f1 = skm.f1_score(y, pred, average=None)
    assert [m["per_class"][k]["f1"] for k in labels] == pytest.approx(f1)
    assert [m["per_class"][k]["support"] for k in labels] == [2, 3, 3]
    assert_plain_json(m)


def test_class_with_zero_support():
    """Label "d" never occurs in y_true: support 0, scores 0, OvR ROC-AUC undefined -> None."""
    y = np.array([0, 1, 2, 0, 1, 2])
    probs = np.array(
        [
            [0.7, 0.1, 0.1, 0.1],
            [0.1, 0.6, 0.1, 0.2],
            [0.1, 0.1, 0.3, 0.5],  # predicted d: a false positive for d
            [0.4, 0.3, 0.2, 0.1],
            [0.2, 0.5, 0.2, 0.1],
            [0.1, 0.2, 0.6, 0.1],
        ]
    )
    labels = ["a", "b", "c", "d"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no UndefinedMetricWarning leaks out
        m = classification_metrics(y, probs, labels)
    pred = probs.argmax(1)
    assert m["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["per_class"]["c"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    ids = [0, 1, 2, 3]
    assert m["f1_macro"] == pytest.approx(
        skm.f1_score(y, pred, labels=ids, average="macro", zero_division=0)
    )
    assert m["f1_macro"] == pytest.approx((1 + 1 + 2 / 3 + 0) / 4)
    assert m["f1_weighted"] == pytest.approx(
        skm.f1_score(y, pred, labels=ids, average="weighted", zero_division=0)
    )
    assert m["roc_auc"] is None
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, probs, labels=ids))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=ids).tolist()
    assert json.loads(json.dumps(m)) == m


def test_single_class_y_true_gives_roc_auc_none():
    y = np.array([1, 1, 1])
    probs = np.array([[0.2, 0.8], [0.6, 0.4], [0.1, 0.9]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics(y, probs, ["neg", "pos"])
    assert m["roc_auc"] is None
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["per_class"]["neg"]["support"] == 0
    assert json.dumps(m)  # no NaN sneaks in (json.dumps would write NaN, not null)
    assert "NaN" not in json.dumps(m)


def test_one_class_model_does_not_crash():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics(np.array([0, 0]), np.array([[1.0], [1.0]]), ["only"])
    assert m["accuracy"] == 1.0
    assert m["roc_auc"] is None and m["log_loss"] is None
    assert m["per_class"]["only"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert m["confusion_matrix"] == [[2]]
    assert m["ece"] == pytest.approx(0.0)
    assert_plain_json(m)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(np.array([0, 1]), np.ones((2, 3)) / 3, ["a", "b"])
    with pytest.raises(ValueError, match="outside"):
        classification_metrics(np.array([0, 5]), np.ones((2, 2)) / 2, ["a", "b"])


def multilabel_case():
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, 0]])  # label 2 never positive
    probs = np.array(
        [
            [0.9, 0.2, 0.1],
            [0.6, 0.4, 0.3],
            [0.2, 0.8, 0.7],
            [0.1, 0.3, 0.2],
            [0.45, 0.1, 0.1],
        ]
    )
    return y, probs


def test_multilabel_against_sklearn():
    y, probs = multilabel_case()
    labels = ["x", "y", "z"]
    m = multilabel_metrics(y, probs, labels)
    pred = (probs >= 0.5).astype(int)
    assert set(m) == HEADLINE_KEYS | {"hamming_loss", "thresholds"}
    # exact set matches: rows 0 and 3 only
    assert m["accuracy"] == pytest.approx(2 / 5)
    assert m["hamming_loss"] == pytest.approx(3 / 15)  # FN (1, y), FP (2, z), FN (4, x)
    assert m["hamming_loss"] == pytest.approx(skm.hamming_loss(y, pred))
    for avg in ("macro", "micro", "weighted"):
        assert m[f"f1_{avg}"] == pytest.approx(skm.f1_score(y, pred, average=avg, zero_division=0))
    assert m["precision_macro"] == pytest.approx(
        skm.precision_score(y, pred, average="macro", zero_division=0)
    )
    assert m["recall_macro"] == pytest.approx(
        skm.recall_score(y, pred, average="macro", zero_division=0)
    )
    assert m["per_class"]["z"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["per_class"]["x"] == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3}
    )
    # micro ROC-AUC pools all 15 decisions, so a never-positive label leaves it defined
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, probs, average="micro"))
    bce = -np.mean(y * np.log(probs) + (1 - y) * np.log(1 - probs))
    assert m["log_loss"] == pytest.approx(bce)
    conf, correct = np.maximum(probs, 1 - probs).ravel(), ((probs >= 0.5) == y).ravel()
    assert m["ece"] == pytest.approx(expected_calibration_error(conf, correct))
    assert m["thresholds"] == [0.5, 0.5, 0.5]
    assert_plain_json(m)


def test_multilabel_per_label_thresholds():
    y, probs = multilabel_case()
    thresholds = np.array([0.4, 0.5, 0.75])
    m = multilabel_metrics(y, probs, ["x", "y", "z"], thresholds)
    pred = (probs >= thresholds).astype(int)  # row 4 label x now right, row 2 label z now right
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred)) == pytest.approx(4 / 5)
    assert m["f1_micro"] == pytest.approx(skm.f1_score(y, pred, average="micro"))
    assert m["thresholds"] == [0.4, 0.5, 0.75]


def test_multilabel_all_negative_gives_roc_auc_none_and_one_label_works():
    y = np.zeros((3, 2), dtype=int)
    m = multilabel_metrics(y, np.array([[0.1, 0.2], [0.7, 0.3], [0.2, 0.1]]), ["a", "b"])
    assert m["roc_auc"] is None
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert_plain_json(m)

    y1, p1 = np.array([[1], [0], [1]]), np.array([[0.8], [0.6], [0.3]])
    m1 = multilabel_metrics(y1, p1, ["only"])
    assert m1["per_class"]["only"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    )
    assert m1["f1_macro"] == m1["f1_micro"] == pytest.approx(0.5)
    assert m1["accuracy"] == pytest.approx(1 / 3)
    assert m1["roc_auc"] == pytest.approx(skm.roc_auc_score(y1.ravel(), p1.ravel()))
    assert_plain_json(m1)


def test_tune_thresholds_beats_half():
    # label 0: positives score low (0.3, 0.4), so 0.5 finds none; label 1 has no positives
    y = np.array([[1, 0], [1, 0], [0, 0], [0, 0], [0, 0]])
    probs = np.array([[0.4, 0.9], [0.3, 0.2], [0.2, 0.1], [0.1, 0.6], [0.05, 0.3]])
    t = tune_thresholds(y, probs)
    assert t.shape == (2,)
    assert t[0] == pytest.approx(0.25)  # halfway between 0.3 (lowest positive) and 0.2
    assert t[1] == 0.5
    assert skm.f1_score(y[:, 0], probs[:, 0] >= 0.5, zero_division=0) == 0.0
    assert skm.f1_score(y[:, 0], probs[:, 0] >= t[0]) == 1.0


def test_tune_thresholds_never_worse_than_half_and_handles_ties():
    rng = np.random.default_rng(0)
    y = (rng.random((60, 4)) < 0.3).astype(int)
    probs = np.round(np.clip(0.35 * y + 0.5 * rng.random((60, 4)), 0, 1), 1)  # many ties
    t = tune_thresholds(y, probs)
    for j in range(4):
        tuned = skm.f1_score(y[:, j], probs[:, j] >= t[j], zero_division=0)
        half = skm.f1_score(y[:, j], probs[:, j] >= 0.5, zero_division=0)
        best = max(
            skm.f1_score(y[:, j], probs[:, j] >= c, zero_division=0) for c in np.unique(probs[:, j])
        )
        assert tuned >= half
        assert tuned == pytest.approx(best)
    tuned_micro = multilabel_metrics(y, probs, list("abcd"), t)["f1_micro"]
    assert tuned_micro > multilabel_metrics(y, probs, list("abcd"))["f1_micro"]


def test_ece_hand_computed():
    confidence = np.array([0.95, 0.95, 0.55, 0.55, 0.25])
    correct = np.array([1, 0, 1, 1, 0])
    # bins (0.9,1]: acc .5 conf .95; (0.5,0.6]: acc 1 conf .55; (0.2,0.3]: acc 0 conf .25
    expected = 2 / 5 * 0.45 + 2 / 5 * 0.45 + 1 / 5 * 0.25
    assert expected_calibration_error(confidence, correct, n_bins=10) == pytest.approx(expected)
    # one bin: |mean accuracy - mean confidence|
    assert expected_calibration_error(confidence, correct, n_bins=1) == pytest.approx(
        abs(3 / 5 - confidence.mean())
    )
    assert expected_calibration_error([0.8] * 5, [1, 1, 1, 1, 0]) == pytest.approx(0.0)
    assert expected_calibration_error([1.0, 0.0], [1, 0], n_bins=4) == pytest.approx(0.0)


def test_reliability_bins_edges():
    centres, conf, acc, counts = reliability_bins([0.0, 0.5, 0.51, 1.0], [0, 1, 0, 1], n_bins=2)
    assert centres.tolist() == [0.25, 0.75]
    assert counts.tolist() == [2, 2]  # (0, 0.5] holds 0 and 0.5; (0.5, 1] holds 0.51 and 1
    assert acc.tolist() == [0.5, 0.5]
    assert conf == pytest.approx([0.25, 0.755])


def test_calibration_inputs():
    conf, correct = calibration_inputs(
        np.array([1, 0]), np.array([[0.3, 0.7], [0.2, 0.8]]), "classification"
    )
    assert conf.tolist() == [0.7, 0.8] and correct.tolist() == [True, False]
    conf, correct = calibration_inputs(np.array([[1, 0]]), np.array([[0.3, 0.1]]), "multilabel")
    assert conf.tolist() == pytest.approx([0.7, 0.9]) and correct.tolist() == [False, True]


def test_metric_is_better():
    assert set(PRIMARY_METRICS) >= {"classification", "multilabel"}
    assert metric_is_better("f1_macro", 0.8, 0.7)
    assert not metric_is_better("accuracy", 0.7, 0.7)
    assert metric_is_better("loss", 0.5, 0.6)
    assert metric_is_better("eval_loss", 0.5, 0.6)
    assert metric_is_better("ece", 0.01, 0.02)
    assert not metric_is_better("ece", 0.03, 0.02)
    assert metric_is_better("log_loss", 0.3, 0.4) and metric_is_better("hamming_loss", 0.1, 0.2)
    assert metric_is_better("roc_auc", 0.6, None)
    assert not metric_is_better("roc_auc", None, 0.6)
    assert not metric_is_better("f1_macro", float("nan"), 0.1)


def test_import_is_cheap():
    code = (
        "import sys, jiyi.evaluate, jiyi.report; "
        "print(sorted(m for m in ('matplotlib', 'jinja2', 'sklearn', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
