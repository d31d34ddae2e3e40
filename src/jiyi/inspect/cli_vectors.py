"""The verbs `jiyi embed`, `jiyi probe` and `jiyi drift`: thin, they parse and call the library.

Wired into `jiyi.cli.build_parser` with `add_parsers(verbs)`; each verb imports its module (and
torch) only when it runs, so `jiyi --help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

EMBED_EXAMPLES = """examples:
  jiyi embed minilm --input texts.txt --output vectors.npy --normalize
  jiyi embed runs/demo --input reviews.parquet --output vectors.parquet --layers -4: --pooling cls
  jiyi embed me5-small --input zh.txt --output vectors.npy --normalize --prompt "passage: "
  jiyi embed minilm --input texts/ --output vectors/ --engine ray --workers 2   # Parquet shards
"""


def cmd_embed(args: argparse.Namespace) -> int:
    from jiyi.inspect.embeddings import embed_file
    from jiyi.io import output_file
    from jiyi.scale import use_ray

    if use_ray(args):  # Parquet shards into a folder, on Ray workers (jiyi.scale)
        from jiyi.scale.jobs import embed_on_ray

        return embed_on_ray(args)
    output_file(args.output)  # a folder there is refused before any work

    def progress(rows: int) -> None:
        if os.environ.get("JIYI_NO_PROGRESS") != "1":
            print(f"embedded {rows} texts", file=sys.stderr)

    summary = embed_file(
        args.model,
        args.input,
        args.output,
        pooling=args.pooling,
        layers=args.layers,
        normalize=args.normalize,
        batch_size=args.batch_size,
        max_length=args.max_length,
        text_column=args.text_column,
        chunk_size=args.chunk_size,
        on_chunk=progress,
        prompt=args.prompt,
    )
    if summary["truncated"]:
        print(
            f"{summary['truncated']} of {summary['rows']} texts were longer than "
            f"{summary['max_length']} tokens and were cut (the head kept); raise --max-length "
            "to keep more.",
            file=sys.stderr,
        )
    if summary["blank_lines"]:
        print(f"{summary['blank_lines']} blank lines skipped.", file=sys.stderr)
    prompt = f" (each text prefixed {summary['prompt']!r})" if summary["prompt"] else ""
    print(
        f"{summary['rows']} vectors of {summary['dim']} dimensions written to {args.output}"
        + prompt,
        file=sys.stderr,
    )
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from jiyi.inspect.probe import run_probe
    from jiyi.io import output_folder

    output_folder(args.output)  # a file there is refused before any work
    result = run_probe(
        args.model,
        args.data,
        args.output,
        compare=args.compare,
        pooling=args.pooling,
        folds=args.folds,
        max_examples=args.max_examples,
        text_column=args.text_column,
        label_column=args.label_column,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
    )
    other = {r["layer"]: r for r in (result["compare"] or {}).get("layers", [])}
    print(f"layer  accuracy ± std  ({result['model']})" + ("  compare" if other else ""))
    for r in result["layers"]:
        line = f"{r['layer']:5d}  {r['accuracy']:.3f} ± {r['std']:.3f}"
        if r["layer"] in other:
            line += f"   {other[r['layer']]['accuracy']:.3f} ± {other[r['layer']]['std']:.3f}"
        print(line)
    print(f"majority-class baseline {result['majority_baseline']:.3f}")
    print(f"written: {args.output}/probe.json, probe.png", file=sys.stderr)
    return 0


def cmd_drift(args: argparse.Namespace) -> int:
    from jiyi.inspect.drift import run_drift
    from jiyi.io import output_folder

    output_folder(args.output)  # a file there is refused before any work
    result = run_drift(
        args.pretrained,
        args.finetuned,
        args.data,
        args.output,
        max_examples=args.max_examples,
        text_column=args.text_column,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
    )
    print("layer  CKA    weight change")
    for r in result["layers"]:
        print(f"{r['layer']:5d}  {_num(r['cka'])}  {_num(r['weight_change'])}")
    print(f"written: {args.output}/drift.json, drift.png", file=sys.stderr)
    return 0


def _num(x: float | None) -> str:
    return "  n/a" if x is None else f"{x:.3f}"


def add_parsers(verbs: Any) -> None:
    """Add `embed`, `probe` and `drift` to the `jiyi` sub-parsers (`parser.add_subparsers()`)."""
    from jiyi.scale import add_engine_flags

    model_help = "the alias minilm, a Hugging Face model folder, or a jiyi run directory"

    p = verbs.add_parser(
        "embed",
        help="context vectors of every text (.npy or Parquet)",
        description="Pool a layer (or an average of layers) over each text's tokens. Streams "
        "the input in chunks, so files larger than memory work; row order = input order.",
        epilog=EMBED_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL_OR_RUN", help=model_help)
    p.add_argument(
        "--input",
        required=True,
        metavar="FILE",
        help="texts: .txt (one per line), .csv, .tsv, .jsonl or .parquet",
    )
    p.add_argument(
        "--output",
        required=True,
        metavar="FILE",
        help="FILE.npy ((N, H) float32) or FILE.parquet (columns id, vector); with --engine "
        "ray a folder of Parquet shards (columns row, [id,] vector) and manifest.json",
    )
    _pooling(p)
    p.add_argument(
        "--layers",
        default="-1",
        metavar="SPEC",
        help="hidden states to average: -1 (last, default), a slice -4:, a list 0,3,5, or all; "
        "0 is the embeddings output",
    )
    # `--layers -4:` is a value, not an option: read "-digit..." as a value, as Python 3.13 does
    if hasattr(p, "_negative_number_matcher"):
        p._negative_number_matcher = re.compile(r"-\.?\d")
    p.add_argument("--normalize", action="store_true", help="scale each vector to unit L2 norm")
    p.add_argument(
        "--prompt",
        default=None,
        metavar="TEXT",
        help="put TEXT before every text (default: the model's query prompt, 'query: ' for "
        "me5-small, none for most models); --prompt '' for none",
    )
    _batching(p)
    p.add_argument("--text-column", default="text", help="text column of a table (default text)")
    p.add_argument(
        "--chunk-size",
        type=int,
        default=10000,
        help="texts read, embedded and written at a time; bounds memory (default 10000)",
    )
    add_engine_flags(p)
    p.set_defaults(func=cmd_embed)

    p = verbs.add_parser(
        "probe",
        help="linear probe accuracy per layer (where the task lives)",
        description="Cross-validated logistic-regression accuracy on each layer's pooled "
        "vectors; writes probe.json and probe.png.",
    )
    p.add_argument("model", metavar="MODEL_OR_RUN", help=model_help)
    _data(p, labelled=True)
    p.add_argument(
        "--compare", metavar="OTHER", help="a second model drawn on the same plot (e.g. minilm)"
    )
    _pooling(p)
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument(
        "--max-examples",
        type=int,
        default=2000,
        help="probe a seeded random subset of at most this many rows (default 2000)",
    )
    _batching(p)
    p.set_defaults(func=cmd_probe)

    p = verbs.add_parser(
        "drift",
        help="per-layer CKA and weight change between pretrained and fine-tuned",
        description="What fine-tuning kept and overwrote: linear CKA of the two models' "
        "mean-pooled vectors and the relative weight change, per layer; writes drift.json and "
        "drift.png.",
    )
    p.add_argument("pretrained", metavar="PRETRAINED", help=model_help)
    p.add_argument("finetuned", metavar="FINETUNED", help=model_help)
    _data(p, labelled=False)
    p.add_argument(
        "--max-examples",
        type=int,
        default=1000,
        help="use a seeded random subset of at most this many texts (default 1000)",
    )
    _batching(p)
    p.set_defaults(func=cmd_drift)


def _pooling(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pooling",
        choices=("cls", "mean", "max"),
        default="mean",
        help="cls: the first token; mean / max: over the text's tokens, padding excluded "
        "(default mean)",
    )


def _batching(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    p.add_argument(
        "--max-length",
        type=int,
        default=512,
        help="tokens kept per text, the head (default 512, or the model's limit if lower)",
    )


def _data(p: argparse.ArgumentParser, *, labelled: bool) -> None:
    kinds = "CSV, TSV, JSONL, Parquet or a datasets folder" + ("" if labelled else ", or .txt")
    p.add_argument(
        "--data",
        required=True,
        metavar="FILE",
        help=("labelled texts: " if labelled else "texts: ") + kinds,
    )
    p.add_argument("--output", required=True, metavar="DIR", help="folder to write into")
    p.add_argument("--text-column", default="text", help="text column (default text)")
    if labelled:
        p.add_argument("--label-column", default="label", help="label column (default label)")
    what = "the subset and the folds" if labelled else "the subset"
    p.add_argument("--seed", type=int, default=0, help=f"seed of {what} (default 0)")
