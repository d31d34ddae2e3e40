"""`jiyi pretrain`: the verb's flags come from `PretrainConfig`, as `jiyi train`'s from `TrainConfig`.

`--config` is the YAML file of settings, as in every verb; the architecture built from scratch is
`--architecture`. The old spellings (`--config tiny|small|base|FILE.json` for the architecture,
`--settings FILE.yaml` for the YAML file) still work for one release, with a warning.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from jiyi.config import PRESETS, PretrainConfig, add_dataclass_flags, build_config
from jiyi.runs import discard_if_unstarted


def deprecated_spellings(args: argparse.Namespace) -> None:
    """Move the old spellings to their new flags, each with one warning on stderr:
    `--config tiny` (not a YAML file) -> `--architecture tiny`; `--settings F` -> `--config F`."""
    if args.settings is not None:
        print(
            "jiyi pretrain: warning: --settings is deprecated; the YAML file of settings is "
            "--config FILE.yaml, as in the other verbs.",
            file=sys.stderr,
        )
        if args.config is None:
            args.config = args.settings
    if args.config is not None and not args.config.endswith((".yaml", ".yml")):
        print(
            f"jiyi pretrain: warning: --config {args.config} as the architecture is deprecated; "
            f"use --architecture {args.config} (--config is the YAML file of settings).",
            file=sys.stderr,
        )
        if args.architecture is None:
            args.architecture = args.config
        args.config = None


def cmd_pretrain(args: argparse.Namespace) -> int:
    from jiyi.pretrain.mlm import pretrain

    deprecated_spellings(args)
    config = build_config(PretrainConfig, vars(args), args.config)
    explicit = {k for k, v in vars(args).items() if v is not None}
    with discard_if_unstarted(config.output, config.resume):  # a failed start leaves no folder
        summary = pretrain(config, explicit=explicit)
    print(json.dumps(summary, default=str))
    return 0


def add_parsers(verbs: Any) -> None:
    p = verbs.add_parser(
        "pretrain",
        help="masked-LM pretraining, from scratch or continued (domain adaptation)",
        usage="%(prog)s --corpus FILES --output RUN_DIR (--from MODEL | --architecture "
        "ARCH --tokenizer DIR) [--config FILE.yaml] [options]",
        description="Pretrain an encoder with masked LM on raw text: from scratch (--architecture "
        f"{'|'.join(PRESETS)}|FILE with --tokenizer) or continued from an existing encoder "
        "(--from MODEL). The corpus is streamed; the model lands in OUTPUT/model, a Hugging Face "
        "folder that `jiyi train --model OUTPUT` fine-tunes. Every flag is also a key of the "
        "YAML --config file; flags win.",
        epilog="examples:\n"
        "  jiyi tokenizer train --corpus data/zh/corpus.txt --vocab-size 12000 --chinese "
        "--output runs/zh-tok\n"
        "  jiyi pretrain --corpus data/zh/corpus.txt --validation data/zh/heldout.txt "
        "--architecture small --tokenizer runs/zh-tok --whole-word-mask --max-steps 2000 "
        "--output runs/zh-bert\n"
        "  jiyi pretrain --corpus data/rotten-tomatoes/train.csv.txt --from minilm --epochs 2 "
        "--output runs/minilm-rt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups = add_dataclass_flags(
        p,
        PretrainConfig,
        skip=("from_model",),
        config_file="YAML file of settings (keys as the flags, with _ or -)",
    )
    groups["common"].add_argument(
        "--from",
        dest="from_model",
        metavar="MODEL",
        default=None,
        help="Continue pretraining this encoder (domain adaptation): the alias `minilm`, a "
        "folder, a run. An MLM head tied to the input embeddings is created when it has none.",
    )
    p.add_argument("--settings", metavar="FILE.yaml", help=argparse.SUPPRESS)  # deprecated
    p.set_defaults(func=cmd_pretrain)
