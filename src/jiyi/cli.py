"""The `jiyi` command: thin verbs that read their settings and call the library.

A user error (JiyiError) prints one message and exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from jiyi import __version__
from jiyi.cli_help import JiyiArgumentParser, verb_map
from jiyi.config import TrainConfig, add_dataclass_flags, build_config
from jiyi.errors import JiyiError

EXAMPLES = """examples:
  jiyi data export rotten-tomatoes --output data/rotten-tomatoes
  jiyi train --model minilm --train data/rotten-tomatoes/train.csv --validation data/rotten-tomatoes/validation.csv \\
             --test data/rotten-tomatoes/test.csv --output runs/demo
  jiyi evaluate runs/demo --data data/rotten-tomatoes/test.csv
  echo "a moving, funny film" | jiyi predict runs/demo
  jiyi memory build runs/demo --data data/rotten-tomatoes/train.csv --validation data/rotten-tomatoes/validation.csv \\
                    --output runs/demo-memory
  echo "a moving, funny film" | jiyi predict runs/demo --memory runs/demo-memory --neighbours 3
"""
TRAIN_USAGE = (
    "%(prog)s --train FILE --output RUN_DIR [--model MODEL] [--task TASK] [--validation FILE] "
    "[--test FILE] [--config FILE.yaml] [options]"
)
TRAIN_EXAMPLES = """examples:
  # classification (columns text,label); unset flags get defaults chosen for the data, printed
  jiyi data export rotten-tomatoes --output data/rotten-tomatoes
  jiyi train --model minilm --train data/rotten-tomatoes/train.csv --validation data/rotten-tomatoes/validation.csv \\
             --test data/rotten-tomatoes/test.csv --output runs/demo
  # your own semicolon-separated file, columns named otherwise
  jiyi train --train tickets.csv --delimiter ";" --text-column body --label-column queue \\
             --output runs/tickets
  # NER on CoNLL files (token<TAB>tag), trained with BIOES tags
  jiyi data export twitter-ner --output data/ner
  jiyi train --task ner --train data/ner/train.conll --validation data/ner/validation.conll \\
             --test data/ner/test.conll --tag-scheme BIOES --output runs/ner
  # settings from a YAML file, one overridden; continue a killed run
  jiyi train --config configs/minilm-sentiment.yaml --lr 3e-5 --output runs/demo-lr
  jiyi train --output runs/demo --resume
