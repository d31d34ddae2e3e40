"""The verbs `jiyi memory build|add|forget|query|stats|tune|compact` and `jiyi ask`.

Wired into `jiyi.cli.build_parser` with `add_parsers(verbs)`; `jiyi predict --memory` calls
`predict_with_memory`. Each verb imports faiss and torch only when it runs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from jiyi.errors import JiyiError

MEMORY_EXAMPLES = """examples:
  jiyi memory build runs/demo --data data/rotten-tomatoes/train.csv --validation data/rotten-tomatoes/validation.csv \\
                    --output runs/demo-memory
  jiyi predict runs/demo --memory runs/demo-memory --input texts.txt     # kNN-augmented
  jiyi predict --memory runs/demo-memory --input texts.txt              # memory-only
  jiyi memory add runs/demo-memory --data new_examples.csv              # learn, no retraining
  jiyi memory build minilm --data faq.csv --text-column question --payload answer \\
                    --validation faq_validation.csv --output runs/faq
  jiyi ask runs/faq "how long does delivery take?"
"""


def _read(
    path: str,
    *,
    text_column: str,
    label_column: str,
    id_column: str | None,
    payload: list[str] | None = None,
    task: str = "classification",
    label_delimiter: str | None = None,
    on_bad_rows: str = "error",
) -> list[Any]:
    """Rows of a data file (or - for stdin); the label and id columns are read when present."""
    from jiyi.data.readers import read_inputs

    extra = {c: "--payload" for c in payload or []}
    for with_id in (True, False):
        try:
            return read_inputs(
                path,
                text_column=text_column,
                label_column=label_column,
                on_bad_rows=on_bad_rows,
                extra_columns=extra | {id_column: "--id-column"}
                if with_id and id_column
                else extra,
                task=task,
                label_delimiter=label_delimiter,
            )
        except JiyiError as e:
            if not (with_id and f'no column "{id_column}"' in str(e)):
                raise
    raise AssertionError("unreachable")


def _read_rows(args: argparse.Namespace, path: str) -> list[Any]:
    return _read(
        path,
        text_column=args.text_column,
        label_column=args.label_column,
        id_column=args.id_column,
        payload=args.payload,
        task=args.task,
        label_delimiter=args.label_delimiter,
        on_bad_rows=args.on_bad_rows,
    )


def _columns(args: argparse.Namespace, rows: list[Any]) -> dict[str, Any]:
    """texts, labels, payload dicts and ids of the rows read by `_read`."""
    payload_cols = args.payload or []
    id_column = args.id_column
    ids = [(r.extra or {}).get(id_column) for r in rows]
    if all(i is None for i in ids):
        ids = None
    elif any(i is None or not str(i).strip() for i in ids):
        first = next(r for r, i in zip(rows, ids, strict=True) if i is None or not str(i).strip())
        raise JiyiError(
            f'--data line {first.line}: empty "{id_column}"; give every row an id, or none.'
        )
    labels: list[Any] | None = [
        list(r.label) if isinstance(r.label, tuple) else r.label for r in rows
    ]
    if all(x is None for x in labels):
        labels = None
    payload = (
        [{c: (r.extra or {}).get(c) for c in payload_cols} for r in rows] if payload_cols else None
    )
    return {
        "texts": [r.text for r in rows],
        "labels": labels,
        "payload": payload,
        "ids": [str(i) for i in ids] if ids is not None else None,
    }


def _progress(what: str) -> Any:
    import os

    def report(done: int) -> None:
        if os.environ.get("JIYI_NO_PROGRESS") != "1":
            print(f"{what} {done} rows", file=sys.stderr)

    return report


def cmd_build(args: argparse.Namespace) -> int:
    from jiyi.io import output_folder
    from jiyi.memory.knn import Memory
    from jiyi.scale import use_ray

    output_folder(args.output)  # a file there is refused before any work
    on_ray = use_ray(args)
    rows = _read_rows(args, args.data)
    cols = _columns(args, rows)
    settings = dict(
        labels=cols["labels"],
        payload=cols["payload"],
        ids=cols["ids"],
        task=args.task,
        pooling=args.pooling,
        layers=args.layers,
        max_length=args.max_length,
        batch_size=args.batch_size,
        index_params={
            k: v
            for k, v in (
                ("hnsw_m", args.hnsw_m),
                ("ef_search", args.ef_search),
                ("nprobe", args.nprobe),
                ("nlist", args.nlist),
                ("pq_m", args.pq_m),
                ("target_recall", args.target_recall),
                ("shard_rows", args.shard_rows),
            )
            if v is not None
        },
        overwrite=args.overwrite,
        prompts={"passage": args.prompt, "query": args.query_prompt},
    )
    if on_ray:  # vectors made, and an ivfpq index encoded, on Ray workers (jiyi.scale.memory)
        from jiyi.scale.memory import build_memory_on_ray

        memory = build_memory_on_ray(args, cols["texts"], settings)
    else:
        memory = Memory.build(
            args.output, args.model, cols["texts"], index=args.index,
            on_progress=_progress("embedded"), **settings,
        )  # fmt: skip
    if args.payload:
        memory.update_manifest(answer_column=args.payload[0])
    print(
        f"built {args.output}: {len(memory)} rows, index {memory.manifest['index']}",
        file=sys.stderr,
    )
    if args.validation:
        _tune(memory, args, run=args.model)
    elif args.payload and not memory.labels():  # an FAQ without validation questions
        _estimate_threshold(memory)
    print(json.dumps(memory.stats(), ensure_ascii=False))
    return 0


def _estimate_threshold(memory: Any) -> None:
    """Record an uncalibrated `ask` threshold measured on the FAQ's own questions."""
    from jiyi.memory.faq import entry_threshold

    settings = entry_threshold(memory)
    memory.update_manifest(ask=settings)
    if settings["threshold"] is None:
        print(
            "ask threshold: none (fewer than two different answers to measure one on): every "
            "question is answered; pass --validation to calibrate one.",
            file=sys.stderr,
        )
        return
    spread = settings["nearest_other"]
    print(
        f"ask threshold {settings['threshold']:.3f}, UNCALIBRATED (no --validation): the lower "
        f"quartile of each stored question's score on its nearest other entry (min "
        f"{spread['min']:.3f}, median {spread['median']:.3f}, {settings['n_measured']} "
        "questions); `ask` abstains on questions unrelated to every entry. Pass --validation "
        "(or run `jiyi memory tune`) to calibrate it.",
        file=sys.stderr,
    )


