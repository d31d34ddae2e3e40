"""The compression report (jiyi.compress.report) measures a model as `jiyi predict` uses it: with
the run's calibration, so a calibration that moves decisions moves the report's too."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from conftest import make_texts
from jiyi.compress.report import measure
from jiyi.predict import load


def test_the_report_measures_the_calibrated_predictions(trained_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(trained_run / "model", folder)
    texts = [t for t, _ in make_texts(40, seed=5)]
    raw = load(folder).logits(texts)  # (N, 2)
    # a vector scaling whose bias sits at the upper quartile of the logit margins: the texts
    # whose margins lie between 0 and it change their decisions (the median, used before, moved
    # none when the tiny model separated the two classes exactly)
    margin = float(np.quantile(raw[:, 1] - raw[:, 0], 0.75))
    meta = json.loads((folder / "jiyi.json").read_text())
    meta["calibration"] = {"method": "vector", "scale": [1.0, 1.0], "bias": [margin, 0.0]}
    (folder / "jiyi.json").write_text(json.dumps(meta))

    clf = load(folder)
    given = clf.predict_proba(texts).argmax(axis=1)
    assert (given != raw.argmax(axis=1)).any()  # the calibration moves decisions
    gold = given.tolist()
    result = measure("calibrated", folder, texts, gold, threads=1)
    assert result["predictions"] == gold
    assert result["accuracy"] == 1.0
