"""Calibrated probabilities (`jiyi.calibrate`, `jiyi train --calibration`, `jiyi calibrate`): the
fit recovers known temperatures, never changes a classifier's decision, is stored in the run and
applied by predict, evaluate, serve and the Python API; the report and metrics.json show it
before and after."""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TRAIN_FLAGS, make_texts, write_csv
from jiyi.calibrate import (
    T_BOUNDS,
    Calibration,
    fit,
    identity,
    logits_to_probs,
    probabilities,
    refit,
)
from jiyi.cli import main
from jiyi.errors import JiyiError
from jiyi.evaluate import (
    calibration_inputs,
    classification_metrics,
    expected_calibration_error,
    tune_thresholds,
)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def nll(z: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(softmax(z)[np.arange(len(y)), y]).mean())


def synthetic(t_true: float, n: int = 4000, c: int = 3, seed: int = 0):
    """Logits whose labels are drawn from softmax(z / t_true): T = t_true is the right answer."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 4, size=(n, c))
    p = softmax(z / t_true)
    y = np.array([rng.choice(c, p=row) for row in p])
    return z, y


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ---- the math ---------------------------------------------------------------------------------


@pytest.mark.parametrize("t_true", [0.6, 2.5])
def test_fit_recovers_a_known_temperature(t_true: float) -> None:
    z, y = synthetic(t_true)
    cal = fit(z, y, multilabel=False)
    assert cal.method == "temperature" and not cal.notes
    assert abs(cal.temperatures()[0] - t_true) / t_true < 0.08
    assert np.all(cal.bias == 0)
    assert fit(z, y, multilabel=False).scale.tolist() == cal.scale.tolist()  # deterministic


def test_fitted_data_gets_no_worse_and_argmax_is_unchanged() -> None:
    z, y = synthetic(3.0)  # the raw logits are over-confident
    cal = fit(z, y, multilabel=False)
    after = cal.apply(z)
    assert nll(after, y) < nll(z, y)
    before_ece = expected_calibration_error(*calibration_inputs(y, softmax(z), "classification"))
    after_ece = expected_calibration_error(*calibration_inputs(y, softmax(after), "classification"))
    assert after_ece < before_ece / 2
    assert np.array_equal(after.argmax(axis=1), z.argmax(axis=1))
    # even at the bounds of T, through the one logits -> probabilities function
    for t in T_BOUNDS:
        scaled = Calibration("temperature", False, np.full(3, 1 / t), np.zeros(3))
        p = logits_to_probs(torch.from_numpy(z.astype(np.float32)), False, scaled).numpy()
        assert np.array_equal(p.argmax(axis=1), z.argmax(axis=1))


def test_multilabel_fits_one_temperature_per_label() -> None:
    rng = np.random.default_rng(1)
    t_true = np.array([0.5, 1.0, 3.0])
    z = rng.normal(0, 3, size=(5000, 3))
    y = (rng.random((5000, 3)) < 1 / (1 + np.exp(-z / t_true))).astype(int)
    cal = fit(z, y, multilabel=True)
    assert np.allclose(cal.temperatures(), t_true, rtol=0.1)
    meta = cal.to_meta()
    assert meta["method"] == "temperature" and len(meta["temperature"]) == 3
    back = Calibration.from_meta({"task": "multilabel", "calibration": meta}, 3)
    assert back is not None and np.allclose(back.apply(z), cal.apply(z), atol=1e-4)


def test_vector_scaling_fits_a_scale_and_bias_per_class() -> None:
    z, y = synthetic(2.0)
    z = z + np.array([1.5, 0.0, -1.5])  # a class bias the temperature cannot remove
    temp = fit(z, y, multilabel=False)
    vec = fit(z, y, multilabel=False, method="vector")
    assert nll(vec.apply(z), y) < nll(temp.apply(z), y) < nll(z, y)
    assert vec.bias[0] < vec.bias[2]  # it takes the bias back out
    stored = {"task": "classification", "calibration": vec.to_meta()}
    back = Calibration.from_meta(stored, 3)
    assert back is not None and np.allclose(back.apply(z), vec.apply(z), atol=1e-4)


def test_degenerate_data_keeps_the_models_own_probabilities() -> None:
    z, y = synthetic(2.0, n=200)
    tiny = fit(z[:5], y[:5], multilabel=False)
    assert np.array_equal(tiny.scale, np.ones(3)) and "only 5 examples" in tiny.notes[0]
    one_class = fit(z, np.zeros(200, dtype=int), multilabel=False)
    assert np.array_equal(one_class.scale, np.ones(3)) and "one class" in one_class.notes[0]
    # confident and half wrong: T runs to its upper bound and says so
    z2 = np.array([[4.0, 0.0], [0.0, 4.0]] * 10)
    bound = fit(z2, np.array([0, 0, 1, 1] * 5), multilabel=False)
    assert bound.temperatures()[0] == pytest.approx(T_BOUNDS[1])
    assert any("bound" in note for note in bound.notes)
    # a label that is always 0 keeps T = 1; the others are fitted
    ym = np.stack([(z[:, 0] > 0).astype(int), np.zeros(200, dtype=int)], axis=1)
    ml = fit(z[:, :2], ym, multilabel=True)
    assert ml.scale[1] == 1.0 and ml.scale[0] != 1.0 and "one class" in ml.notes[0]
    assert Calibration.from_meta({}, 3) is None
    assert Calibration.from_meta({"calibration": {"method": "none"}}, 3) is None
    with pytest.raises(ValueError, match="method"):
        fit(z, y, multilabel=False, method="none")


def test_refit_retunes_multilabel_thresholds_and_none_restores_them() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(0, 4, size=(400, 2))
    y = (rng.random((400, 2)) < 1 / (1 + np.exp(-z / 3))).astype(int)
    raw = np.asarray(tune_thresholds(y, 1 / (1 + np.exp(-z))))
    meta = {"task": "multilabel", "thresholds": raw.tolist()}
    cal, new = refit(z, y, ["a", "b"], meta, method="temperature", data="val.csv")
    assert cal is not None and new["calibration"]["n"] == 400
    calibrated = probabilities(z, True, cal)
    assert new["thresholds"] == pytest.approx(tune_thresholds(y, calibrated).tolist())
    assert new["calibration"]["thresholds_uncalibrated"] == raw.tolist()
    # the same decisions on the data they were tuned on
    raw_probs = probabilities(z, True, None)
    assert np.array_equal(calibrated >= np.asarray(new["thresholds"]), raw_probs >= raw)
    assert new["calibration"]["log_loss_after"] < new["calibration"]["log_loss_before"]
    _, none = refit(z, y, ["a", "b"], new, method="none", data="val.csv")
    assert "calibration" not in none and none["thresholds"] == raw.tolist()


# ---- a trained run ----------------------------------------------------------------------------


def test_training_calibrates_on_validation_and_stores_it(
    trained_run: Path, tiny_data_dir: Path
) -> None:
    meta = json.loads((trained_run / "model" / "jiyi.json").read_text())
    record = meta["calibration"]
    assert record["method"] == "temperature" and record["n"] == 60
    assert record["data"] == str(tiny_data_dir / "validation.csv")
    assert T_BOUNDS[0] <= record["temperature"] <= T_BOUNDS[1]
    assert record["log_loss_after"] <= record["log_loss_before"] + 1e-9
    assert record["accuracy_after"] == record["accuracy_before"]
    # the numbers are those of the stored T on the validation file
    import jiyi

    clf = jiyi.load(trained_run)
    val = rows_of(tiny_data_dir / "validation.csv")
    logits = clf.logits([r["text"] for r in val])
    y = np.array([clf.labels.index(r["label"]) for r in val])
    by_hand = softmax(logits.astype(np.float64) / record["temperature"])
    m = classification_metrics(y, by_hand, clf.labels)
    assert record["log_loss_after"] == pytest.approx(m["log_loss"], abs=1e-5)
    assert record["ece_after"] == pytest.approx(m["ece"], abs=1e-5)
    # test metrics: calibrated, with the before/after block
    metrics = json.loads((trained_run / "eval" / "metrics.json").read_text())
    block = metrics["calibration"]
    assert block["method"] == "temperature" and block["fitted_on"]["n"] == 60
    assert block["after"]["log_loss"] == metrics["log_loss"]
    assert block["after"]["accuracy"] == block["before"]["accuracy"] == metrics["accuracy"]
    html = (trained_run / "eval" / "report.html").read_text()
    assert 'id="calibration"' in html and "before calibration" in html
    card = (trained_run / "README.md").read_text()
    assert "## Calibration" in card and "temperature" in card
    assert f"the model's own gave ECE {block['before']['ece']:.4f}" in card


def test_calibration_reuses_the_best_steps_validation_logits(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validation goes through the model once per evaluation, never again to calibrate; each
    evaluation says how long the user had waited (elapsed_s)."""
    import jiyi.train
    from conftest import train_argv

    passes: list[int] = []
    real = jiyi.train.split_outputs

    def counted(model, split, *args, **kwargs):
        passes.append(len(split.examples))
        return real(model, split, *args, **kwargs)

    monkeypatch.setattr(jiyi.train, "split_outputs", counted)
    out = tmp_path / "run"
    assert main(train_argv(tiny_model_dir, tiny_data_dir, out)) == 0
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in events if e["event"] == "eval"]
    assert len(evals) >= 2
    assert passes == [60] * len(evals) + [60]  # the evaluations, then test; no calibration pass
    elapsed = [e["elapsed_s"] for e in evals]
    assert 0 < elapsed[0] <= elapsed[-1] and elapsed == sorted(elapsed)
    assert json.loads((out / "model" / "jiyi.json").read_text())["calibration"]["n"] == 60