def _tune(memory: Any, args: argparse.Namespace, run: str | None) -> None:
    """Keep the validation rows, then choose what they can choose: the memory-only classifier
    and (for a fine-tuned run) k, temperature and λ; or the FAQ abstention threshold."""
    from jiyi.memory.faq import calibrate
    from jiyi.memory.predict import (
        augment_settings,
        is_classifier_run,
        memory_classifier,
        save_validation,
    )
    from jiyi.predict import load

    memory_task = memory.manifest["task"]
    rows = _read(
        args.validation,
        text_column=args.text_column,
        label_column=args.label_column,
        id_column=args.id_column,
        task=memory_task,
        label_delimiter=getattr(args, "label_delimiter", None),
    )
    texts = [r.text for r in rows]
    if memory.labels():
        labels = [list(r.label) if isinstance(r.label, tuple) else r.label for r in rows]
        if all(x is None for x in labels):
            raise JiyiError(
                f'--validation {args.validation}: no labels in column "{args.label_column}"; '
                "pass --label-column NAME."
            )
        save_validation(memory, texts, labels)
        clf = memory_classifier(memory)
        print(
            f"memory-only classifier: {clf.method} ({clf.evaluated_on}; accuracy by method "
            f"{clf.scores})",
            file=sys.stderr,
        )
        if run and is_classifier_run(run):
            settings = augment_settings(load(run), memory, retune=True)
            print(
                f"kNN-augmented: k={settings['k']}, temperature={settings['temperature']}, "
                f"λ={settings['lambda']}: validation {settings['validation_score']} vs model "
                f"alone {settings['model_alone_score']}",
                file=sys.stderr,
            )
        return
    # an FAQ: validation questions name the id (or the answer) they should get, or none
    answer = memory.manifest.get("answer_column")
    if any(r.extra and args.id_column in r.extra for r in rows):
        expected = [(r.extra or {}).get(args.id_column) for r in rows]
        by = "id"
    else:
        rows = _read(
            args.validation,
            text_column=args.text_column,
            label_column=args.label_column,
            id_column=None,
            payload=[answer] if answer else [],
        )
        if not answer:
            raise JiyiError(
                f"--validation {args.validation}: no {args.id_column!r} column to tell which "
                "FAQ entry each question should match (build the memory with --payload ANSWER "
                "to match by answer instead)."
            )
        expected = [(r.extra or {}).get(answer) for r in rows]
        by = "answer"
    expected = [None if e is None or not str(e).strip() else str(e) for e in expected]
    result = calibrate(memory, [r.text for r in rows], expected, by=by)
    memory.update_manifest(ask=result)
    model = result["confidence"]
    how = (
        "matched by question and answer; confidence = sigmoid("
        + " + ".join(f"{w}·{f}" for w, f in zip(model["weights"], model["features"], strict=True))
        + f" {'-' if model['bias'] < 0 else '+'} {abs(model['bias'])})"
        if model
        else "matched by question; threshold on the score"
    )
    print(
        f"ask threshold {result['threshold']} ({how}): {result['accuracy']:.1%} of validation "
        f"questions handled right, {result['answered']:.0%} answered (precision "
        f"{result['precision']})",
        file=sys.stderr,
    )


