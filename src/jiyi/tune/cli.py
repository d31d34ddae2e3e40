"""`jiyi tune`: the verb's flags (`add_parsers`) and the thin function that runs it (`cmd_tune`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from jiyi.config import TrainConfig, add_dataclass_flags, build_config
from jiyi.errors import JiyiError

# TrainConfig fields the study sets per trial (output) or has no use for
TUNE_OWNED = ("output", "resume", "test")
TUNE_FLAGS = ("space", "trials", "budget", "pruner", "direction", "startup_trials", "config")
EXAMPLES = """examples:
  jiyi tune --train data/rotten-tomatoes/train.csv --validation data/rotten-tomatoes/validation.csv \\
            --model minilm --trials 20 --budget 30m --output runs/tune
  jiyi tune --train data/rotten-tomatoes/train.csv --validation data/rotten-tomatoes/validation.csv \\
            --model minilm --space space.yaml --metric f1_macro --pruner halving --output runs/tune-f1
  # a space file (keys: jiyi train flags):
  #   lr: loguniform(1e-5, 3e-4)
  #   batch_size: [16, 32]
  #   epochs: int(1, 4)
  #   warmup_ratio: uniform(0, 0.2)
"""


def cmd_tune(args: argparse.Namespace) -> int:
    from rich.console import Console

    try:
        import optuna  # noqa: F401
    except ImportError:
        raise JiyiError("jiyi tune needs Optuna: pip install 'jiyi[tune]'") from None
    from jiyi.tune.study import TuneOptions, parse_duration, run_tune

    values = {k: v for k, v in vars(args).items() if k not in TUNE_FLAGS}
    config = build_config(TrainConfig, values, args.config)
    config.output = args.output
    explicit = {k for k, v in values.items() if v is not None and k != "output"}
    options = TuneOptions(
        trials=args.trials,
        budget=None if args.budget is None else parse_duration(args.budget),
        space=args.space,
        pruner=args.pruner,
        direction=args.direction,
        startup_trials=args.startup_trials,
    )
    console = Console(stderr=True, soft_wrap=True)
    if config.test:  # from --config: the trials are compared on validation only
        console.print(
            f"[yellow]test: {config.test} of --config is not used by the trials; evaluate the "
            f"best one after: jiyi evaluate {args.output}/best --data {config.test}[/]"
        )
        config.test = None
    summary = run_tune(config, options, console, explicit)
    best = summary.get("best")
    if best:
        console.print(
            f"best: trial {best['trial']}, {summary['metric']} {best['value']:.4f} "
            f"({', '.join(f'{k}={v}' for k, v in best['params'].items())}) -> {best['run_dir']}"
        )
    console.print(f"written: {', '.join(summary['written'])}")
    print(json.dumps(summary, default=str))
    return 0


def add_parsers(verbs: Any) -> None:
    p = verbs.add_parser(
        "tune",
        help="hyperparameter search over jiyi train flags (Optuna)",
        usage="%(prog)s --train FILE --output DIR [--space FILE.yaml] [--trials N] "
        "[--budget 30m] [--metric METRIC] [--pruner {median,halving,none}] [jiyi train flags]",
        description="Search `jiyi train` settings with Optuna (TPE, seeded by --seed): every "
        "trial is a normal run folder DIR/trials/NNN trained with the other flags given here, "
        "hopeless trials are pruned at their validation passes, and at the end DIR/best is the "
        "best trial's run, DIR/trials.csv the table and DIR/tune.html the plots. The study "
        "lives in DIR/study.db: rerun the same command to continue it after a kill or with a "
        "larger --trials, or start it in several processes at once to share the work. Needs "
        "the tune extra: pip install 'jiyi[tune]'.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    own = p.add_argument_group("search")
    own.add_argument(
        "--output", metavar="DIR", help="folder of the study: study.db, trials/, best, "
        "trials.csv, tune.html (required)"
    )  # fmt: skip
    own.add_argument(
        "--space",
        metavar="FILE.yaml",
        help="the search space: `flag: loguniform(a, b) | uniform(a, b) | int(a, b) | "
        "logint(a, b) | [v1, v2, ...]` per line (default: lr around the task's preset, "
        "batch_size [16, 32], warmup_ratio uniform(0, 0.2), weight_decay [0, 0.01, 0.1], "
        "less the flags given; a continued study keeps its space.yaml)",
    )
    own.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help="trials the study holds when done, earlier calls' included (default 20, or no "
        "limit with --budget alone)",
    )
    own.add_argument(
        "--budget",
        metavar="TIME",
        help="time this call may take: 90s, 30m, 2h; no trial starts after it and the one in "
        "flight stops at its next validation pass (recorded as pruned)",
    )
    own.add_argument(
        "--pruner",
        choices=("median", "halving", "none"),
        default="median",
        help="stop a trial whose validation --metric at a validation pass is worse than the "
        "median of earlier trials at that pass (median), successive halving (halving), or "
        "never (default: median)",
    )
    own.add_argument(
        "--direction",
        choices=("maximize", "minimize"),
        help="default: as --metric (loss, log_loss, ece are minimised, the rest maximised)",
    )
    own.add_argument(
        "--startup-trials",
        type=int,
        default=5,
        metavar="N",
        help="trials sampled at random before TPE models the results and before the median "
        "pruner prunes (default 5)",
    )
    own.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="YAML file of `jiyi train` settings shared by every trial (keys as the flags)",
    )
    add_dataclass_flags(p, TrainConfig, skip=TUNE_OWNED)
    p.set_defaults(func=cmd_tune)
