"""`jiyi curve`: the verb's flags (`add_parsers`) and the thin function that runs it
(`cmd_curve`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jiyi.config import TrainConfig, add_dataclass_flags, build_config
from jiyi.curve.plot import curve_table
from jiyi.curve.run import CURVE_OWNED, CurveOptions, run_curve
from jiyi.curve.subsets import parse_sizes
from jiyi.io import output_folder


def cmd_curve(args: argparse.Namespace) -> int:
    from rich.console import Console

    if args.output:
        output_folder(args.output)  # a file there is refused before any work
    config = build_config(TrainConfig, vars(args), args.config)
    options = CurveOptions(
        sizes=parse_sizes(args.sizes),
        seeds=args.seeds,
        min_per_class=args.min_per_class,
        target=args.target,
        memory=args.memory,
        min_steps=args.min_steps,
        bootstrap=args.bootstrap,
    )
    console = Console(stderr=True, soft_wrap=True)
    result = run_curve(config, options, console)
    console.print(curve_table(result))
    out = Path(config.output or "")
    console.print(f"written: {out / 'curve.json'}, {out / 'curve.png'}")
    print(result["summary"])
    return 0


def add_parsers(verbs: Any) -> None:
    p = verbs.add_parser(
        "curve",
        help="learning curve: how much labelled data is enough",
        description="Fine-tune on nested, stratified subsets of --train (several seeds each), "
        "score every run on the full --validation file, fit metric(n) = a − b·n^(−c) to the "
        "points, and say what more data would buy from a mix of curve families backtested on "
        "the measured sizes (with the band that backtest earns), or say why no forecast is "
        "given. Every `jiyi train` flag applies to each run; finished points "
        "are kept, so rerunning a killed or extended curve trains only what is missing.",
        epilog="examples:\n"
        "  jiyi curve --model minilm --train data/rotten-tomatoes/train.csv --validation "
        "data/rotten-tomatoes/validation.csv --target 0.85 --memory --output runs/demo-curve\n"
        "  jiyi curve --model minilm --train data/rotten-tomatoes/train.csv --validation "
        "data/rotten-tomatoes/validation.csv --sizes 100,300,1000,3000 --seeds 2 --epochs 5 "
        "--output runs/demo-curve-small",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--output", metavar="DIR", help="folder for runs/, curve.json and curve.png")
    p.add_argument(
        "--sizes",
        metavar="LIST",
        help="training-set sizes, comma-separated: fractions of --train (0.05 or 5%%) or counts "
        "(500) (default: 0.01,0.02,0.05,0.1,0.25,0.5,1.0)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=3,
        metavar="N",
        help="seeds per size, 0..N-1: each draws its own subset and trains with it (default 3)",
    )
    p.add_argument(
        "--min-per-class",
        type=int,
        default=8,
        metavar="N",
        help="every subset holds at least N examples of each class; smaller sizes "
        "are raised (default 8)",
    )
    p.add_argument(
        "--target",
        type=float,
        metavar="VALUE",
        help="the metric you need, e.g. 0.85: how many examples are expected to reach it",
    )
    p.add_argument(
        "--memory",
        action="store_true",
        help="also score a kNN memory over the base --model's vectors of each subset "
        "(no training), as a second series",
    )
    p.add_argument(
        "--min-steps",
        type=int,
        default=0,
        metavar="N",
        help="train each point for at least N optimizer steps (small subsets get more "
        "epochs; default 0: --epochs for all)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="refits for the uncertainty of the fit (default 1000)",
    )
    p.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="YAML file of `jiyi train` settings (keys as the flags, with _)",
    )
    add_dataclass_flags(p, TrainConfig, skip=CURVE_OWNED)
    p.set_defaults(func=cmd_curve)