def cmd_add(args: argparse.Namespace) -> int:
    from jiyi.memory.knn import Memory

    memory = Memory.open(args.memory, model=args.model)
    args.task = memory.manifest["task"]
    rows = _read_rows(args, args.data)
    cols = _columns(args, rows)
    ids = memory.add(cols["texts"], labels=cols["labels"], payload=cols["payload"], ids=cols["ids"])
    shown = f"{ids[0]}..{ids[-1]}" if len(ids) > 1 else ids[0]
    print(f"added {len(ids)} rows (ids {shown}); the memory holds {len(memory)}", file=sys.stderr)
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    from jiyi.memory.knn import Memory

    ids = list(args.ids)
    if args.ids_file:
        with open(args.ids_file, encoding="utf-8") as f:
            ids += [line.strip() for line in f if line.strip()]
    if not ids:
        raise JiyiError("memory forget: name ids (ID ... or --ids-file FILE).")
    memory = Memory.open(args.memory)
    n = memory.forget(ids)
    print(f"forgot {n} rows; the memory holds {len(memory)}", file=sys.stderr)
    return 0


def _texts(args: argparse.Namespace, what: str) -> list[str]:
    from jiyi.data.readers import read_inputs

    if args.texts and args.input:
        raise JiyiError(f"{what}: give texts or --input FILE, not both.")
    if args.texts:
        texts = list(args.texts)
    else:
        texts = [e.text for e in read_inputs(args.input or "-", text_column=args.text_column)]
    if not texts or any(not t.strip() for t in texts):
        raise JiyiError(f"{what}: a query is empty; give some text.")
    return texts


def cmd_query(args: argparse.Namespace) -> int:
    from jiyi.memory.knn import Memory

    memory = Memory.open(args.memory, model=args.model)
    texts = _texts(args, "memory query")
    for text, hits in zip(texts, memory.query(texts, k=args.k, prompt=args.prompt), strict=True):
        sys.stdout.write(json.dumps({"query": text, "hits": hits}, ensure_ascii=False) + "\n")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from jiyi.memory.knn import Memory

    print(json.dumps(Memory.open(args.memory).stats(), indent=2, ensure_ascii=False))
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from jiyi.memory.knn import Memory

    memory = Memory.open(args.memory)
    memory.compact()
    print(f"compacted {args.memory}: generation {memory.state.generation}", file=sys.stderr)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from jiyi.memory.knn import Memory

    memory = Memory.open(args.memory, model=args.model)
    if args.run:
        from jiyi.memory.predict import is_classifier_run

        if not is_classifier_run(args.run):
            raise JiyiError(f"--run {args.run}: not a fine-tuned classification run.")
    _tune(memory, args, run=args.run)
    print(json.dumps(memory.stats()["tuned"], ensure_ascii=False))
    return 0