def test_predict_evaluate_serve_and_load_use_the_stored_calibration(
    trained_run: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import jiyi
    from jiyi.serve.services import load_service

    clf = jiyi.load(trained_run)
    t = json.loads((trained_run / "model" / "jiyi.json").read_text())["calibration"]["temperature"]
    assert t != pytest.approx(1.0)  # else this test would not see the difference
    test = rows_of(tiny_data_dir / "test.csv")
    texts = [r["text"] for r in test]
    logits = clf.logits(texts).astype(np.float64)
    by_hand = softmax(logits / t)
    proba = clf.predict_proba(texts)
    assert np.allclose(proba, by_hand, atol=1e-5)
    assert not np.allclose(proba, softmax(logits), atol=1e-3)
    assert np.array_equal(proba.argmax(axis=1), logits.argmax(axis=1))
    # jiyi predict (CLI)
    (tmp_path / "in.txt").write_text("\n".join(texts[:5]) + "\n")
    capsys.readouterr()
    assert main(["predict", str(trained_run), "--input", str(tmp_path / "in.txt")]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    for row, p in zip(lines, by_hand[:5], strict=True):
        assert [row["probabilities"][lb] for lb in clf.labels] == pytest.approx(p, abs=1e-5)
    # jiyi serve's service
    served = load_service(trained_run).predict(texts[:5], 0)
    for row, p in zip(served, by_hand[:5], strict=True):
        assert [row["probabilities"][lb] for lb in clf.labels] == pytest.approx(p, abs=1e-5)
    # jiyi evaluate: calibrated metrics, before/after block, two reliability curves
    out = tmp_path / "eval"
    assert main(["evaluate", str(trained_run), "--data", str(tiny_data_dir / "test.csv"),
                 "--output", str(out)]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    y = np.array([clf.labels.index(r["label"]) for r in test])
    assert metrics["log_loss"] == pytest.approx(
        classification_metrics(y, by_hand, clf.labels)["log_loss"], abs=1e-5
    )
    assert metrics["calibration"]["before"]["log_loss"] == pytest.approx(
        classification_metrics(y, softmax(logits), clf.labels)["log_loss"], abs=1e-5
    )
    assert "calibrated (temperature)" in capsys.readouterr().err  # the console caption


def test_a_run_without_calibration_predicts_as_before(
    trained_run: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    """An old run (no `calibration` in jiyi.json) gives the model's own softmax, computed here
    without jiyi's prediction code."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import jiyi

    run = Path(shutil.copytree(trained_run, tmp_path / "old"))
    meta_file = run / "model" / "jiyi.json"
    meta = json.loads(meta_file.read_text())
    del meta["calibration"]
    meta_file.write_text(json.dumps(meta))
    texts = [r["text"] for r in rows_of(tiny_data_dir / "test.csv")][:8]
    clf = jiyi.load(run)
    assert clf.calibration is None
    tok = AutoTokenizer.from_pretrained(run / "model")
    model = AutoModelForSequenceClassification.from_pretrained(run / "model").eval()
    with torch.no_grad():
        logits = model(**tok(texts, padding=True, return_tensors="pt")).logits
    assert np.allclose(clf.predict_proba(texts), torch.softmax(logits, -1).numpy(), atol=1e-5)


def test_calibration_none_and_refused_settings(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import train_argv
    from jiyi.config import TrainConfig

    out = tmp_path / "none"
    assert main(train_argv(tiny_model_dir, tiny_data_dir, out, "--calibration", "none")) == 0
    meta = json.loads((out / "model" / "jiyi.json").read_text())
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert "calibration" not in meta and "calibration" not in metrics
    import jiyi

    clf = jiyi.load(out)
    texts = [r["text"] for r in rows_of(tiny_data_dir / "test.csv")]
    assert np.array_equal(clf.predict_proba(texts), clf.probabilities(clf.logits(texts)))
    assert clf.calibration is None
    with pytest.raises(JiyiError, match="--calibration applies to --task classification and "
                                        "multilabel, not ner"):  # fmt: skip
        TrainConfig(task="ner", calibration="temperature")
    with pytest.raises(JiyiError, match="--calibration must be one of"):
        TrainConfig(calibration="isotonic")
    capsys.readouterr()
    assert main(["train", "--train", "x.csv", "--output", "o", "--calibration", "platt"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_calibrate_verb_end_to_end(
    trained_run: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import jiyi

    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    val = str(tiny_data_dir / "validation.csv")
    capsys.readouterr()
    assert main(["calibrate", str(run), "--data", val, "--method", "vector"]) == 0
    out = capsys.readouterr()
    record = json.loads(out.out)
    assert record["method"] == "vector" and len(record["scale"]) == 2 and record["n"] == 60
    assert "ECE" in out.err and "log loss" in out.err
    meta = json.loads((run / "model" / "jiyi.json").read_text())
    assert meta["calibration"] == record and meta["max_length"] == 32  # the rest kept
    assert "vector" in (run / "README.md").read_text()  # the card was rewritten
    clf = jiyi.load(run)
    texts = [r["text"] for r in rows_of(tiny_data_dir / "test.csv")][:6]
    z = clf.logits(texts).astype(np.float64)
    by_hand = softmax(z * np.array(record["scale"]) + np.array(record["bias"]))
    assert np.allclose(clf.predict_proba(texts), by_hand, atol=1e-5)
    # back to temperature: the same T training stored (same data, deterministic fit)
    assert main(["calibrate", str(run), "--data", val]) == 0
    first = json.loads((trained_run / "model" / "jiyi.json").read_text())["calibration"]
    again = json.loads(capsys.readouterr().out)
    assert again["temperature"] == pytest.approx(first["temperature"], rel=1e-4)
    # none: the model's own probabilities
    assert main(["calibrate", str(run / "model"), "--data", val, "--method", "none"]) == 0
    assert "calibration" not in json.loads((run / "model" / "jiyi.json").read_text())
    assert np.allclose(jiyi.load(run).predict_proba(texts), softmax(z), atol=1e-5)


def test_calibrate_verb_errors(
    trained_run: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    val = str(tiny_data_dir / "validation.csv")

    def error(*argv: str) -> str:
        capsys.readouterr()
        assert main(["calibrate", *argv]) == 2
        return capsys.readouterr().err

    assert "no such folder" in error(str(tmp_path / "nope"), "--data", val)
    ner = Path(shutil.copytree(trained_run / "model", tmp_path / "ner" / "model"))
    meta = json.loads((ner / "jiyi.json").read_text())
    (ner / "jiyi.json").write_text(json.dumps({**meta, "task": "ner"}))
    assert "applies to classification and multilabel runs, not ner" in error(
        str(ner), "--data", val
    )
    (tmp_path / "unlabelled.csv").write_text("text\na good film\na bad film\n")
    assert "label" in error(str(trained_run), "--data", str(tmp_path / "unlabelled.csv"))
    write_csv(tmp_path / "other.csv", [("a good film", "pos"), ("a dull film", "meh")])
    msg = error(str(trained_run), "--data", str(tmp_path / "other.csv"))
    assert "'meh' is not one the model knows" in msg and "line 3" in msg
    assert "--data" in error(str(trained_run), "--data", str(tmp_path / "missing.csv"))
    # nothing was written to the shared run by the refusals
    assert json.loads((trained_run / "model" / "jiyi.json").read_text())["calibration"]


def test_multilabel_run_gets_per_label_temperatures_and_retuned_thresholds(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import jiyi

    rng = random.Random(0)
    rows = []
    for text, label in make_texts(300, seed=5):
        tags = [label] + (["long"] if len(text.split()) > 7 else [])
        rng.shuffle(tags)
        rows.append((text, json.dumps(tags)))
    write_csv(tmp_path / "train.csv", rows[:200])
    write_csv(tmp_path / "validation.csv", rows[200:260])
    write_csv(tmp_path / "test.csv", rows[260:])
    out = tmp_path / "ml"
    assert main(["train", "--model", str(tiny_model_dir), "--task", "multilabel",
                 "--train", str(tmp_path / "train.csv"), "--validation",
                 str(tmp_path / "validation.csv"), "--test", str(tmp_path / "test.csv"),
                 "--output", str(out), *TRAIN_FLAGS]) == 0  # fmt: skip
    meta = json.loads((out / "model" / "jiyi.json").read_text())
    record = meta["calibration"]
    assert record["method"] == "temperature" and len(record["temperature"]) == 3
    clf = jiyi.load(out)
    val = rows_of(tmp_path / "validation.csv")
    z = clf.logits([r["text"] for r in val]).astype(np.float64)
    y = np.array([[int(lb in json.loads(r["label"])) for lb in clf.labels] for r in val])
    calibrated = 1 / (1 + np.exp(-z / np.array(record["temperature"])))
    assert meta["thresholds"] == pytest.approx(tune_thresholds(y, calibrated).tolist(), abs=1e-5)
    raw = 1 / (1 + np.exp(-z))
    same = (calibrated >= np.array(meta["thresholds"])) == (
        raw >= np.array(record["thresholds_uncalibrated"])
    )
    assert same.mean() > 0.99  # the decisions stay right (ties at float precision aside)
    assert np.allclose(clf.predict_proba([r["text"] for r in val]), calibrated, atol=1e-5)
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["calibration"]["after"]["log_loss"] == metrics["log_loss"]
    assert metrics["thresholds"] == pytest.approx(meta["thresholds"])


def test_identity_changes_nothing() -> None:
    z, _ = synthetic(1.0, n=50)
    assert np.array_equal(identity(3, False).apply(z), z.astype(np.float32))
