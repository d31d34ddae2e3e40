"""jiyi.report: the exact files of an eval directory and what each one holds."""

import json

import numpy as np
import pytest
from rich.console import Console

from jiyi.evaluate import classification_metrics, multilabel_metrics
from jiyi.report import (
    confusion_matrix_figure,
    metrics_table,
    misclassified_rows,
    roc_figure,
    write_eval_dir,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LABELS = ["neg", "neutral", "pos"]
EVIL = "<script>alert('x')</script> & more"
# fmt: off
Y = np.array([0, 1, 2, 2, 1, 0, 2, 1])
PROBS = np.array([
    [0.7, 0.2, 0.1],    # right
    [0.1, 0.5, 0.4],    # right
    [0.2, 0.2, 0.6],    # right
    [0.3, 0.4, 0.3],    # wrong: pos -> neutral at 0.4
    [0.6, 0.3, 0.1],    # wrong: neutral -> neg at 0.6
    [0.5, 0.25, 0.25],  # right
    [0.1, 0.1, 0.8],    # right
    [0.05, 0.15, 0.8],  # wrong: neutral -> pos at 0.8
])
# fmt: on
TEXTS = ["good", "fine", "great", EVIL, "meh", "awful", "superb", "ok I guess"]


@pytest.fixture(scope="module")
def classification_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "eval"
    metrics = classification_metrics(Y, PROBS, LABELS)
    paths = write_eval_dir(
        out,
        metrics=metrics,
        y_true=Y,
        probs=PROBS,
        labels=LABELS,
        texts=TEXTS,
        title="tiny <run>",
        extra={"model": "tiny-bert", "learning_rate": 3e-5, "seed": 13},
    )
    return out, paths, metrics


def test_writes_exactly_these_files(classification_dir):
    out, paths, _ = classification_dir
    expected = {
        "metrics.json",
        "confusion_matrix.png",
        "roc_curve.png",
        "reliability.png",
        "report.html",
        "errors.jsonl",
    }
    assert {p.name for p in out.iterdir()} == expected  # no temporary files left behind
    assert set(paths) == expected
    assert all(paths[name] == out / name for name in expected)


def test_metrics_json_round_trips(classification_dir):
    out, _, metrics = classification_dir
    assert json.loads((out / "metrics.json").read_text()) == metrics


def test_pngs_are_pngs(classification_dir):
    out, _, _ = classification_dir
    for name in ("confusion_matrix.png", "roc_curve.png", "reliability.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name


def test_errors_jsonl_holds_exactly_the_mistakes_most_confident_first(classification_dir):
    out, _, _ = classification_dir
    rows = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == [7, 4, 3]
    assert [r["confidence"] for r in rows] == [0.8, 0.6, 0.4]
    assert rows[0] == {
        "index": 7,
        "text": "ok I guess",
        "label": "neutral",
        "predicted": "pos",
        "confidence": 0.8,
        "probabilities": {"neg": 0.05, "neutral": 0.15, "pos": 0.8},
    }
    assert rows[2]["text"] == EVIL  # raw text in JSON, escaping is the HTML's business
    assert {r["index"] for r in rows} == set(np.flatnonzero(PROBS.argmax(1) != Y).tolist())


def test_report_html_is_self_contained_and_escaped(classification_dir):
    out, _, metrics = classification_dir
    html = (out / "report.html").read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more" in html
    assert "tiny &lt;run&gt;" in html
    assert html.count('src="data:image/png;base64,') == 3
    assert "http://" not in html and "https://" not in html
    assert '<table class="per-class">' in html
    for label in LABELS:
        assert f"<td>{label}</td>" in html
    assert f"{metrics['f1_macro']:.4f}" in html
    assert "<th>learning_rate</th><td>3e-05</td>" in html and "tiny-bert" in html
    assert "ok I guess" in html  # the confident mistakes are listed


def test_multilabel_dir(tmp_path):
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, 0]])
    probs = np.array(
        [[0.9, 0.2, 0.1], [0.6, 0.4, 0.3], [0.2, 0.8, 0.7], [0.1, 0.3, 0.2], [0.45, 0.1, 0.1]]
    )
    labels = ["x", "y", "z"]
    metrics = multilabel_metrics(y, probs, labels)
    paths = write_eval_dir(
        tmp_path,
        metrics=metrics,
        y_true=y,
        probs=probs,
        labels=labels,
        texts=[f"t{i}" for i in range(5)],
        task="multilabel",
    )
    expected = {"metrics.json", "roc_curve.png", "reliability.png", "report.html", "errors.jsonl"}
    assert {p.name for p in tmp_path.iterdir()} == set(paths) == expected
    rows = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    # row 2: FP z at 0.7; row 1: FN y at 1 - 0.4; row 4: FN x at 1 - 0.45
    assert [r["index"] for r in rows] == [2, 1, 4]
    assert [r["confidence"] for r in rows] == [0.7, 0.6, 0.55]
    assert rows[0]["label"] == ["y"] and rows[0]["predicted"] == ["y", "z"]
    assert rows[1]["label"] == ["x", "y"] and rows[1]["predicted"] == ["x"]
    assert rows[2]["label"] == ["x"] and rows[2]["predicted"] == []
    html = (tmp_path / "report.html").read_text()
    assert "hamming_loss" in html and "<td>z</td>" in html

    # thresholds come from metrics["thresholds"] unless given: at 0.4 for x, row 4 is right
    tuned = multilabel_metrics(y, probs, labels, np.array([0.4, 0.5, 0.75]))
    assert [
        r["index"]
        for r in misclassified_rows(y, probs, labels, ["t"] * 5, "multilabel", tuned["thresholds"])
    ] == [1]
    write_eval_dir(
        tmp_path,
        metrics=tuned,
        y_true=y,
        probs=probs,
        labels=labels,
        texts=["t"] * 5,
        task="multilabel",
    )
    lines = (tmp_path / "errors.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == [1]


def test_binary_single_class_and_no_mistakes(tmp_path):
    y = np.array([1, 1, 1])
    probs = np.array([[0.2, 0.8], [0.3, 0.7], [0.1, 0.9]])
    metrics = classification_metrics(y, probs, ["neg", "pos"])
    assert metrics["roc_auc"] is None
    write_eval_dir(
        tmp_path, metrics=metrics, y_true=y, probs=probs, labels=["neg", "pos"], texts=list("abc")
    )
    assert (tmp_path / "errors.jsonl").read_text() == ""
    assert json.loads((tmp_path / "metrics.json").read_text())["roc_auc"] is None
    assert (tmp_path / "roc_curve.png").read_bytes()[:8] == PNG_MAGIC
    assert "No mistakes." in (tmp_path / "report.html").read_text()


def test_confusion_matrix_cells_are_annotated_only_for_few_classes():
    few = confusion_matrix_figure(Y, PROBS, LABELS)
    assert sorted(t.get_text() for t in few.axes[0].texts) == sorted(
        str(v) for row in classification_metrics(Y, PROBS, LABELS)["confusion_matrix"] for v in row
    )
    rng = np.random.default_rng(0)
    y = rng.integers(0, 50, 200)
    many = confusion_matrix_figure(y, rng.random((200, 50)), [f"label_{i}" for i in range(50)])
    ax = many.axes[0]
    assert len(ax.texts) == 0
    assert [t.get_text() for t in ax.get_yticklabels()][:2] == ["label_0", "label_1"]
    assert ax.get_xlabel() == "predicted label" and ax.get_ylabel() == "true label"


def test_metrics_table_lists_classes_and_headline():
    metrics = classification_metrics(Y, PROBS, LABELS)
    console = Console(record=True, width=120)
    console.print(metrics_table(metrics, title="validation"))
    text = console.export_text()
    for word in ("validation", *LABELS, "macro avg", "weighted avg", "accuracy", "roc_auc"):
        assert word in text
    assert f"{metrics['f1_macro']:.4f}" in text


def test_unknown_task_and_length_mismatch_are_errors(tmp_path):
    kwargs = dict(metrics={}, y_true=Y, probs=PROBS, labels=LABELS)
    with pytest.raises(ValueError, match="unknown task"):
        write_eval_dir(tmp_path, **kwargs, texts=TEXTS, task="ner")
    with pytest.raises(ValueError, match="texts"):
        write_eval_dir(tmp_path, **kwargs, texts=TEXTS[:2])
    assert list(tmp_path.iterdir()) == []


def test_roc_figure_curves():
    rng = np.random.default_rng(0)
    y = np.arange(120) % 12
    probs = rng.dirichlet(np.ones(12), 120)
    labels = [f"c{i}" for i in range(12)]
    ax = roc_figure(y, probs, labels, "classification").axes[0]
    names = [line.get_label() for line in ax.get_lines()[1:]]  # [0] is the diagonal
    assert len(names) == 11  # the 10 classes with most support, then the macro curve
    roc_auc = classification_metrics(y, probs, labels)["roc_auc"]
    assert names[-1] == f"macro (AUC = {roc_auc:.3f})"
    assert "10 of 12" in ax.get_title()
    binary = roc_figure(Y == 2, PROBS[:, :2], ["a", "b"], "classification").axes[0]
    assert len(binary.get_lines()) == 2
    micro = roc_figure(np.eye(3)[Y], PROBS, LABELS, "multilabel").axes[0]
    assert micro.get_lines()[1].get_label().startswith("micro (AUC = ")


def test_figure_png_with_chinese_labels_warns_once_not_per_glyph(caplog, recwarn) -> None:
    """Chinese tick labels: a CJK font when one is installed; otherwise one jiyi warning naming
    the package to install, never matplotlib's warning per missing glyph."""
    import logging

    from matplotlib.figure import Figure

    from jiyi import render

    fig = Figure(figsize=(2, 2))
    ax = fig.add_subplot()
    ax.set_xticks([0, 1], ["质量", "物流"])
    caplog.set_level(logging.WARNING, logger="jiyi")
    render.warn_no_cjk_font.cache_clear()
    png = render.figure_png(fig)
    assert png.startswith(b"\x89PNG")
    assert not [w for w in recwarn if "missing from font" in str(w.message)]
    notes = [r.message for r in caplog.records if "CJK font" in r.message]
    assert len(notes) == (0 if render.installed_cjk_fonts() else 1)
    render.figure_png(fig)  # a second figure: no second note
    assert len([r for r in caplog.records if "CJK font" in r.message]) == len(notes)
