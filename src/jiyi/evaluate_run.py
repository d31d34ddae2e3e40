"""`jiyi evaluate RUN_DIR --data FILE [--slice-by COLUMN]`: a saved model on a labelled file ->
eval/ folder; with --slice-by, every metric per value of COLUMN too (`slices`, `slice_gaps`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.data.readers import read_examples
from jiyi.errors import JiyiError
from jiyi.evaluate import (
    BOOTSTRAP_RESAMPLES,
    SMALL_SLICE,
    classification_metrics,
    multilabel_metrics,
    slice_metrics,
)
from jiyi.predict import Classifier, load
from jiyi.prepare import targets_for


def evaluate_run(
    run_dir: str | Path,
    data: str,
    *,
    output: str | Path | None = None,
    on_bad_rows: str = "error",
    text_column: str | None = None,
    label_column: str | None = None,
    batch_size: int = 64,
    slice_by: list[str] | None = None,
) -> tuple[dict[str, Any], Path]:
    """Evaluate the model of `run_dir` on `data`; write metrics.json, plots, report.html,
    errors.jsonl into `output` (default RUN_DIR/eval). Returns (metrics, output folder).

    slice_by: columns of `data`; metrics gets `slices` {column: {value: metrics}} and
    `slice_gaps` {column: {metric: best vs worst slice}} (see jiyi.evaluate.slice_metrics)."""
    from jiyi.io import output_folder
    from jiyi.report import write_eval_dir

    run_dir = Path(run_dir)
    default = (run_dir if (run_dir / "model").is_dir() else run_dir.parent) / "eval"
    out_dir = output_folder(output) if output else default  # checked before any work
    clf = load(run_dir, batch_size=batch_size)
    task = "multilabel" if clf.multilabel else "classification"
    result, texts, pairs, y = read_labelled(
        clf,
        data,
        text_column=text_column,
        label_column=label_column,
        on_bad_rows=on_bad_rows,
        extra_columns={column: "--slice-by" for column in slice_by or ()},
    )
    logits = clf.logits(texts, pairs)
    probs = clf.probabilities(logits)  # calibrated when the run stores a calibration
    if clf.multilabel:
        metrics = multilabel_metrics(y, probs, clf.labels, np.asarray(clf.thresholds))
    else:
        metrics = classification_metrics(y, probs, clf.labels)
    raw_probs = None
    if clf.calibration is not None:
        from jiyi.calibrate import calibration_block

        raw_probs = clf.probabilities(logits, calibrated=False)
        metrics["calibration"] = calibration_block(
            clf.meta["calibration"], y, raw_probs, metrics, clf.labels, clf.multilabel
        )
    if result.skipped:
        metrics["skipped_rows"] = len(result.skipped)
    if slice_by:
        metrics["slices"], metrics["slice_gaps"] = {}, {}
        for column in dict.fromkeys(slice_by):
            groups = [_slice_name(ex.extra[column]) for ex in result.examples]  # type: ignore[index]
            metrics["slices"][column], metrics["slice_gaps"][column] = slice_metrics(
                y, probs, clf.labels, groups, task=task, thresholds=np.asarray(clf.thresholds)
            )
        metrics["slice_settings"] = {
            "confidence": 0.95,
            "accuracy_interval": "wilson",
            "other_intervals": "bootstrap percentile",
            "resamples": BOOTSTRAP_RESAMPLES,
            "seed": 0,
            "small_below": SMALL_SLICE,
        }
    write_eval_dir(
        out_dir,
        metrics=metrics,
        y_true=y,
        probs=probs,
        labels=clf.labels,
        texts=texts,
        task=task,
        thresholds=np.asarray(clf.thresholds) if clf.multilabel else None,
        title=f"jiyi evaluation: {data}",
        extra={"model": str(clf.model_dir), "data": str(data)},
        uncalibrated_probs=raw_probs,
    )
    return metrics, out_dir


def read_labelled(
    clf: Classifier,
    data: str,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    on_bad_rows: str = "error",
    extra_columns: dict[str, str] | None = None,
) -> tuple[Any, list[str], list[str] | None, np.ndarray]:
    """A labelled file for `clf` (the run's columns unless told otherwise) -> (the reader's
    result, texts, pairs or None, targets); a label the model does not know is a JiyiError
    naming the line."""
    task = "multilabel" if clf.multilabel else "classification"
    pair_column = clf.meta.get("text_pair_column")
    try:
        result = read_examples(
            data,
            text_column=text_column or clf.meta.get("text_column", "text"),
            text_pair_column=pair_column,
            label_column=label_column or clf.meta.get("label_column", "label"),
            task=task,
            on_bad_rows=on_bad_rows,
            extra_columns=extra_columns or {},
        )
    except JiyiError as e:
        raise JiyiError(f"--data {e}") from None
    known = set(clf.labels)
    for ex in result.examples:
        seen = set(ex.label) if isinstance(ex.label, tuple) else {ex.label}
        unknown = seen - known
        if unknown:
            raise JiyiError(
                f"--data {data} line {ex.line}: label {sorted(unknown)[0]!r} is not one the model "
                f"knows ({', '.join(clf.labels)}). Fix the label or drop the row."
            )
    texts = [e.text for e in result.examples]
    pairs = [e.text_pair or "" for e in result.examples] if pair_column else None
    return result, texts, pairs, targets_for(result.examples, clf.labels, task)


def _slice_name(value: Any) -> str:
    """A cell as a slice name: strings as they are, other JSON values as JSON, empty as (empty).

    >>> _slice_name("en"), _slice_name(3), _slice_name(None), _slice_name(True)
    ('en', '3', '(empty)', 'true')
    """
    if value is None or value == "":
        return "(empty)"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