THRESHOLD_FROM = {  # how `jiyi ask` names where its threshold came from
    "validation": "(calibrated)",
    "entries": "(uncalibrated: from the FAQ's own questions)",
    "given": "(--threshold)",
    None: "no threshold: every question answered",
}


def cmd_ask(args: argparse.Namespace) -> int:
    from jiyi.memory.faq import ask
    from jiyi.memory.knn import Memory

    memory = Memory.open(args.memory, model=args.model)
    texts = _texts(args, "ask")
    results = ask(memory, texts, top_k=args.top_k, threshold=args.threshold)
    for r in results:
        if args.json:
            sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
            continue
        sure = f"; confidence {r['confidence']:.3f}" if r["confidence"] is not None else ""
        kind = THRESHOLD_FROM[r["threshold_from"]]
        if r["answered"]:
            print(f"{r['answer']}")
            bar = f"threshold {r['threshold']:.3f} {kind}" if r["threshold"] is not None else kind
            print(
                f"  (score {r['score']:.3f}{sure}; {bar}; matched: {r['matched_question']!r})",
                file=sys.stderr,
            )
        else:
            print("no confident answer")
            what = "confidence" if r["confidence"] is not None else "score"
            value = r["confidence"] if r["confidence"] is not None else r["score"]
            print(
                f"  (best {what} {value:.3f} < threshold {r['threshold']:.3f} {kind}; closest: "
                f"{r['matched_question']!r})",
                file=sys.stderr,
            )
        for alt in r["alternatives"]:
            print(f"  alternative ({alt['score']:.3f}): {alt['answer']}")
    return 0


def predict_with_memory(args: argparse.Namespace, texts: list[str], pairs: Any) -> list[dict]:
    """`jiyi predict [RUN_DIR] --memory MEM`: kNN-augmented with a run, memory-only without."""
    from jiyi.memory.knn import Memory
    from jiyi.memory.predict import AugmentedPredictor, MemoryPredictor, check_model_flag

    memory = Memory.open(args.memory)
    check_model_flag(memory, args.model)
    if args.run_dir:
        from jiyi.predict import load

        predictor = AugmentedPredictor(load(args.run_dir, batch_size=args.batch_size), memory)
        return predictor.predict(texts, pairs, neighbours=args.neighbours) if texts else []
    if pairs is not None:
        raise JiyiError("--memory without RUN_DIR: a memory classifies single texts, not pairs.")
    mp = MemoryPredictor(memory, method=args.memory_method)
    return mp.predict(texts, neighbours=args.neighbours) if texts else []


