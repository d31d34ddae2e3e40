"""`make demo`: the main job end to end, offline, on the bundled MiniLM and Rotten Tomatoes.

Each step prints the `jiyi` command it runs, so the demo doubles as a quickstart:
export the data, fine-tune, evaluate on the held-out test split, predict a few sentences.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path

from jiyi.cli import main as jiyi


def run(argv: list[str]) -> None:
    print(f"\n$ jiyi {shlex.join(argv)}", flush=True)
    rc = jiyi(argv)
    if rc != 0:
        sys.exit(rc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="runs/demo", help="run directory (replaced if present)")
    parser.add_argument("--data", default="data/rotten-tomatoes", help="where to export the data")
    parser.add_argument(
        "--epochs", default="2", help="training epochs (default 2: fits 15 min on 2 cores)"
    )
    args = parser.parse_args()

    t0 = time.perf_counter()
    data = Path(args.data)
    if not (data / "test.csv").is_file():
        run(["data", "export", "rotten-tomatoes", "--output", str(data)])
    shutil.rmtree(args.output, ignore_errors=True)
    run(
        [
            "train",
            "--model",
            "minilm",
            "--train",
            str(data / "train.csv"),
            "--validation",
            str(data / "validation.csv"),
            "--test",
            str(data / "test.csv"),
            "--output",
            args.output,
            "--epochs",
            args.epochs,
            "--batch-size",
            "32",
            "--lr",
            "5e-5",
            "--max-length",
            "64",
            "--warmup-ratio",
            "0.06",
            "--weight-decay",
            "0.01",
            "--seed",
            "42",
        ]
    )
    examples = Path(args.output) / "examples.txt"
    examples.write_text(
        "A gorgeous, witty, seductive movie.\n"
        "The plot is a mess and the jokes fall flat.\n"
        "It's not a great film, but it has its moments.\n"
        "An instant classic that I will watch again and again.\n",
        encoding="utf-8",
    )
    run(["predict", args.output, "--input", str(examples)])
    print(
        f"\ndemo finished in {time.perf_counter() - t0:.0f} s; report: {args.output}/eval/report.html"
    )


if __name__ == "__main__":
    main()
