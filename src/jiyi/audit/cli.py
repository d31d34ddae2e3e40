"""`jiyi audit MODEL --data FILE --output DIR`: the verb's flags and the thin function that runs it.

$ jiyi audit minilm --data data/rotten-tomatoes/train.csv --output runs/audit
812 of 8530 rows suspected of a wrong label (9.5%); estimated noise rate 9.9% (...)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from jiyi.errors import JiyiError


def cmd_audit(args: argparse.Namespace) -> int:
    from jiyi.audit.finetune import parse_train_args
    from jiyi.audit.run import AuditOptions, run_audit, summary_lines
    from jiyi.runs import run_meta

    meta = run_meta(args.model)  # a run: its columns are the defaults; {} for other models
    if args.train_args and args.method != "finetune":
        raise JiyiError("--train-args applies to --method finetune only.")
    options = AuditOptions(
        folds=args.folds,
        seed=args.seed,
        method=args.method,
        ranking=args.ranking,
        duplicate_threshold=args.duplicate_threshold,
        pooling=args.pooling,
        layers=args.layers,
        batch_size=args.batch_size,
        max_length=args.max_length,
        show=args.show,
        train_args=parse_train_args(args.train_args),
    )
    summary = run_audit(
        args.model,
        args.data,
        args.output,
        options,
        text_column=args.text_column or meta.get("text_column", "text"),
        label_column=args.label_column or meta.get("label_column", "label"),
        on_bad_rows=args.on_bad_rows,
        write_clean_to=args.write_clean,
    )
    for line in summary_lines(summary):
        print(line)
    written = f"written: {args.output}/audit.jsonl, audit.html, summary.json"
    if "clean" in summary:
        written += f"; {summary['clean']['file']} ({summary['clean']['rows']} rows kept)"
    print(written, file=sys.stderr)
    return 0


def add_parsers(verbs: Any) -> argparse.ArgumentParser:
    """Add `audit` to the CLI's sub-parsers; returns its parser (the CLI adds the labelled-file
    flags: `jiyi.cli.add_labelled_data_flags`)."""
    from jiyi.audit.confident import RANKINGS
    from jiyi.audit.run import METHODS

    p = verbs.add_parser(
        "audit",
        help="likely label errors in a labelled file (confident learning) and texts repeated "
        "under other labels",
        description="Predict every row with a model that did not see it (stratified k-fold: a "
        "logistic head on MODEL's frozen context vectors, or --method finetune: a jiyi "
        "classifier per fold), then estimate which labels are wrong by confident learning "
        "(Northcutt et al. 2021): per-class thresholds, the confident joint, the estimated "
        "noise per class, the rows pruned by noise rate, ranked by self-confidence or "
        "normalised margin. Texts that repeat (equal after normalising, or cosine >= "
        "--duplicate-threshold) under different labels are reported too. Writes "
        "DIR/audit.jsonl (every row, suspects first), DIR/audit.html and DIR/summary.json.",
        epilog="examples:\n"
        "  jiyi audit minilm --data data/rotten-tomatoes/train.csv --output runs/audit\n"
        "  jiyi audit minilm --data train.csv --output runs/audit --write-clean train.clean.csv\n"
        "  jiyi audit minilm --data train.csv --output runs/audit-ft --method finetune "
        '--train-args "--epochs 2"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        help="whose context vectors (and, with --method finetune, whose fine-tuning): an alias "
        "(minilm, me5-small), a Hugging Face folder or a jiyi run (its head is dropped)",
    )
    p.add_argument(
        "--data", required=True, metavar="FILE", help="labelled data: CSV, TSV, JSONL, Parquet"
    )
    p.add_argument("--output", required=True, metavar="DIR", help="folder for the audit files")
    p.add_argument(
        "--write-clean",
        metavar="FILE",
        help="also write --data's rows minus the suspected ones (every column kept, same format)",
    )
    p.add_argument("--folds", type=int, default=5, metavar="K", help="cross-validation folds (5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold split (default 0)")
    p.add_argument(
        "--method",
        choices=METHODS,
        default="logistic",
        help="logistic: a logistic head on frozen vectors per fold (default, fast); finetune: "
        "`jiyi train` per fold (slow: K trainings)",
    )
    p.add_argument(
        "--train-args",
        metavar="FLAGS",
        help='`jiyi train` flags for --method finetune, quoted: "--epochs 2 --lr 3e-5"',
    )
    p.add_argument(
        "--ranking",
        choices=RANKINGS,
        default="self_confidence",
        help="order of the suspects: the held-out probability of the given label "
        "(self_confidence, default) or its margin over the best other label",
    )
    p.add_argument(
        "--duplicate-threshold",
        type=float,
        default=0.97,
        metavar="COS",
        help="texts whose vectors' cosine reaches this, with different labels, are reported "
        "(default 0.97; above 1: exact duplicates only)",
    )
    p.add_argument(
        "--pooling", choices=("mean", "cls", "max"), default="mean", help="vector pooling (mean)"
    )
    p.add_argument("--layers", default="-1", help="hidden state(s) to pool (default -1: the last)")
    p.add_argument("--max-length", type=int, default=256, help="tokens kept per text (256)")
    p.add_argument(
        "--show", type=int, default=200, metavar="N", help="suspected rows shown in audit.html"
    )
    p.set_defaults(func=cmd_audit)
    return p