def add_parsers(verbs: Any) -> None:
    """Add `memory` (with its actions) and `ask` to the `jiyi` sub-parsers."""
    p = verbs.add_parser(
        "memory",
        help="a kNN memory: build, add, forget, query, stats, tune, compact",
        description="A non-parametric memory: texts embedded into a FAISS index plus a durable "
        "row store (ids, texts, labels, payload). Predictions and answers can use it, and it "
        "learns by adding rows, without retraining.",
        epilog=MEMORY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="memory_verb", metavar="ACTION", required=True)

    q = actions.add_parser(
        "build",
        help="embed a data file into a new memory",
        description="Embed every row of --data with MODEL_OR_RUN into a new memory folder. "
        "With --validation, choose the memory-only classifier, tune kNN-augmented prediction "
        "(when MODEL_OR_RUN is a fine-tuned run) or calibrate the FAQ abstention threshold. "
        "An FAQ (--payload ANSWER) built without --validation gets an uncalibrated threshold "
        "measured on its own questions: `ask` then abstains on questions unrelated to every "
        "entry.",
    )
    q.add_argument(
        "model",
        metavar="MODEL_OR_RUN",
        help="the alias minilm, a Hugging Face model folder, or a jiyi run directory",
    )
    q.add_argument(
        "--data", required=True, metavar="FILE", help="rows: CSV, TSV, JSONL, Parquet, .txt"
    )
    q.add_argument("--output", required=True, metavar="DIR", help="the memory folder to create")
    q.add_argument(
        "--validation",
        metavar="FILE",
        help="labelled rows (classification), or questions with the id they should match "
        "(an FAQ; empty id = no answer)",
    )
    _row_flags(q)
    q.add_argument(
        "--task",
        choices=("classification", "multilabel"),
        default="classification",
        help="one label per row, or several (a JSON list or a delimited string)",
    )
    q.add_argument("--label-delimiter", help="separator of multilabel strings (default: | ; ,)")
    q.add_argument(
        "--index",
        choices=("auto", "flat", "hnsw", "ivf", "ivfpq"),
        default="auto",
        help="flat: exact; hnsw / ivf: approximate, for large memories (auto: flat below "
        "100,000 rows, else hnsw); ivfpq: compressed, inverted lists on disk, built shard by "
        "shard, for memories larger than RAM",
    )
    q.add_argument("--hnsw-m", type=int, help="hnsw: links per node (default 32)")
    q.add_argument(
        "--ef-search", type=int, help="hnsw: candidates per query; recall vs speed (default 256)"
    )
    q.add_argument(
        "--nprobe",
        type=int,
        help="ivf: cells searched per query (default: cells / 32, at least 16); ivfpq: "
        "default tuned at build time to --target-recall",
    )
    q.add_argument("--nlist", type=int, help="ivfpq: k-means cells (default 4 x sqrt(rows))")
    q.add_argument("--pq-m", type=int, help="ivfpq: PQ bytes per vector (default dim / 4)")
    q.add_argument(
        "--target-recall",
        type=float,
        help="ivfpq: recall@10 against exact search that nprobe is tuned to reach, measured "
        "on 1000 stored rows each left out of its own results (default 0.95)",
    )
    q.add_argument(
        "--shard-rows", type=int, help="ivfpq: vectors encoded per shard (default 100000)"
    )
    q.add_argument("--pooling", choices=("cls", "mean", "max"), default="mean", help="default mean")
    q.add_argument(
        "--layers", default="-1", metavar="SPEC", help="hidden states to average (default -1)"
    )
    if hasattr(q, "_negative_number_matcher"):
        q._negative_number_matcher = re.compile(r"-\.?\d")
    q.add_argument("--max-length", type=int, default=512, help="tokens kept per text (head)")
    q.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    q.add_argument(
        "--prompt",
        metavar="TEXT",
        help="put TEXT before every row (default: the model's passage prompt, 'passage: ' for "
        "me5-small, none for most models; '' for none)",
    )
    q.add_argument(
        "--query-prompt",
        metavar="TEXT",
        help="put TEXT before every later query (default: the model's query prompt, 'query: ' "
        "for me5-small); both prompts are recorded in the memory and its fingerprint",
    )
    q.add_argument("--overwrite", action="store_true", help="replace an existing --output folder")
    q.add_argument("--on-bad-rows", choices=("error", "skip"), default="error")
    from jiyi.scale import add_engine_flags

    add_engine_flags(q, shard_rows=False)  # its --shard-rows is the ivfpq index's
    q.set_defaults(func=cmd_build)

    q = actions.add_parser("add", help="add rows from a file or stdin (learn without retraining)")
    q.add_argument("memory", metavar="MEM_DIR")
    q.add_argument(
        "--data",
        default="-",
        metavar="FILE|-",
        help="rows: CSV, TSV, JSONL, Parquet, .txt, or - for stdin (JSONL or one text per line)",
    )
    _row_flags(q)
    q.add_argument("--label-delimiter", help="separator of multilabel strings (default: | ; ,)")
    q.add_argument("--model", help="where the memory's model is now, if it moved")
    q.add_argument("--on-bad-rows", choices=("error", "skip"), default="error")
    q.set_defaults(func=cmd_add)

    q = actions.add_parser("forget", help="remove rows by id (erased from disk)")
    q.add_argument("memory", metavar="MEM_DIR")
    q.add_argument("ids", nargs="*", metavar="ID")
    q.add_argument("--ids-file", metavar="FILE", help="one id per line")
    q.set_defaults(func=cmd_forget)

    q = actions.add_parser("query", help="the k nearest rows of each text (JSONL)")
    q.add_argument("memory", metavar="MEM_DIR")
    q.add_argument("texts", nargs="*", metavar="TEXT")
    q.add_argument("--input", metavar="FILE|-", help="texts to query, one per line or a table")
    q.add_argument("--text-column", default="text", help="text column of --input")
    q.add_argument("-k", type=int, default=5, help="neighbours per text (default 5)")
    q.add_argument("--model", help="the model to embed with; must be the memory's (fingerprint)")
    q.add_argument(
        "--prompt",
        metavar="TEXT",
        help="put TEXT before every query instead of the memory's query prompt ('' for none)",
    )
    q.set_defaults(func=cmd_query)

    q = actions.add_parser("stats", help="rows, labels, index, model, tuned settings (JSON)")
    q.add_argument("memory", metavar="MEM_DIR")
    q.set_defaults(func=cmd_stats)

    q = actions.add_parser(
        "tune", help="choose settings on a validation file (classifier, kNN-augmented, FAQ)"
    )
    q.add_argument("memory", metavar="MEM_DIR")
    q.add_argument("--validation", required=True, metavar="FILE")
    q.add_argument("--run", metavar="RUN_DIR", help="also tune kNN-augmented prediction for it")
    q.add_argument("--text-column", default="text", help="text column (default text)")
    q.add_argument("--label-column", default="label", help="label column (default label)")
    q.add_argument("--id-column", default="id", help="FAQ: the expected id column (default id)")
    q.add_argument("--model", help="where the memory's model is now, if it moved")
    q.set_defaults(func=cmd_tune)

    q = actions.add_parser("compact", help="fold the log into a new snapshot")
    q.add_argument("memory", metavar="MEM_DIR")
    q.set_defaults(func=cmd_compact)

    p = verbs.add_parser(
        "ask",
        help="answer questions from an FAQ memory (or abstain)",
        description="The answer of the stored question nearest to each question, its score and "
        "the matched question; 'no confident answer' below the memory's threshold (calibrated "
        "on --validation questions, or uncalibrated: measured on the FAQ's own questions; "
        "--json says which in threshold_from and calibrated).",
    )
    p.add_argument("memory", metavar="MEM_DIR")
    p.add_argument("texts", nargs="*", metavar="QUESTION")
    p.add_argument("--input", metavar="FILE|-", help="questions, one per line or a table")
    p.add_argument("--text-column", default="text", help="question column of --input")
    p.add_argument("--top-k", type=int, default=1, help="also show the next best answers")
    p.add_argument(
        "--threshold",
        type=float,
        help="abstain below this confidence (or score, for a memory without a confidence "
        "model; default: the memory's, calibrated or uncalibrated)",
    )
    p.add_argument("--model", help="where the memory's model is now, if it moved")
    p.add_argument("--json", action="store_true", help="one JSON line per question")
    p.set_defaults(func=cmd_ask)


def _row_flags(q: argparse.ArgumentParser) -> None:
    q.add_argument("--text-column", default="text", help="text column (default text)")
    q.add_argument(
        "--label-column", default="label", help="label column, read when present (default label)"
    )
    q.add_argument(
        "--payload",
        action="append",
        metavar="COLUMN",
        help="a column kept with each row and returned with it (e.g. answer); repeatable",
    )
    q.add_argument("--id-column", default="id", help="row ids, read when present (default id)")
