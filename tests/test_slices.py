"""`jiyi evaluate --slice-by`: metrics per slice pinned against scikit-learn on each slice alone,
the gaps, Wilson's interval by hand, the bootstrap, and the verb end to end."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

import jiyi
from jiyi.cli import main
from jiyi.evaluate import (
    METRIC_NAMES,
    expected_calibration_error,
    resampled_metrics,
    slice_gaps,
    slice_metrics,
    wilson_interval,
)


def three_class_case() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """12 rows in slices a (6 rows, every class), b (4 rows, no class 2), c (2 rows, one class)."""
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 0, 1, 2, 2])
    probs = np.array(
        [
            [0.7, 0.2, 0.1],
            [0.1, 0.8, 0.1],
            [0.3, 0.3, 0.4],
            [0.2, 0.5, 0.3],  # wrong
            [0.6, 0.3, 0.1],  # wrong
            [0.1, 0.1, 0.8],
            [0.5, 0.4, 0.1],
            [0.2, 0.7, 0.1],
            [0.2, 0.2, 0.6],  # wrong: predicts class 2, absent from b's y_true
            [0.1, 0.6, 0.3],
            [0.1, 0.2, 0.7],
            [0.4, 0.35, 0.25],  # wrong
        ]
    )
    groups = ["a"] * 6 + ["b"] * 4 + ["c"] * 2
    return y, probs, groups


def sklearn_on(y: np.ndarray, probs: np.ndarray, c: int) -> dict[str, float | None]:
    """The metrics of one slice as scikit-learn gives them on that slice alone."""
    pred = probs.argmax(axis=1)
    prf = {"zero_division": 0}
    out = {
        "accuracy": skm.accuracy_score(y, pred),
        "precision_macro": skm.precision_score(y, pred, average="macro", **prf),
        "recall_macro": skm.recall_score(y, pred, average="macro", **prf),
        "f1_macro": skm.f1_score(y, pred, average="macro", **prf),
        "f1_micro": skm.f1_score(y, pred, average="micro", **prf),
        "f1_weighted": skm.f1_score(y, pred, average="weighted", **prf),
        "log_loss": skm.log_loss(y, probs, labels=list(range(c))),
        "ece": expected_calibration_error(probs.max(axis=1), pred == y),
    }
    every_class = len(np.unique(y)) == c
    out["roc_auc"] = skm.roc_auc_score(y, probs, multi_class="ovr") if every_class else None
    return out


def test_slice_metrics_equal_scikit_learn_on_each_slice() -> None:
    y, probs, groups = three_class_case()
    slices, _ = slice_metrics(y, probs, ["x", "y", "z"], groups, n_boot=200)
    assert list(slices) == ["a", "b", "c"]
    assert [s["n"] for s in slices.values()] == [6, 4, 2]
    for name, scores in slices.items():
        rows = np.array([g == name for g in groups])
        expected = sklearn_on(y[rows], probs[rows], 3)
        assert set(expected) == set(METRIC_NAMES["classification"])
        for metric, value in expected.items():
            assert (
                scores[metric] == pytest.approx(value, abs=1e-12)
                if value is not None
                else (scores[metric] is None)
            ), (name, metric)
    # c holds only class 2 and predicts class 0 once: its macro averages run over classes 0 and
    # 2 (those of y_true and y_pred), as scikit-learn's do, not over all three (that gives 1/6)
    assert slices["c"]["recall_macro"] == pytest.approx((0 + 1 / 2) / 2)
    assert slices["c"]["roc_auc"] is None and slices["c"]["ci"]["roc_auc"] is None


def test_multilabel_slices_equal_scikit_learn() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random((40, 3)) < 0.4).astype(int)
    probs = np.round(np.clip(y * 0.5 + rng.random((40, 3)) * 0.6, 0, 1), 2)
    thresholds = np.array([0.5, 0.6, 0.4])
    groups = ["p" if i % 3 else "q" for i in range(40)]
    slices, _ = slice_metrics(
        y, probs, ["l0", "l1", "l2"], groups, task="multilabel", thresholds=thresholds, n_boot=100
    )
    for name, scores in slices.items():
        rows = np.array([g == name for g in groups])
        yt, p = y[rows], probs[rows]
        pred = (p >= thresholds).astype(int)
        prf = {"zero_division": 0}
        assert scores["accuracy"] == pytest.approx(skm.accuracy_score(yt, pred))
        assert scores["f1_macro"] == pytest.approx(skm.f1_score(yt, pred, average="macro", **prf))
        assert scores["f1_micro"] == pytest.approx(skm.f1_score(yt, pred, average="micro", **prf))
        assert scores["f1_weighted"] == pytest.approx(
            skm.f1_score(yt, pred, average="weighted", **prf)
        )
        assert scores["hamming_loss"] == pytest.approx(skm.hamming_loss(yt, pred))
        assert scores["roc_auc"] == pytest.approx(skm.roc_auc_score(yt.ravel(), p.ravel()))


@pytest.mark.parametrize(
    ("task", "c"),
    [("classification", 2), ("classification", 4), ("multilabel", 3), ("multilabel", 1)],
)
def test_the_vectorised_bootstrap_metrics_equal_the_point_estimates(task: str, c: int) -> None:
    """The bootstrap scores resamples with numpy counts; on the identity resample it must give
    what scikit-learn gives (ties in the scores included)."""
    rng = np.random.default_rng(c)
    n = 50
    if task == "classification":
        y = rng.integers(0, c, n)
        probs = np.round(rng.dirichlet(np.ones(c), n), 1)
        probs = probs / probs.sum(axis=1, keepdims=True)
    else:
        y = (rng.random((n, c)) < 0.4).astype(int)
        probs = np.round(rng.random((n, c)), 1)  # many ties
    labels = [f"l{j}" for j in range(c)]
    slices, _ = slice_metrics(y, probs, labels, ["all"] * n, task=task, thresholds=0.45, n_boot=10)
    identity = resampled_metrics(y, probs, task, 0.45, np.arange(n)[None])
    for metric in METRIC_NAMES[task]:
        point = slices["all"][metric]
        if point is None:
            assert np.isnan(identity[metric][0]), metric
        else:
            assert identity[metric][0] == pytest.approx(point, abs=1e-12), metric


def test_bootstrap_intervals_are_seeded_and_hold_the_estimate() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p1 = np.clip(0.5 + (y - 0.5) * 0.3 + rng.normal(0, 0.25, 300), 0.01, 0.99)  # ~75% right
    probs = np.stack([1 - p1, p1], axis=1)
    groups = ["big"] * 250 + ["small"] * 50
    first, _ = slice_metrics(y, probs, ["n", "p"], groups)
    again, _ = slice_metrics(y, probs, ["n", "p"], groups)
    assert first == again  # fixed seed: the same intervals every time
    for scores in first.values():
        for metric, (lo, hi) in scores["ci"].items():
            assert lo <= scores[metric] <= hi, metric
    assert 0.6 < first["small"]["accuracy"] < 0.95
    width = {k: s["ci"]["f1_macro"][1] - s["ci"]["f1_macro"][0] for k, s in first.items()}
    assert width["big"] < width["small"]  # more rows, a tighter interval


def test_wilson_interval_by_hand() -> None:
    z = 1.959963984540054
    # k = 8 of n = 10: centre (0.8 + z²/20) / (1 + z²/10), half-width z·sqrt(0.016 + z²/400) / (1 + z²/10)
    centre = (0.8 + z * z / 20) / (1 + z * z / 10)
    half = z * math.sqrt(0.8 * 0.2 / 10 + z * z / 400) / (1 + z * z / 10)
    lo, hi = wilson_interval(8, 10)
    assert (lo, hi) == pytest.approx((centre - half, centre + half))
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert wilson_interval(0, 5) == pytest.approx((0.0, z * z / (5 + z * z)))  # k = 0: not empty
    assert wilson_interval(5, 5) == pytest.approx((5 / (5 + z * z), 1.0))

    y, probs, groups = three_class_case()
    slices, _ = slice_metrics(y, probs, ["x", "y", "z"], groups, n_boot=50)
    assert slices["a"]["ci"]["accuracy"] == pytest.approx(list(wilson_interval(4, 6)))


def test_gaps_best_minus_worst_and_small_slices() -> None:
    y, probs, groups = three_class_case()
    slices, gaps = slice_metrics(y, probs, ["x", "y", "z"], groups, min_rows=1, n_boot=50)
    acc = {k: s["accuracy"] for k, s in slices.items()}
    assert acc == pytest.approx({"a": 4 / 6, "b": 3 / 4, "c": 1 / 2})
    assert gaps["accuracy"] == {
        "gap": pytest.approx(3 / 4 - 1 / 2),
        "best": "b",
        "best_value": pytest.approx(3 / 4),
        "worst": "c",
        "worst_value": pytest.approx(1 / 2),
        "compared": 3,
        "small_included": False,
    }
    losses = {k: s["log_loss"] for k, s in slices.items()}
    assert gaps["log_loss"]["best"] == min(losses, key=losses.get)  # lower is better
    assert gaps["log_loss"]["gap"] == pytest.approx(max(losses.values()) - min(losses.values()))
    assert gaps["roc_auc"] is None  # one-vs-rest AUC is defined on a only (b and c lack classes)

    # slices under min_rows are flagged, and left out of the gaps while two larger ones remain
    slices, gaps = slice_metrics(y, probs, ["x", "y", "z"], groups, min_rows=4, n_boot=50)
    assert [s["small"] for s in slices.values()] == [False, False, True]
    assert (gaps["accuracy"]["worst"], gaps["accuracy"]["compared"]) == ("a", 2)
    slices, gaps = slice_metrics(y, probs, ["x", "y", "z"], groups, min_rows=5, n_boot=50)
    assert gaps["accuracy"]["small_included"] and gaps["accuracy"]["worst"] == "c"
    assert slice_gaps({"only": slices["a"]}, ("accuracy",)) == {"accuracy": None}


def write_sliced_csv(path: Path, source: Path) -> list[dict[str, str]]:
    """The tiny test set with a `lang` column (40 en, 19 de, 1 fr) and a `short` column."""
    with open(source, newline="") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):
        row["lang"] = "en" if i < 40 else "de" if i < 59 else "fr"
        row["short"] = str(len(row["text"].split()) <= 6).lower()
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label", "lang", "short"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def test_evaluate_slice_by_end_to_end(
    trained_run: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "sliced.csv"
    rows = write_sliced_csv(data, tiny_data_dir / "test.csv")
    out = tmp_path / "eval"
    argv = ["evaluate", str(trained_run), "--data", str(data), "--output", str(out)]
    assert main([*argv, "--slice-by", "lang", "--slice-by", "short"]) == 0
    err = capsys.readouterr().err
    assert "slices by lang" in err and "slices by short" in err

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["slices"]) == set(metrics["slice_gaps"]) == {"lang", "short"}
    lang = metrics["slices"]["lang"]
    assert {k: s["n"] for k, s in lang.items()} == {"de": 19, "en": 40, "fr": 1}
    assert [k for k, s in lang.items() if s["small"]] == ["de", "fr"]
    assert sum(s["n"] for s in metrics["slices"]["short"].values()) == 60
    probs = jiyi.load(str(trained_run)).predict_proba([r["text"] for r in rows])
    y = np.array([["neg", "pos"].index(r["label"]) for r in rows])
    for value, scores in lang.items():
        mask = np.array([r["lang"] == value for r in rows])
        assert scores["accuracy"] == pytest.approx(
            skm.accuracy_score(y[mask], probs[mask].argmax(1))
        )
        assert scores["f1_macro"] == pytest.approx(
            skm.f1_score(y[mask], probs[mask].argmax(1), average="macro", zero_division=0)
        )
        assert set(scores["ci"]) >= {"accuracy", "f1_macro", "roc_auc"}
    gap = metrics["slice_gaps"]["lang"]["accuracy"]
    assert gap["small_included"]  # only en has 30 rows: every slice is compared
    assert gap["gap"] == pytest.approx(
        max(s["accuracy"] for s in lang.values()) - min(s["accuracy"] for s in lang.values())
    )
    assert metrics["slice_settings"]["resamples"] == 1000

    html = (out / "report.html").read_text()
    assert '<h2 id="slices">Slices</h2>' in html and "by lang" in html and "by short" in html
    assert "<td>fr</td>" in html and "small</span>" in html


def test_slice_by_numbers_in_jsonl(trained_run: Path, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    lines = [
        {"text": "a great lovely film", "label": "pos", "stars": 5},
        {"text": "a dull boring plot", "label": "neg", "stars": 1},
        {"text": "awful and weak", "label": "neg", "stars": 1},
        {"text": "the film", "label": "pos"},
    ]
    data.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = tmp_path / "eval"
    argv = ["evaluate", str(trained_run), "--data", str(data), "--output", str(out)]
    assert main([*argv, "--slice-by", "stars"]) == 0
    slices = json.loads((out / "metrics.json").read_text())["slices"]["stars"]
    assert {k: s["n"] for k, s in slices.items()} == {"(empty)": 1, "1": 2, "5": 1}


def test_a_missing_slice_column_names_column_file_and_columns(
    trained_run: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tiny_data_dir / "test.csv"
    argv = ["evaluate", str(trained_run), "--data", str(data), "--output", str(tmp_path / "e")]
    assert main([*argv, "--slice-by", "language"]) == 2
    err = capsys.readouterr().err
    assert '"language"' in err and str(data) in err and "'text', 'label'" in err
    assert "--slice-by" in err and "Traceback" not in err
    assert not (tmp_path / "e").exists()
