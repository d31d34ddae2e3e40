"""`jiyi calibrate RUN_DIR --data FILE [--method temperature|vector|none]`: (re)fit a run's
calibrated probabilities on a labelled file (its validation data, usually), store them in
RUN_DIR/model/jiyi.json (atomically), print ECE, log loss and accuracy before and after, and
rewrite the run's model card.

    $ jiyi calibrate runs/demo --data data/rotten-tomatoes/validation.csv
    calibrated runs/demo/model: temperature (T = 1.412) on 1066 examples: ECE 0.0712 -> 0.0187, ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError


def calibrate_run(
    run_dir: str | Path,
    data: str,
    *,
    method: str = "temperature",
    text_column: str | None = None,
    label_column: str | None = None,
    on_bad_rows: str = "error",
    batch_size: int = 64,
) -> dict[str, Any]:
    """Fit `method` on `data` for the run and store it; returns the run's new calibration record
    ({"method": "none"} for none)."""
    from jiyi.calibrate import refit
    from jiyi.card import write_card_safely
    from jiyi.evaluate_run import read_labelled
    from jiyi.predict import load
    from jiyi.runs import model_dir, write_meta
    from jiyi.tasks import refuse_unless, task_of_run

    if not Path(run_dir).exists():
        raise JiyiError(f"RUN_DIR {run_dir}: no such folder.")
    folder = model_dir(run_dir)
    spec = task_of_run(folder)
    refuse_unless(spec, "calibrate", "jiyi calibrate")
    clf = load(folder, batch_size=batch_size)
    _, texts, pairs, y = read_labelled(
        clf, data, text_column=text_column, label_column=label_column, on_bad_rows=on_bad_rows
    )
    if not texts:
        raise JiyiError(f"--data {data}: no labelled rows to calibrate on.")
    logits = clf.logits(texts, pairs)
    meta = {"task": spec.name, **clf.meta}
    _, meta = refit(logits, y, clf.labels, meta, method=method, data=str(data))
    write_meta(folder, meta)  # atomic
    write_card_safely(run_dir)  # RUN_DIR/README.md states the calibration
    return meta.get("calibration", {"method": "none"})


def cmd_calibrate(args: argparse.Namespace) -> int:
    from jiyi.calibrate import summary_line

    record = calibrate_run(
        args.run_dir,
        args.data,
        method=args.method,
        text_column=args.text_column,
        label_column=args.label_column,
        on_bad_rows=args.on_bad_rows,
        batch_size=args.batch_size,
    )
    if record["method"] == "none":
        print(
            f"{args.run_dir}: calibration removed; the model's own probabilities.", file=sys.stderr
        )
    else:
        print(f"{args.run_dir}: {summary_line(record)}", file=sys.stderr)
        for note in record.get("notes", []):
            print(f"note: {note}", file=sys.stderr)
    print(json.dumps(record))
    return 0


def add_parsers(verbs: Any) -> argparse.ArgumentParser:
    """Add `calibrate` to the CLI's sub-parsers (`verbs` = parser.add_subparsers(...)); returns
    its parser (the CLI adds the labelled-file flags: `jiyi.cli.add_labelled_data_flags`)."""
    from jiyi.tasks.registry import CALIBRATIONS

    p = verbs.add_parser(
        "calibrate",
        help="(re)fit a run's calibrated probabilities on a labelled file",
        description="Fit temperature scaling (or vector scaling, or none) of a classification or "
        "multilabel run on a labelled file (its validation data: never the test data), store it "
        "in RUN_DIR/model/jiyi.json, where predict, evaluate, serve and --memory read it, and "
        "print ECE, log loss and accuracy before and after. Multilabel: one temperature per "
        "label, and the thresholds re-tuned on the calibrated probabilities.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a jiyi run directory (or its model/ folder)")
    p.add_argument(
        "--data",
        required=True,
        metavar="FILE",
        help="labelled data to fit on: CSV, TSV, JSONL, Parquet, datasets folder",
    )
    p.add_argument(
        "--method",
        choices=CALIBRATIONS,
        default="temperature",
        help="temperature (default: decisions unchanged), vector (a scale and bias per class) "
        "or none (remove the calibration)",
    )
    p.set_defaults(func=cmd_calibrate)
    return p
