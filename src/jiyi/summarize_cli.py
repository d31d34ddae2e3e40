"""`jiyi summarize`: the verb over `jiyi.summarize` (one document per file, line or row, printed
or as --json), and `--engine ray` (`jiyi.scale.summarize`) for many documents.

    jiyi summarize minilm --input news.txt --sentences 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError
from jiyi.summarize import LANGUAGES, RANKINGS, summarize


def _read_documents(path: str, per_line: bool, text_column: str) -> list[tuple[int | None, str]]:
    """(line or row, text) per document: a whole text file (or stdin) is one document; each line
    with --per-line; each row of a CSV/TSV/JSONL/Parquet file or datasets folder."""
    from jiyi.data.readers import read_inputs

    p = Path(path)
    if path != "-" and not p.exists():
        raise JiyiError(f"--input {path}: no such file.")
    table = p.is_dir() or p.suffix.lower() in (".csv", ".tsv", ".jsonl", ".parquet")
    if per_line or table:
        try:
            examples = read_inputs(path, text_column=text_column)
        except JiyiError as e:
            raise JiyiError(f"--input {e}") from None
        return [(e.line, e.text) for e in examples]
    raw = sys.stdin.buffer.read() if path == "-" else p.read_bytes()
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise JiyiError(f"--input {path}: not UTF-8 text (byte {e.start}).") from None
    if not text.strip():
        raise JiyiError(f"--input {path}: the file holds no text.")
    return [(None, text)]


def cmd_summarize(args: argparse.Namespace) -> int:
    from jiyi.scale import use_ray

    if use_ray(args):  # every row a document, summaries into --output's Parquet shards
        from jiyi.scale.summarize import summarize_on_ray

        return summarize_on_ray(args)
    if args.output:
        raise JiyiError("--output goes with --engine ray; summarize prints to standard output.")
    docs = _read_documents(args.input, args.per_line, args.text_column)
    results = summarize(
        args.model,
        [text for _, text in docs],
        sentences=args.sentences,
        ratio=args.ratio,
        max_words=args.max_words,
        max_chars=args.max_chars,
        language=args.language,
        mmr_lambda=args.mmr_lambda,
        lead_bias=args.lead_bias,
        ranking=args.ranking,
        positive_label=args.positive_label,
        batch_size=args.batch_size,
    )
    blocks = []
    for (line, _), result in zip(docs, results, strict=True):
        if args.json:
            row = result.to_dict() if line is None else {"line": line, **result.to_dict()}
            blocks.append(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            blocks.append("".join(p.text + "\n" for p in result.sentences))
    sys.stdout.write(("" if args.json else "\n").join(blocks))
    return 0


def add_parsers(verbs: Any) -> None:
    """Add `summarize` to the `jiyi` sub-parsers (`parser.add_subparsers()`)."""
    p = verbs.add_parser(
        "summarize",
        help="extractive summary: the most central (or most likely) sentences, verbatim",
        description="Split each document into sentences, rank them (TextRank on an encoder's "
        "context vectors, or a classification run's probability of the positive label), and "
        "pick a few with MMR under a budget. Prints the picks one per line in document order, "
        "or with --json one object per document (sentences with character offsets).",
    )
    p.add_argument(
        "model",
        metavar="MODEL_OR_RUN",
        help="an encoder (minilm, a model folder) or a jiyi classification run trained on "
        "sentences labelled 1 = in the summary",
    )
    p.add_argument(
        "--input",
        required=True,
        metavar="FILE|-",
        help="a text file (one document), or CSV/TSV/JSONL/Parquet (one document a row)",
    )
    p.add_argument("--per-line", action="store_true", help="each line of the text is a document")
    p.add_argument("--text-column", default="text", help="text column of a table (default text)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--sentences", type=int, metavar="N", help="pick N sentences (default 3)")
    group.add_argument("--ratio", type=float, metavar="R", help="pick this share of sentences")
    group.add_argument("--max-words", type=int, metavar="W", help="at most W words (CJK: chars)")
    group.add_argument("--max-chars", type=int, metavar="C", help="at most C characters")
    p.add_argument("--json", action="store_true", help="one JSON object per document")
    p.add_argument("--language", choices=LANGUAGES, default="auto", help="sentence rules")
    p.add_argument(
        "--mmr-lambda",
        type=float,
        default=0.7,
        metavar="λ",
        help="relevance vs redundancy: 1 = relevance only (default 0.7)",
    )
    p.add_argument(
        "--lead-bias",
        type=float,
        default=0.0,
        metavar="B",
        help="weight in [0, 1] of a prior for early sentences (default 0)",
    )
    p.add_argument(
        "--ranking",
        choices=RANKINGS,
        default="auto",
        help="centrality (TextRank) or classifier; auto: classifier for a classification run",
    )
    p.add_argument(
        "--positive-label",
        metavar="LABEL",
        help="the run's label for summary sentences (default: 1, yes, true or summary)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="sentences per forward pass")
    p.add_argument(
        "--output",
        metavar="DIR",
        help="ray: the folder of Parquet shards (summary, sentences, ...) and manifest.json; "
        "with --engine ray each row (or line) of --input is one document",
    )
    from jiyi.scale import add_engine_flags

    add_engine_flags(p)
    p.set_defaults(func=cmd_summarize)