"""


def cmd_train(args: argparse.Namespace) -> int:
    from jiyi.data.reading import reading
    from jiyi.tasks import adapter, get_task
    from jiyi.train import train

    config = build_config(TrainConfig, vars(args), args.config)
    explicit = {k for k, v in vars(args).items() if v is not None}
    with reading(delimiter=config.delimiter):  # a --delimiter of the YAML file too
        summary = train(config, explicit=explicit)
    if "test" in summary:
        adapter(get_task(summary["task"])).show_metrics(
            summary.pop("test"), f"test ({summary['test_file']})"
        )
        eval_dir = Path(summary["run_dir"]) / "eval"
        report = eval_dir / "report.html"
        print(f"report: {report}" if report.is_file() else f"written: {eval_dir}", file=sys.stderr)
    print(json.dumps(summary, default=str))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from jiyi.tasks import adapter, refuse_unless, task_of_run

    spec = task_of_run(args.run_dir)
    refuse_unless(spec, "evaluate", "jiyi evaluate")
    if args.slice_by:
        refuse_unless(spec, "slice_by", "--slice-by")
    from jiyi.card import write_card_safely

    task = adapter(spec)
    metrics, out_dir = task.evaluate(args)
    task.show_metrics(metrics, args.data)
    write_card_safely(args.run_dir, eval_data=str(args.data), written_to=out_dir)  # README.md
    print(f"written: {out_dir}", file=sys.stderr)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from jiyi.io import output_file, write_predictions
    from jiyi.scale import use_ray
    from jiyi.tasks import DEFAULT_TASK, adapter, refuse_unless, task_of_run

    if use_ray(args):  # Parquet shards into a folder, on Ray workers (jiyi.scale)
        from jiyi.scale.jobs import predict_on_ray

        return predict_on_ray(args)
    output_file(args.output)  # a folder there is refused before any work
    if args.run_dir is None and args.memory is None:
        raise JiyiError("predict: give RUN_DIR, --memory MEM_DIR, or both.")
    if args.memory is None and (args.model or args.neighbours):
        flag = "--model" if args.model else "--neighbours"
        raise JiyiError(f"{flag} goes with --memory MEM_DIR.")
    spec = DEFAULT_TASK if args.run_dir is None else task_of_run(args.run_dir)
    refuse_unless(spec, "predict", "jiyi predict")
    if args.memory is not None:
        refuse_unless(spec, "memory", "--memory")
    write_predictions(args.output, adapter(spec).predict(args))
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    from jiyi.data.adapters import ADAPTERS

    for name, adapter in ADAPTERS.items():
        print(f"{name:20s} {adapter.task:15s} {adapter.description}")
    return 0


def cmd_data_export(args: argparse.Namespace) -> int:
    from jiyi.data.adapters import export_dataset
    from jiyi.io import output_folder

    output_folder(args.output)  # a file there is refused before any work
    written = export_dataset(args.name, args.output, seed=args.seed)
    for name, (path, n) in written.items():
        unit = "lines" if path.suffix == ".txt" else "rows"
        print(f"{name:11s} {n:6d} {unit:5s}  {path}")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from jiyi.env import environment_report

    if args.bench:
        from jiyi.machine import machine_bench, render_bench

        for flag, value in (("--batch-size", args.batch_size), ("--max-length", args.max_length)):
            if value < 1:
                raise JiyiError(f"{flag} must be at least 1, got {value}.")
        bench = machine_bench(args.model, args.batch_size, args.max_length)
        print(json.dumps(bench, indent=2) if args.json else render_bench(bench))
        return 0
    report = environment_report()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"- {key}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = JiyiArgumentParser(
        prog="jiyi",
        usage="jiyi [-h] [--version] VERB ...",
        description="jiyi (记忆): fine-tune, evaluate, inspect, extend (a kNN memory), compress and "
        "serve pretrained transformer encoders, offline.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"jiyi {__version__}")
    # the verbs are listed in groups in the epilog (jiyi.cli_help.verb_map), not by argparse
    verbs = parser.add_subparsers(
        dest="verb", metavar="VERB", required=True, help=argparse.SUPPRESS, prog="jiyi"
    )

    p = verbs.add_parser(
        "train",
        help="fine-tune a model: classification, multilabel, NER, QA or seq2seq",
        usage=TRAIN_USAGE,
        description="Fine-tune a pretrained encoder on labelled data for one task (--task): "
        "classification (the default), multilabel, ner, qa or seq2seq. Flags the user leaves "
        "unset get defaults chosen for the task, the model and the data (printed when training "
        "starts, saved in RUN_DIR/config.yaml). Every flag is also a key of the YAML --config "
        "file; flags win over it.",
        epilog=TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataclass_flags(
        p, TrainConfig, config_file="YAML file of settings (keys as the flags, with _ or -)"
    )
    p.set_defaults(func=cmd_train)

    p = verbs.add_parser(
        "evaluate",
        help="evaluate a run on a labelled file",
        description="Metrics, plots, report.html and errors.jsonl for a labelled file.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a jiyi run directory (or its model/ folder)")
    p.add_argument(
        "--data",
        required=True,
        metavar="FILE",
        help="labelled data: CSV, TSV, JSONL, Parquet, datasets folder",
    )
    p.add_argument("--output", metavar="DIR", help="where to write (default: RUN_DIR/eval)")
    add_labelled_data_flags(p)
    p.add_argument(
        "--slice-by",
        action="append",
        metavar="COLUMN",
        help="also report every metric per value of this column of --data, with 95%% intervals "
        "and the gap between the best and the worst slice (repeat for several columns)",
    )
    p.set_defaults(func=cmd_evaluate)

    p = verbs.add_parser(
        "predict",
        help="predict labels (or entities) for texts (JSONL out)",
        description="One JSON line per input text: text, label, score, probabilities; input "
        "order kept. With --memory: kNN-augmented (RUN_DIR given) or memory-only (no RUN_DIR). "
        "A NER run gives text and entities (start, end, text, type, score; character offsets "
        "into the text), or tokens and tags for pre-tokenised CoNLL/JSONL input.",
    )
    p.add_argument(
        "run_dir",
        nargs="?",
        metavar="RUN_DIR",
        help="a jiyi run directory (or its model/ folder); optional with --memory",
    )
    p.add_argument(
        "--input",
        default="-",
        metavar="FILE|-",
        help="texts: .txt (one per line), CSV/TSV/JSONL/Parquet, or - for stdin (default)",
    )
    p.add_argument(
        "--output",
        default="-",
        metavar="FILE|-",
        help="JSONL predictions (default: stdout); with --engine ray a folder of Parquet shards "
        "(columns row, [id,] label, score, probabilities) and manifest.json",
    )
    p.add_argument("--text-column", help="text column of a table input (default: the run's)")
    p.add_argument(
        "--text-pair-column", help="second-text column for pair models (default: the run's)"
    )
    add_delimiter_flag(p)
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    p.add_argument(
        "--memory",
        metavar="MEM_DIR",
        help="a memory (`jiyi memory build`): mixed into RUN_DIR's probabilities with the tuned "
        "k, temperature and λ, or, without RUN_DIR, the classifier on its own",
    )
    p.add_argument(
        "--model",
        help="with --memory and no RUN_DIR: the model to embed with (default: the memory's; "
        "it must match the memory's fingerprint)",
    )
    p.add_argument(
        "--memory-method",
        choices=("auto", "knn", "prototype", "logistic"),
        default="auto",
        help="memory-only classifier (default auto: the best on validation data, else by "
        "cross-validation on the memory)",
    )
    p.add_argument(
        "--neighbours",
        type=int,
        default=0,
        metavar="N",
        help="with --memory: list the N nearest rows that voted, with their weights",
    )
    from jiyi.scale import add_engine_flags

    add_engine_flags(p)
    p.set_defaults(func=cmd_predict)

    p = verbs.add_parser("data", help="offline data sets: list, export")
    data_verbs = p.add_subparsers(dest="data_verb", metavar="ACTION", required=True)
    q = data_verbs.add_parser("list", help="data sets that ship offline")
    q.set_defaults(func=cmd_data_list)
    q = data_verbs.add_parser(
        "export",
        help="write a data set: train/validation/test CSVs, or corpus.txt + heldout.txt for unlabeled text",
    )
    q.add_argument("name", metavar="NAME", help="a name from `jiyi data list`")
    q.add_argument("--output", required=True, metavar="DIR", help="folder to write the CSVs into")
    q.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    q.set_defaults(func=cmd_data_export)

    from jiyi.inspect.cli_vectors import add_parsers as add_vector_parsers

    add_vector_parsers(verbs)
    from jiyi.inspect.cli_explain import add_parsers as add_explain_parsers

    add_explain_parsers(verbs)
    from jiyi.bias import add_parsers as add_bias_parsers

    add_bias_parsers(verbs)
    from jiyi.memory.cli import add_parsers as add_memory_parsers

    add_memory_parsers(verbs)
    from jiyi.compress.cli import add_parsers as add_compress_parsers

    add_compress_parsers(verbs)
    from jiyi.serve.cli import add_parsers as add_serve_parsers

    add_serve_parsers(verbs)
    from jiyi.curve import add_parsers as add_curve_parsers

    add_curve_parsers(verbs)
    from jiyi.tune.cli import add_parsers as add_tune_parsers

    add_tune_parsers(verbs)

    from jiyi.pretrain.cli import add_parsers as add_pretrain_parsers
    from jiyi.pretrain.tokenizer import add_parsers as add_tokenizer_parsers

    add_pretrain_parsers(verbs)
    add_tokenizer_parsers(verbs)
    from jiyi.summarize_cli import add_parsers as add_summarize_parsers

    add_summarize_parsers(verbs)
    from jiyi.card import add_parsers as add_card_parsers

    add_card_parsers(verbs)
    from jiyi.calibrate_cli import add_parsers as add_calibrate_parsers

    add_labelled_data_flags(add_calibrate_parsers(verbs))
    from jiyi.audit import add_parsers as add_audit_parsers

    add_labelled_data_flags(add_audit_parsers(verbs))
    from jiyi.active.cli import add_parsers as add_select_parsers

    add_select_parsers(verbs)

    p = verbs.add_parser(
        "env",
        help="versions, devices, threads, allocator, offline state (for bug reports); --bench: "
        "this machine's speed for a model",
        description="Versions, devices, threads, the memory allocator (the jiyi command runs on "
        "jemalloc where it is installed; JIYI_ALLOCATOR=system keeps the system's) and the "
        "offline state, for bug reports. With "
        "--bench: the matrix-product peak (fp32, bf16 where the CPU has it), one training step "
        "and one prediction batch of --model at each precision, their MFU, and what --precision "
        "auto chooses (about 30 s for minilm; run it on an idle machine).",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--bench", action="store_true", help="measure this machine's speed for --model")
    p.add_argument("--model", default="minilm", help="the model --bench measures (default: minilm)")
    p.add_argument(
        "--batch-size", type=int, default=32, help="texts per --bench batch (default: 32)"
    )
    p.add_argument(
        "--max-length", type=int, default=128, help="tokens per --bench text (default: 128)"
    )
    p.set_defaults(func=cmd_env)
    parser.epilog = verb_map(verbs) + "\n" + EXAMPLES
    return parser


def add_labelled_data_flags(p: argparse.ArgumentParser) -> None:
    """The flags of a verb that reads a labelled file of a run (evaluate, calibrate): columns,
    bad rows, the delimiter, the forward-pass batch size."""
    p.add_argument("--text-column", help="text column (default: the one the run was trained with)")
    p.add_argument(
        "--label-column", help="label column (default: the one the run was trained with)"
    )
    p.add_argument(
        "--on-bad-rows",
        choices=("error", "skip"),
        default="error",
        help="stop at a bad row, or skip and count",
    )
    add_delimiter_flag(p)
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")


def add_delimiter_flag(parser: argparse.ArgumentParser) -> None:
    """`--delimiter CHAR` of a verb that reads CSV/TSV files (`jiyi.data.readers.reading`)."""
    parser.add_argument(
        "--delimiter",
        metavar="CHAR",
        help="CSV/TSV field delimiter (; tab | ,); by default guessed from the header and the "
        "first lines",
    )


def main(argv: Sequence[str] | None = None) -> int:
    from jiyi.allocator import reexec_with_jemalloc
    from jiyi.data.reading import reading

    if argv is None:  # the command itself, not a call from Python: on jemalloc where installed
        reexec_with_jemalloc()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed: its code
        return e.code if isinstance(e.code, int) else 2
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        # the readers' advice names --on-bad-rows or --delimiter only to a verb that has it
        with reading(delimiter=getattr(args, "delimiter", None), settings=vars(args)):
            return func(args)
    except JiyiError as e:
        print(f"jiyi {args.verb}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"jiyi {args.verb}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
