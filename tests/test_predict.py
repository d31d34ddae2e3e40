"""`jiyi predict` / `jiyi evaluate` / `jiyi.load`: order kept, numbers match scikit-learn."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import jiyi
from conftest import make_texts
from jiyi.cli import main


def test_predict_keeps_input_order_across_length_batches(trained_run: Path) -> None:
    clf = jiyi.load(str(trained_run), batch_size=4)
    texts = [t for t, _ in make_texts(37, seed=9)]
    texts[5] = " ".join(["film"] * 50)  # longer than max_length: cut, still in place
    batched = clf.predict_proba(texts)
    one_by_one = np.concatenate([clf.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    clf.max_batch_tokens = 40  # forward passes cut by padded tokens too (jiyi serve)
    np.testing.assert_allclose(clf.predict_proba(texts), batched, atol=1e-5)
    rows = clf.predict(texts)
    assert [r["label"] for r in rows] == [clf.labels[i] for i in batched.argmax(1)]
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in rows)


def test_predict_cli_file_and_stdin(
    trained_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "in.txt").write_text("the film was great\n\nawful boring plot\n")
    out = tmp_path / "out.jsonl"
    assert (
        main(
            ["predict", str(trained_run), "--input", str(tmp_path / "in.txt"), "--output", str(out)]
        )
        == 0
    )
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["the film was great", "awful boring plot"]
    assert {"label", "score", "probabilities"} <= set(rows[0])
    assert [r["label"] for r in rows] == ["pos", "neg"]
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"the film was great\n")))
    capsys.readouterr()
    assert main(["predict", str(trained_run)]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == "pos"


def test_evaluate_matches_scikit_learn(
    trained_run: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                str(trained_run),
                "--data",
                str(tiny_data_dir / "test.csv"),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    with open(tiny_data_dir / "test.csv") as f:
        rows = list(csv.DictReader(f))
    probs = jiyi.load(str(trained_run)).predict_proba([r["text"] for r in rows])
    y = np.array([["neg", "pos"].index(r["label"]) for r in rows])
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y, probs.argmax(1)))
    assert metrics["f1_macro"] == pytest.approx(f1_score(y, probs.argmax(1), average="macro"))
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(y, probs[:, 1]))
    assert metrics["n"] == len(rows)
    assert {p.name for p in out.iterdir()} == {
        "metrics.json",
        "report.html",
        "errors.jsonl",
        "confusion_matrix.png",
        "roc_curve.png",
        "reliability.png",
    }


def test_evaluate_rejects_labels_the_model_does_not_know(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "d.csv").write_text("text,label\ngood film,pos\nok film,meh\n")
    assert (
        main(
            [
                "evaluate",
                str(trained_run),
                "--data",
                str(tmp_path / "d.csv"),
                "--output",
                str(tmp_path / "e"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "line 3" in err and "'meh'" in err


CHROMIUM = Path("/usr/bin/chromium")


def test_report_html_is_self_contained(trained_run: Path) -> None:
    html = (trained_run / "eval" / "report.html").read_text()
    assert "http://" not in html and "https://" not in html  # no CDN: opens offline
    assert html.count("data:image/png;base64,") == 3


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_report_html_renders_in_headless_chromium(trained_run: Path, tmp_path: Path) -> None:
    import subprocess

    from PIL import Image

    shot = tmp_path / "report.png"
    subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
         "--window-size=1100,1500", (trained_run / "eval" / "report.html").as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    image = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert image.shape[:2] == (1500, 1100)
    assert image.std() > 10  # not a blank page
    assert len({tuple(c) for c in image.reshape(-1, 3)[::97]}) > 20  # tables and plots drew
