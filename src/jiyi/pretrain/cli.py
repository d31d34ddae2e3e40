"""`jiyi pretrain`: the verb's flags come from `PretrainConfig`, as `jiyi train`'s from `TrainConfig`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from jiyi.config import PRESETS, PretrainConfig, add_dataclass_flags, build_config


def cmd_pretrain(args: argparse.Namespace) -> int:
    from jiyi.pretrain.mlm import pretrain

    config = build_config(PretrainConfig, vars(args), args.settings)
    explicit = {k for k, v in vars(args).items() if v is not None}
    summary = pretrain(config, explicit=explicit)
    print(json.dumps(summary, default=str))
    return 0


def add_parsers(verbs: Any) -> None:
    p = verbs.add_parser(
        "pretrain",
        help="masked-LM pretraining, from scratch or continued (domain adaptation)",
        description="Pretrain an encoder with masked LM on raw text: from scratch (--config "
        f"{'|'.join(PRESETS)}|FILE with --tokenizer) or continued from an existing encoder "
        "(--from MODEL). The corpus is streamed; the model lands in OUTPUT/model, a Hugging Face "
        "folder that `jiyi train --model OUTPUT` fine-tunes. Every flag is also a key of the "
        "YAML --settings file; flags win.",
        epilog="examples:\n"
        "  jiyi tokenizer train --corpus data/zh/corpus.txt --vocab-size 12000 --chinese "
        "--output runs/zh-tok\n"
        "  jiyi pretrain --corpus data/zh/corpus.txt --validation data/zh/heldout.txt "
        "--config small --tokenizer runs/zh-tok --whole-word-mask --max-steps 2000 "
        "--output runs/zh-bert\n"
        "  jiyi pretrain --corpus data/rt/train.csv.txt --from minilm --epochs 2 "
        "--output runs/minilm-rt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--settings", metavar="FILE.yaml", help="YAML file of settings (keys as the flags, with _)"
    )
    p.add_argument(
        "--from",
        dest="from_model",
        metavar="MODEL",
        default=None,
        help="Continue pretraining this encoder (domain adaptation): the alias `minilm`, a "
        "folder, a run. An MLM head tied to the input embeddings is created when it has none.",
    )
    add_dataclass_flags(p, PretrainConfig, skip=("from_model",))
    p.set_defaults(func=cmd_pretrain)
