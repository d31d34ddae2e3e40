"""`jiyi summarize --engine ray`: extractive summaries of many documents on Ray workers.

    jiyi summarize minilm --input docs/ --output summaries/ --engine ray --workers 2

Each row of the input files (a table's row, a .txt file's line, as `--per-line`) is one
document. The job is a `jiyi.scale.jobs.run_job` like `jiyi embed --engine ray`: shards of
--shard-rows documents, `SummarizeRunner` on each worker (the encoder loaded once; a classifier
run is loaded once a shard), Parquet shards with the columns row, [id,] summary, sentences (the
picks as `--json` gives them), n_sentences and language, plus manifest.json; a re-run skips the
finished shards.
"""

from __future__ import annotations

import argparse

from jiyi.errors import JiyiError
from jiyi.scale.jobs import checked_model, model_identity, report_job, run_job

SETTINGS = ("sentences", "ratio", "max_words", "max_chars", "language", "mmr_lambda",
            "lead_bias", "ranking", "positive_label", "batch_size")  # fmt: skip


def summarize_on_ray(args: argparse.Namespace) -> int:
    """`jiyi summarize MODEL_OR_RUN --input FILES --output DIR --engine ray`."""
    from jiyi.summarize import RANKINGS, Budget

    if not args.output:
        raise JiyiError("summarize --engine ray: give --output DIR (a folder of Parquet shards).")
    Budget(args.sentences, args.ratio, args.max_words, args.max_chars)  # bad budgets, here
    if args.ranking not in RANKINGS:
        raise JiyiError(f"--ranking {args.ranking!r}: choose one of {', '.join(RANKINGS)}.")
    for flag, value in (("--lead-bias", args.lead_bias), ("--mmr-lambda", args.mmr_lambda)):
        if not 0.0 <= value <= 1.0:
            raise JiyiError(f"{flag} {value}: must lie in [0, 1].")
    if args.batch_size < 1:
        raise JiyiError(f"--batch-size {args.batch_size}: must be at least 1.")
    path, _ = checked_model(args.model, "MODEL_OR_RUN")
    settings = {"model": path, "model_files": model_identity(path)}
    settings |= {name: getattr(args, name) for name in SETTINGS}
    job = {
        "kind": "summarize",
        "settings": settings,
        "output": args.output,
        "text_column": args.text_column,
        "shard_rows": args.shard_rows,
    }
    report_job(run_job(job, args.input, args), "summaries")
    return 0
