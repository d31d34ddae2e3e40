"""The `jiyi explain` verb: parse the flags, read the texts, call `write_explanations`.

jiyi explain runs/demo --text "a moving, funny film" --output out/explain
jiyi explain runs/demo --input data/rotten-tomatoes/test.csv --max-texts 200 --faithfulness --output out/faith
jiyi explain runs/demo --text "fine" --head-importance --data data/rotten-tomatoes/validation.csv --output out/h
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from jiyi.errors import JiyiError
from jiyi.runs import run_meta


def cmd_explain(args: argparse.Namespace) -> int:
    from jiyi.inspect.explain import write_explanations
    from jiyi.io import output_folder

    output_folder(args.output)  # a file there is refused before any work
    if args.head_importance and not args.data:
        raise JiyiError("--head-importance needs --data FILE (a labelled file).")
    if args.data and not args.head_importance:
        raise JiyiError("--data is the labelled file of --head-importance; pass that flag too.")
    if args.faithfulness and args.input is None:
        raise JiyiError("--faithfulness is measured over a file: pass --input FILE.")
    text_column = args.text_column or run_meta(args.run_dir).get("text_column") or "text"
    texts = [args.text] if args.text is not None else _read_texts(args.input, text_column)
    if not texts:
        raise JiyiError(f"--input {args.input}: no texts in the file.")

    def progress(done: int, total: int) -> None:
        if total > 1 and (sys.stderr.isatty() or done == total or done % 50 == 0):
            end = "\n" if done == total or not sys.stderr.isatty() else ""
            print(f"\rexplained {done}/{total}", end=end, file=sys.stderr)

    paths = write_explanations(
        args.run_dir,
        texts,
        args.output,
        target=args.target,
        n_steps=args.steps,
        internal_batch_size=args.internal_batch_size,
        max_texts=args.max_texts,
        max_maps=args.max_maps,
        faithfulness=args.faithfulness,
        head_data=args.data if args.head_importance else None,
        progress=progress,
    )
    if len(texts) > args.max_texts:
        print(
            f"explained the first {args.max_texts} of {len(texts)} texts (--max-texts)",
            file=sys.stderr,
        )
    if "faithfulness.json" in paths:
        _print_faithfulness(json.loads(paths["faithfulness.json"].read_text(encoding="utf-8")))
    print(f"written: {', '.join(sorted(paths))} in {args.output}", file=sys.stderr)
    print(f"open: {paths['explain.html']}", file=sys.stderr)
    return 0


def _read_texts(path: str, text_column: str) -> list[str]:
    from jiyi.data.readers import read_inputs

    try:
        examples = read_inputs(path, text_column=text_column)
    except JiyiError as e:
        raise JiyiError(f"--input {e}") from None
    return [e.text for e in examples]


def _print_faithfulness(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"deletion test (AOPC) over {summary['n_texts']} texts")
    for name in ("method", "AOPC", "random AOPC", "margin", "beats random"):
        table.add_column(name, justify="left" if name == "method" else "right")
    for name, m in summary.get("methods", {}).items():
        table.add_row(
            name,
            f"{m['aopc']:.4f}",
            f"{m['random_aopc']:.4f}",
            f"{m['margin']:+.4f}",
            f"{100 * m['win_rate']:.0f}%",
        )
    Console(stderr=True).print(table)


def add_parsers(verbs: Any) -> None:
    """Add `explain` to the CLI's sub-parsers (`verbs` = parser.add_subparsers(...))."""
    p = verbs.add_parser(
        "explain",
        help="why the model predicts what it does: attention, attributions, faithfulness",
        description="Attention of every layer and head, attention rollout, gradient × input and "
        "integrated gradients for each text, merged to words, checked by a deletion test (AOPC). "
        "Writes explain.json, explain.html (opens offline) and PNG heatmaps into --output.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a jiyi run directory (or its model/ folder)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", metavar="TEXT", help="one text to explain")
    source.add_argument(
        "--input",
        metavar="FILE",
        help="texts to explain: .txt (one per line), CSV/TSV/JSONL/Parquet, or - for stdin",
    )
    p.add_argument("--output", required=True, metavar="DIR", help="folder to write into")
    p.add_argument(
        "--target", metavar="LABEL", help="explain this label (default: the predicted one)"
    )
    p.add_argument("--steps", type=int, default=50, help="integrated-gradients steps (default 50)")
    p.add_argument(
        "--internal-batch-size",
        type=int,
        default=16,
        help="IG steps per forward pass; lower it if a long text runs out of memory (default 16)",
    )
    p.add_argument(
        "--max-texts", type=int, default=50, help="explain at most this many texts (default 50)"
    )
    p.add_argument(
        "--max-maps",
        type=int,
        default=10,
        help="keep full attention maps (JSON, page thumbnails) for this many texts (default 10)",
    )
    p.add_argument(
        "--faithfulness",
        action="store_true",
        help="also write faithfulness.json: AOPC per method against random deletion over --input",
    )
    p.add_argument(
        "--head-importance",
        action="store_true",
        help="also write head_importance.json/.png (Michel et al. 2019) over --data",
    )
    p.add_argument("--data", metavar="FILE", help="labelled file for --head-importance")
    p.add_argument(
        "--text-column",
        help="text column of a table --input (default: the one the run was trained with)",
    )
    p.set_defaults(func=cmd_explain)
