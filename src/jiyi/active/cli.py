"""`jiyi select`: the verb's flags (`add_parsers`) and the thin function that runs it.

$ jiyi select --pool data/rotten-tomatoes/test.csv --run runs/demo --budget 50 --output to_label.csv
select: 50 of 1275 pool rows by margin (the smallest gap between the top two probabilities)
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Any

from jiyi.active import STRATEGIES
from jiyi.io import atomic_write_text, output_file

PREVIEW = 5  # chosen rows shown on the terminal


def cmd_select(args: argparse.Namespace) -> int:
    from jiyi.active.run import select_rows, to_csv

    output = output_file(args.output)  # a folder there is refused before any work
    chosen = select_rows(
        args.pool,
        args.budget,
        run=args.run,
        model=args.model,
        strategy=args.strategy,
        labelled=args.labelled,
        candidates=args.candidates,
        text_column=args.text_column,
        on_bad_rows=args.on_bad_rows,
        batch_size=args.batch_size,
    )
    text = to_csv(chosen)
    if output == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(output, text)
    how = chosen.strategy
    if chosen.candidates is not None:
        how += f" (the {chosen.candidates} most uncertain by margin, then k-center greedy)"
    left_out = []
    if chosen.excluded:
        left_out.append(f"{chosen.excluded} already in --labelled")
    if chosen.duplicates:
        left_out.append(f"{chosen.duplicates} repeats of an earlier row")
    err = sys.stderr
    print(
        f"select: {len(chosen.rows)} of {chosen.pool_rows} pool rows by {how}"
        + (f"; left out {', '.join(left_out)}" if left_out else ""),
        file=err,
    )
    text_column = chosen.columns[2]
    for row in chosen.rows[:PREVIEW]:
        snippet = row[text_column] if len(row[text_column]) <= 60 else row[text_column][:57] + "..."
        print(f"  {row['rank']:>3}. row {row['row']}: {snippet!r}  {row['reason']}", file=err)
    if len(chosen.rows) > PREVIEW:
        print(f"  ... {len(chosen.rows) - PREVIEW} more", file=err)
    if chosen.predicted:
        counts = ", ".join(f"{k or '(none)'} {v}" for k, v in sorted(chosen.predicted.items()))
        print(f"predicted labels of the chosen rows: {counts}", file=err)
    if output != "-":
        label = chosen.columns[-1]
        print(
            f"written: {output} (fill in its {label} column; next round, pass the labelled rows "
            "with --labelled)",
            file=err,
        )
        summary = {
            "output": output,
            "strategy": chosen.strategy,
            "selected": len(chosen.rows),
            "pool": chosen.pool_rows,
            "excluded": chosen.excluded,
            "duplicates": chosen.duplicates,
            "candidates": chosen.candidates,
            "predicted": chosen.predicted or None,
        }
        print(json.dumps(summary))
    return 0


def add_parsers(verbs: Any) -> argparse.ArgumentParser:
    """Add `select` to the CLI's sub-parsers (`verbs` = parser.add_subparsers(...))."""
    p = verbs.add_parser(
        "select",
        help="active learning: which unlabelled rows to label next",
        description=textwrap.fill(
            "Choose --budget rows of an unlabelled --pool to label next, in order, each "
            "with its reason, and write them with an empty label column for the annotator. "
            "uncertainty (least confidence: 1 - top probability), margin (top minus second "
            "probability, smallest first) and entropy rank rows by a run's calibrated "
            "probabilities; diversity picks by k-center greedy on context vectors (each pick the "
            "row farthest, in cosine distance, from the labelled rows and the picks before it); "
            "hybrid takes the --candidates most uncertain rows by margin, then k-center greedy "
            "among them. --run gives probabilities and its encoder's vectors; --model gives "
            "vectors only (diversity). Rounds resume: --labelled leaves out rows whose text is "
            "already there (matched after case-folding and collapsing spaces) and keeps new picks "
            "away from them. The score column holds the strategy's own number: least confidence, "
            "margin, entropy, or the distance (diversity, hybrid).",
            88,
        ),
        epilog="examples:\n"
        "  jiyi select --pool data/rotten-tomatoes/test.csv --run runs/demo --budget 50 "
        "--output to_label.csv\n"
        "  # the next round: what is labelled so far stays out, new picks keep away from it\n"
        "  jiyi select --pool data/rotten-tomatoes/test.csv --run runs/demo --budget 50 "
        "--labelled to_label.csv --output round2.csv\n"
        "  # no trained run yet: diverse rows by MiniLM's context vectors\n"
        "  jiyi select --pool data/rotten-tomatoes/test.csv --model minilm --budget 32 "
        "--output first.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--pool",
        required=True,
        metavar="FILE",
        help="unlabelled rows: CSV, TSV, JSONL, Parquet, a datasets folder, .txt (one text a "
        "line) or - for stdin; a label column, if any, is ignored",
    )
    p.add_argument("--budget", required=True, type=int, metavar="N", help="how many rows to choose")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--run", metavar="RUN_DIR", help="a trained classification or multilabel run"
    )
    source.add_argument(
        "--model",
        metavar="MODEL",
        help="an encoder (minilm, a folder, a run) for --strategy diversity",
    )
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        help="how to choose (default: margin with --run, diversity with --model)",
    )
    p.add_argument(
        "--labelled",
        metavar="FILE",
        help="rows labelled so far (earlier rounds' files, the training data): left out of the "
        "pool, and diversity keeps away from them; every row with text counts",
    )
    p.add_argument(
        "--candidates",
        type=int,
        metavar="N",
        help="hybrid: the N most uncertain rows k-center greedy chooses among (default: 4 x "
        "--budget)",
    )
    p.add_argument(
        "--output",
        required=True,
        metavar="FILE",
        help="CSV of the chosen rows (rank, row, text, score, reason, predicted, label); - for "
        "standard output",
    )
    p.add_argument(
        "--text-column", help="text column of --pool and --labelled (default: the run's, or text)"
    )
    p.add_argument(
        "--on-bad-rows",
        choices=("error", "skip"),
        default="error",
        help="stop at a bad row, or skip and count",
    )
    p.add_argument(
        "--delimiter",
        metavar="CHAR",
        help="CSV/TSV field delimiter (; tab | ,); by default guessed from the header and the "
        "first lines",
    )
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    p.set_defaults(func=cmd_select)
    return p
