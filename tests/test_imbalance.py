"""Class imbalance: --class-weights balanced|FILE, --loss focal, the imbalance warning, and a
`jiyi train` run that records and reports them (jiyi.imbalance)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from conftest import make_texts, write_csv
from jiyi.cli import main
from jiyi.config import TrainConfig
from jiyi.errors import JiyiError
from jiyi.imbalance import (
    MAX_POS_WEIGHT,
    Objective,
    balanced_weights,
    focal_loss,
    imbalance_warning,
    read_weights_file,
    resolve_class_weights,
    training_objective,
)

LABELS = ["neg", "pos", "mixed"]


# --- balanced weights ------------------------------------------------------------------------


def test_balanced_weights_are_n_over_classes_times_count() -> None:
    targets = np.array([0] * 6 + [1] * 3 + [2] * 1)  # n 10, 3 classes
    # 10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1)
    np.testing.assert_allclose(
        balanced_weights(targets, 3, multilabel=False), [0.555556, 1.111111, 3.333333], rtol=1e-5
    )
    # the weighted count of every class is then the same: n / C
    np.testing.assert_allclose(balanced_weights(targets, 3, False) * [6, 3, 1], [10 / 3] * 3)


def test_a_class_absent_from_the_split_counts_as_one_example() -> None:
    np.testing.assert_allclose(balanced_weights(np.array([0, 0, 0, 0]), 2, False), [0.5, 2.0])


def test_multilabel_balanced_is_pos_weight_negatives_over_positives_clipped() -> None:
    y = np.zeros((500, 4), dtype=np.float32)
    y[:100, 0] = 1  # 400 / 100 = 4
    y[:250, 1] = 1  # 250 / 250 = 1
    y[:1, 2] = 1  # 499 / 1, clipped to MAX_POS_WEIGHT
    y[:, 3] = 1  # 0 / 500, clipped to 1 / MAX_POS_WEIGHT
    np.testing.assert_allclose(
        balanced_weights(y, 4, multilabel=True), [4.0, 1.0, MAX_POS_WEIGHT, 1 / MAX_POS_WEIGHT]
    )
    assert MAX_POS_WEIGHT == 100.0  # the documented clip ([0.01, 100], --help and docs/train.md)


# --- --class-weights FILE --------------------------------------------------------------------


def test_weights_file_csv_with_header_and_json(tmp_path: Path) -> None:
    csv_file = tmp_path / "w.csv"
    csv_file.write_text("label,weight\nmixed,4\nneg,1.5\npos,0.5\n")
    np.testing.assert_allclose(read_weights_file(str(csv_file), LABELS), [1.5, 0.5, 4.0])
    headerless = tmp_path / "h.csv"
    headerless.write_text("neg,2\npos,1\nmixed,3\n")
    np.testing.assert_allclose(read_weights_file(str(headerless), LABELS), [2.0, 1.0, 3.0])
    json_file = tmp_path / "w.json"
    json_file.write_text(json.dumps({"pos": 1, "neg": 2.5, "mixed": 7}))
    np.testing.assert_allclose(read_weights_file(str(json_file), LABELS), [2.5, 1.0, 7.0])
    targets = np.array([0, 1, 2])
    np.testing.assert_allclose(
        resolve_class_weights(str(json_file), LABELS, targets, False), [2.5, 1.0, 7.0]
    )
    np.testing.assert_allclose(resolve_class_weights("Balanced", LABELS, targets, False), [1, 1, 1])
    assert resolve_class_weights(None, LABELS, targets, False) is None


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("w.json", '{"neg": 1, "pos": 1, "mixed": 1, "nuetral": 2}', "not in the training data: 'nuetral'"),
        ("w.json", '{"neg": 1, "pos": 1}', "no weight for 'mixed'"),
        ("w.csv", "neg,1\npos,0\nmixed,1\n", "line 2: weight '0' of 'pos' must be > 0"),
        ("w.csv", "neg,-2\npos,1\nmixed,1\n", "line 1: weight '-2' of 'neg' must be > 0"),
        ("w.json", '{"neg": 1, "pos": "heavy", "mixed": 1}', "weight 'heavy' of 'pos' is not a number"),
        ("w.csv", "neg,1\npos,1\nneg,2\nmixed,1\n", "line 3: label 'neg' is given twice"),
        ("w.csv", "neg,1,extra\n", "line 1: expected 2 fields"),
        ("w.json", "[1, 2]", "expected a JSON object"),
        ("w.json", "{not json", "not valid JSON"),
    ],
)  # fmt: skip
def test_weights_file_errors_name_the_flag_and_the_fault(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(JiyiError) as e:
        read_weights_file(str(path), LABELS)
    assert str(e.value).startswith(f"--class-weights {path}") and message in str(e.value)


def test_a_missing_weights_file_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(JiyiError, match=r"no such file\. Give `balanced`"):
        read_weights_file(str(tmp_path / "nope.csv"), LABELS)


# --- focal loss ------------------------------------------------------------------------------


def test_focal_loss_at_gamma_0_is_cross_entropy_weighted_or_not() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 3, generator=g)
    targets = torch.tensor([0, 1, 2, 2, 1, 0, 2])
    weight = torch.tensor([0.5, 2.0, 3.0])
    ce = torch.nn.functional.cross_entropy
    torch.testing.assert_close(focal_loss(logits, targets, 0.0), ce(logits, targets))
    torch.testing.assert_close(
        focal_loss(logits, targets, 0.0, weight=weight), ce(logits, targets, weight=weight)
    )
    y = (torch.rand(7, 3, generator=g) > 0.5).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    torch.testing.assert_close(focal_loss(logits, y, 0.0, multilabel=True), bce(logits, y))
    torch.testing.assert_close(
        focal_loss(logits, y, 0.0, weight=weight, multilabel=True),
        bce(logits, y, pos_weight=weight),
    )


def test_focal_loss_at_gamma_2_by_hand() -> None:
    # easy: logits (2, 0), true class 0: p = e^2 / (e^2 + 1) = 0.880797, CE = 0.126928,
    # focal = (1 - 0.880797)^2 * 0.126928 = 0.0142094 * 0.126928 = 0.00180357
    # hard: logits (0, 2), true class 0: p = 0.119203, CE = 2.126928,
    # focal = 0.880797^2 * 2.126928 = 0.775803 * 2.126928 = 1.650079
    easy = focal_loss(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), 2.0)
    hard = focal_loss(torch.tensor([[0.0, 2.0]]), torch.tensor([0]), 2.0)
    assert easy.item() == pytest.approx(0.00180357, rel=1e-4)
    assert hard.item() == pytest.approx(1.650079, rel=1e-5)
    # the easy example counts 70 times less than under CE, the hard one 1.3 times less
    assert easy.item() / 0.126928 == pytest.approx(0.0142094, rel=1e-4)
    assert hard.item() / 2.126928 == pytest.approx(0.775803, rel=1e-5)
    both = focal_loss(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0]), 2.0)
    assert both.item() == pytest.approx((0.00180357 + 1.650079) / 2, rel=1e-5)
    # class weights average as torch's weighted CE does: (w0 * easy + w1 * hard) / (w0 + w1)
    weighted = focal_loss(
        torch.tensor([[2.0, 0.0], [2.0, 0.0]]),
        torch.tensor([0, 1]),
        2.0,
        weight=torch.tensor([1.0, 3.0]),
    )
    assert weighted.item() == pytest.approx((0.00180357 + 3 * 1.650079) / 4, rel=1e-5)


def test_multilabel_focal_loss_by_hand() -> None:
    # one row, two labels: logit 2 on a positive (p 0.880797) and logit 2 on a negative.
    # positive: pos_weight 3 * (1 - p)^2 * -log p = 3 * 0.0142094 * 0.126928 = 0.00541071
    # negative: p^2 * -log(1 - p) = 0.775803 * 2.126928 = 1.650079; mean over 2 entries
    loss = focal_loss(
        torch.tensor([[2.0, 2.0]]),
        torch.tensor([[1.0, 0.0]]),
        2.0,
        weight=torch.tensor([3.0, 1.0]),
        multilabel=True,
    )
    assert loss.item() == pytest.approx((0.00541071 + 1.650079) / 2, rel=1e-5)


def test_focal_loss_gradient_is_finite_on_a_certain_example() -> None:
    logits = torch.tensor([[200.0, -200.0]], requires_grad=True)  # p_true == 1.0 in float32
    for gamma in (0.5, 2.0):
        loss = focal_loss(logits, torch.tensor([0]), gamma)
        loss.backward()
        assert torch.isfinite(logits.grad).all()
        logits.grad = None


def test_objective_reports_and_records_its_settings() -> None:
    obj = Objective(
        ["neg", "pos"], False, loss="focal", gamma=2.0, weights=[5.0, 0.5], source="balanced"
    )
    assert obj.settings() == {
        "loss": "focal (gamma 2)",
        "class weights": "balanced, neg 5, pos 0.5",
    }
    assert obj.record() == {
        "loss": "focal",
        "focal_gamma": 2.0,
        "class_weights": {"neg": 5.0, "pos": 0.5},
        "class_weights_from": "balanced",
    }
    ml = Objective(["a", "b"], True, weights=[9.0, 1.0], source="w.csv")
    assert ml.settings() == {"loss": "cross-entropy", "class weights": "w.csv, pos_weight a 9, b 1"}
    assert ml.record()["pos_weight"] == {"a": 9.0, "b": 1.0}
    logits, y = torch.tensor([[1.0, -1.0]]), torch.tensor([[1.0, 0.0]])
    torch.testing.assert_close(
        ml(logits, y),
        torch.nn.functional.binary_cross_entropy_with_logits(
            logits, y, pos_weight=torch.tensor([9.0, 1.0])
        ),
    )  # fmt: skip


# --- the imbalance warning -------------------------------------------------------------------


def test_the_warning_appears_above_10_to_1_and_names_the_counts() -> None:
    above = imbalance_warning(["neg", "pos"], np.array([0] * 9 + [1] * 100))
    assert above is not None
    assert "'pos' has 100 examples, 'neg' 9 (11.1 to 1, above 10 to 1)" in above
    assert "--class-weights balanced" in above and "--loss focal" in above
    assert imbalance_warning(["neg", "pos"], np.array([0] * 10 + [1] * 100)) is None  # 10:1
    assert imbalance_warning(["neg", "pos"], np.array([0] * 50 + [1] * 100)) is None
    y = np.zeros((120, 2), dtype=np.float32)
    y[:110, 0], y[:5, 1] = 1, 1
    assert "'a' has 110 rows, 'b' 5 (22.0 to 1" in imbalance_warning(["a", "b"], y)
    absent = imbalance_warning(["a", "b", "c"], np.array([0] * 30 + [1] * 3))
    assert "'a' has 30 examples, 'c' 0 (none of it in the training split)" in absent


def config_like(**kw: object) -> SimpleNamespace:
    base = dict(task="classification", class_weights=None, loss="ce", focal_gamma=2.0, resume=False)
    return SimpleNamespace(**{**base, **kw})


def test_train_warns_only_without_the_flags(tmp_path: Path) -> None:
    said: list[str] = []
    targets = np.array([0] * 3 + [1] * 40)
    obj = training_objective(config_like(), ["neg", "pos"], targets, tmp_path, said.append)
    assert obj.weights is None and len(said) == 1 and "'pos' has 40 examples, 'neg' 3" in said[0]
    said.clear()
    obj = training_objective(
        config_like(class_weights="balanced"), ["neg", "pos"], targets, tmp_path, said.append
    )
    # 43 / (2 * 3), 43 / (2 * 40)
    np.testing.assert_allclose(obj.weights, [43 / 6, 43 / 80])
    assert said == ["Training loss: cross-entropy; class weights balanced, neg 7.17, pos 0.537."]


def test_label_text_is_not_console_markup(tmp_path: Path) -> None:
    said: list[str] = []
    labels = ["[bold]x", "y"]
    training_objective(config_like(), labels, np.array([0] + [1] * 11), tmp_path, said.append)
    assert "'\\[bold]x' 1" in said[0]  # rich shows it as written


def test_resume_keeps_the_weights_the_run_started_with(tmp_path: Path) -> None:
    start = {"event": "start", "class_weights": {"neg": 3.0, "pos": 1.0}}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(start) + "\n")
    config = config_like(class_weights=str(tmp_path / "gone.csv"), resume=True)
    obj = training_objective(config, ["neg", "pos"], np.array([0, 1]), tmp_path, lambda _m: None)
    assert obj.weights == [3.0, 1.0]  # the file is gone; the logged weights are used
    with pytest.raises(JiyiError, match="no such file"):  # a new run needs the file
        training_objective(
            config_like(class_weights=str(tmp_path / "gone.csv")),
            ["neg", "pos"],
            np.array([0, 1]),
            tmp_path,
            lambda _m: None,
        )


# --- the flags -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(task="ner", loss="focal"), "--loss applies to --task classification and multilabel, not ner"),
        (dict(task="qa", class_weights="balanced"), "--class-weights applies to --task classification"),
        (dict(focal_gamma=3.0), "--focal-gamma applies to --loss focal"),
        (dict(loss="focal", focal_gamma=-1.0), "--focal-gamma must be >= 0"),
        (dict(loss="hinge"), "--loss must be one of ce, focal"),
        (dict(class_weights=" "), "--class-weights: give `balanced`"),
    ],
)  # fmt: skip
def test_contradictory_flags_are_refused(kw: dict, message: str) -> None:
    with pytest.raises(JiyiError, match=message):
        TrainConfig(**kw)


def test_help_lists_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--loss {ce,focal}" in out and "--focal-gamma FOCAL_GAMMA" in out
    assert "--class-weights balanced|FILE" in out and "clipped to [0.01, 100]" in out


# --- end to end ------------------------------------------------------------------------------


def imbalanced_data(folder: Path) -> Path:
    """train.csv with 160 pos and 14 neg (11.4 to 1), balanced validation and test."""
    rows = make_texts(400, seed=11)
    pos = [r for r in rows if r[1] == "pos"]
    neg = [r for r in rows if r[1] == "neg"]
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "train.csv", pos[:160] + neg[:14])
    write_csv(folder / "validation.csv", pos[160:180] + neg[160:180])
    write_csv(folder / "test.csv", pos[180:200] + neg[180:200])
    return folder


TINY = ["--epochs", "1", "--batch-size", "16", "--lr", "3e-3", "--max-length", "32", "--seed", "0"]


def test_train_with_balanced_weights_and_focal_loss(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = imbalanced_data(tmp_path / "data")
    out = tmp_path / "run"
    argv = ["train", "--model", str(tiny_model_dir), "--train", str(data / "train.csv"),
            "--validation", str(data / "validation.csv"), "--test", str(data / "test.csv"),
            "--output", str(out), *TINY, "--class-weights", "balanced", "--loss", "focal"]  # fmt: skip
    assert main(argv) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "Training loss: focal (gamma 2); class weights balanced, neg 6.21, pos 0.544." in err
    assert "imbalanced" not in err  # the flags are given: no warning
    settings = yaml.safe_load((out / "config.yaml").read_text())
    assert (settings["loss"], settings["focal_gamma"], settings["class_weights"]) == (
        "focal",
        2.0,
        "balanced",
    )
    start = next(
        r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
        if r["event"] == "start"
    )  # fmt: skip
    assert start["loss"] == "focal" and start["focal_gamma"] == 2.0
    # 174 examples, 2 classes: neg 174 / (2 * 14), pos 174 / (2 * 160)
    assert start["class_weights"] == pytest.approx({"neg": 174 / 28, "pos": 174 / 320})
    html = (out / "eval" / "report.html").read_text()
    assert "<th>loss</th><td>focal (gamma 2)</td>" in html
    assert "<th>class weights</th><td>balanced, neg 6.21, pos 0.544</td>" in html


def test_train_warns_on_imbalanced_data_and_multilabel_takes_a_weights_file(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = imbalanced_data(tmp_path / "data")
    out = tmp_path / "plain"
    argv = ["train", "--model", str(tiny_model_dir), "--train", str(data / "train.csv"),
            "--validation", str(data / "validation.csv"), "--output", str(out), *TINY,
            "--max-steps", "2"]  # fmt: skip
    assert main(argv) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert (
        "--train is imbalanced: 'pos' has 160 examples, 'neg' 14 (11.4 to 1, above 10 to 1)" in err
    )
    # multilabel, pos_weight from a file, focal loss at gamma 1
    rows = [(t, json.dumps([label] + ["long"] * (len(t.split()) > 7))) for t, label in make_texts(120, 3)]  # fmt: skip
    write_csv(tmp_path / "ml.csv", rows)
    weights = tmp_path / "pos_weight.json"
    weights.write_text(json.dumps({"long": 2.0, "neg": 1.0, "pos": 1.0}))
    ml = tmp_path / "ml"
    argv = ["train", "--task", "multilabel", "--model", str(tiny_model_dir),
            "--train", str(tmp_path / "ml.csv"), "--output", str(ml), *TINY, "--max-steps", "2",
            "--class-weights", str(weights), "--loss", "focal", "--focal-gamma", "1"]  # fmt: skip
    assert main(argv) == 0
    start = json.loads((ml / "metrics.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["focal_gamma"] == 1.0
    assert start["pos_weight"] == {"long": 2.0, "neg": 1.0, "pos": 1.0}
    # a weights file that misses a label stops the run before it starts: exit 2, no folder
    weights.write_text(json.dumps({"long": 2.0, "neg": 1.0}))
    argv[argv.index(str(ml))] = str(tmp_path / "ml2")
    assert main(argv) == 2
    assert "no weight for 'pos'" in capsys.readouterr().err
    assert not (tmp_path / "ml2").exists()
