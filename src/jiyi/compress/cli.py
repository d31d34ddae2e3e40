"""The verb `jiyi compress`: thin; it parses, runs `jiyi.compress.pipeline` and prints the table."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError
from jiyi.io import output_folder

EXAMPLES = """examples:
  jiyi compress runs/demo --method onnx-int8 --output runs/demo-int8
  jiyi compress runs/demo --method distill --layers 3 --epochs 3 --output runs/demo-3l
  jiyi compress runs/demo --method prune-heads --ratio 0.3 --recover-epochs 1 --output runs/demo-pruned
  jiyi compress runs/demo --method distill,prune-heads,onnx-int8 --output runs/demo-small
  jiyi compress runs/demo --output runs/demo-int8 --report-only      # measure again
  jiyi compress me5-small --method trim-vocab --corpus zh/train.csv zh/test.csv --output me5-zh
  jiyi predict runs/demo-int8 --input texts.txt                      # a drop-in: no extra flag
"""


def cmd_compress(args: argparse.Namespace) -> int:
    from jiyi.card import write_card_safely
    from jiyi.compress.artifacts import model_dir_of, read_meta
    from jiyi.compress.pipeline import (
        Settings,
        compress,
        parse_methods,
        report_data,
        write_report,
    )
    from jiyi.compress.report import measure
    from jiyi.compress.trim_vocab import is_classifier
    from jiyi.runs import META_FILE
    from jiyi.tasks import refuse_unless, task_of_run

    threads = args.threads or len(os.sched_getaffinity(0))
    if not Path(args.run_dir).exists():  # an alias such as me5-small
        from jiyi.models import resolve_model

        args.run_dir = resolve_model(args.run_dir, "RUN_DIR")
    out = output_folder(args.output)  # a file there is refused
    if args.report_only:
        if not (out / META_FILE).is_file():
            raise JiyiError(f"--output {out}: no compressed model to measure (no jiyi.json).")
        meta = read_meta(out)
        steps = meta.get("compress", {}).get("chain", [])
        artifacts = [
            (s["method"], d) for s, d in zip(steps, _step_dirs(out, len(steps)), strict=True)
        ]
    else:
        if not args.method:
            raise JiyiError("--method is required (or --report-only to measure an existing one).")
        methods = parse_methods(args.method)
        if methods != ["trim-vocab"]:  # trim-vocab suits any encoder, the others classifiers
            refuse_unless(task_of_run(args.run_dir), "compress", "jiyi compress")
        settings = Settings(
            ratio=args.ratio,
            recover_epochs=args.recover_epochs,
            layers=args.layers,
            epochs=args.epochs,
            temperature=args.temperature,
            alpha=args.alpha,
            lr=args.lr,
            batch_size=args.batch_size,
            seed=args.seed,
            opset=args.opset,
            train=args.train,
            validation=args.validation,
            corpus=args.corpus,
            keep=args.keep,
        )
        made = compress(args.run_dir, methods, out, settings, overwrite=args.overwrite)
        steps = [step for _, _, step in made]
        artifacts = [(m, d) for m, d, _ in made]
        print(f"written: {out}", file=sys.stderr)
        write_card_safely(out)  # OUT_DIR/README.md; measurements added below
    source = model_dir_of(args.run_dir)
    if not args.report_only and methods == ["trim-vocab"] and not is_classifier(source):
        print("no report: the model has no classification head to measure", file=sys.stderr)
        return 0
    if args.no_report:
        return 0
    data, texts, gold = report_data(source, args.data)
    rows: list[dict[str, Any]] = []
    for name, folder in [("original", source), *artifacts]:
        print(f"measuring {name} ({folder})", file=sys.stderr, flush=True)
        rows.append(measure(name, Path(folder), texts, gold, threads=threads))
    report = write_report(out, rows, steps, data)
    write_card_safely(out)
    print(report["table"])
    agreement = ", ".join(
        f"{r['name']} {a:.1%}"
        for r, a in zip(rows[1:], report["agreement_with_original"][1:], strict=True)
    )
    print(f"\nsame label as the original: {agreement}", file=sys.stderr)
    print(f"report: {out / 'compress.json'}", file=sys.stderr)
    return 0


def _step_dirs(out: Path, n: int) -> list[Path]:
    steps = sorted((out / "steps").iterdir()) if (out / "steps").is_dir() else []
    dirs = [d for d in steps if (d / "config.json").is_file()] + [out]
    if len(dirs) != n:
        raise JiyiError(
            f"{out}: expected {n} artifacts (steps/ plus the folder), found {len(dirs)}."
        )
    return dirs


def add_parsers(verbs: Any) -> None:
    p = verbs.add_parser(
        "compress",
        help="int8, ONNX, head pruning, distillation, bf16: smaller, faster models + a report",
        description="Compress a fine-tuned run with one method or a chain, then measure the "
        "original and every artifact side by side (size, parameters, accuracy, macro-F1, "
        "latency at batch 1, throughput at batch 64, peak RSS) into OUT_DIR/compress.json. "
        "Each artifact is a drop-in for `jiyi predict` and `jiyi evaluate`.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        help="a jiyi run directory (or its model/ folder); trim-vocab takes any model folder or "
        "alias too",
    )
    p.add_argument(
        "--method",
        metavar="M[,M...]",
        help="trim-vocab, distill, prune-heads, dynamic-int8, bf16, onnx, onnx-int8; a comma list runs in "
        "order (distill and prune-heads first, one format last)",
    )
    p.add_argument("--output", required=True, metavar="OUT_DIR", help="the compressed model folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    p.add_argument(
        "--data",
        metavar="FILE",
        help="labelled texts the report measures on (default: the run's test file)",
    )
    p.add_argument("--train", metavar="FILE", help="distill / recovery texts (default: the run's)")
    p.add_argument(
        "--validation", metavar="FILE", help="head importance, best epoch (default: the run's)"
    )
    p.add_argument("--ratio", type=float, default=0.3, help="prune-heads: share of heads to remove")
    p.add_argument(
        "--recover-epochs",
        type=float,
        default=0.0,
        help="prune-heads: epochs of recovery training against the unpruned model (default 0)",
    )
    p.add_argument(
        "--layers", type=int, default=3, help="distill: the student's layers (default 3)"
    )
    p.add_argument("--epochs", type=float, default=3.0, help="distill: epochs (default 3)")
    p.add_argument(
        "--temperature", type=float, default=2.0, help="distill: softmax temperature (default 2)"
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=0.5,
        help="distill: weight of the soft-target loss; 1 - alpha on the hard labels (default 0.5)",
    )
    p.add_argument("--lr", type=float, default=1e-4, help="distill / recovery learning rate")
    p.add_argument("--batch-size", type=int, default=32, help="distill / recovery batch size")
    p.add_argument("--seed", type=int, default=0, help="distill / recovery seed")
    p.add_argument(
        "--corpus",
        nargs="+",
        metavar="FILE",
        help="trim-vocab: texts whose vocabulary pieces stay (.txt a text per line, or CSV/JSONL/"
        "Parquet with a text column; default: the run's train file)",
    )
    p.add_argument(
        "--keep",
        type=int,
        metavar="N",
        help="trim-vocab: keep at most the N most frequent corpus pieces (default: all of them)",
    )
    p.add_argument("--opset", type=int, default=17, help="onnx: the ONNX opset (default 17)")
    p.add_argument("--threads", type=int, help="threads for every measurement (default: all cores)")
    p.add_argument("--no-report", action="store_true", help="compress only; measure nothing")
    p.add_argument(
        "--report-only", action="store_true", help="measure the artifacts already in OUT_DIR"
    )
    p.set_defaults(func=cmd_compress)


__all__ = ["add_parsers", "cmd_compress"]
