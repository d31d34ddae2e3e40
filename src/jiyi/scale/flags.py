"""The `--engine local|ray` flags of `jiyi embed`, `jiyi predict` and `jiyi memory build`.

Light on purpose: importing it imports neither ray nor torch, so `jiyi --help` stays fast.

>>> p = argparse.ArgumentParser(); add_engine_flags(p)
>>> use_ray(p.parse_args(["--engine", "ray", "--workers", "2"]))
True
>>> use_ray(p.parse_args(["--workers", "2"]))  # JiyiError: --workers goes with --engine ray ...
"""

from __future__ import annotations

import argparse
import importlib.util

from jiyi.errors import JiyiError

ENGINES = ("local", "ray")
# flag -> (argparse dest, default under --engine ray)
RAY_FLAGS = {
    "--workers": ("workers", 1),
    "--cpus-per-worker": ("cpus_per_worker", 1.0),
    "--num-gpus-per-worker": ("num_gpus_per_worker", 0.0),
    "--address": ("address", None),
    "--shard-rows": ("shard_rows", 10000),
}
INSTALL = "pip install 'jiyi[scale]'"


def add_engine_flags(p: argparse.ArgumentParser, *, shard_rows: bool = True) -> None:
    """Add --engine and the Ray settings (--workers, --cpus-per-worker, --num-gpus-per-worker,
    --address, and --shard-rows unless `shard_rows` is False: a verb whose --shard-rows means
    something else) to a verb's parser."""
    p.set_defaults(ray_flags=[f for f in RAY_FLAGS if shard_rows or f != "--shard-rows"])
    g = p.add_argument_group(
        "engine",
        "--engine ray runs the model on Ray workers (the extra jiyi[scale]): the input (a file, "
        "a folder or a glob) is cut into shards, each worker loads the model once, and the "
        "results go to --output as Parquet shards plus manifest.json; running the same command "
        "again skips the shards already written (see docs/scale.md)",
    )
    g.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: this process (default); ray: Ray workers",
    )
    g.add_argument(
        "--workers", type=int, metavar="N", help="ray: model workers (actors), each loads the "
        "model once (default 1)"
    )  # fmt: skip
    g.add_argument(
        "--cpus-per-worker",
        type=float,
        metavar="N",
        help="ray: CPUs reserved per worker, also its torch threads (default 1)",
    )
    g.add_argument(
        "--num-gpus-per-worker",
        type=float,
        metavar="N",
        help="ray: GPUs per worker, e.g. 1 or 0.5 (default 0: CPU)",
    )
    g.add_argument(
        "--address",
        metavar="ADDR",
        help="ray: an existing cluster (auto, or ray://host:10001); default: start a local Ray "
        "with --workers x --cpus-per-worker CPUs",
    )
    if shard_rows:
        g.add_argument(
            "--shard-rows",
            type=int,
            metavar="N",
            help="ray: input rows per shard, the unit of work and of resuming (default 10000)",
        )


def use_ray(args: argparse.Namespace) -> bool:
    """Whether the verb runs on Ray. Fills the Ray flags' defaults and checks them; a Ray flag
    without --engine ray, or a bad value, is a JiyiError naming the flag."""
    flags = {flag: RAY_FLAGS[flag] for flag in args.ray_flags}
    given = [flag for flag, (dest, _) in flags.items() if getattr(args, dest) is not None]
    if args.engine != "ray":
        if given:
            raise JiyiError(f"{given[0]} goes with --engine ray.")
        return False
    for dest, default in flags.values():
        if getattr(args, dest) is None:
            setattr(args, dest, default)
    for flag, least in (
        ("--workers", 1),
        ("--cpus-per-worker", 0.01),
        ("--num-gpus-per-worker", 0),
        ("--shard-rows", 1),
    ):
        value = getattr(args, RAY_FLAGS[flag][0]) if flag in flags else least
        if value < least:
            raise JiyiError(f"{flag} {value:g}: must be at least {least:g}.")
    require_ray()
    return True


def require_ray() -> None:
    """JiyiError saying which extra to install when Ray Data or pyarrow is missing."""
    for module in ("ray", "ray.data", "pyarrow"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # "ray.data" when ray itself is missing
            found = False
        if not found:
            raise JiyiError(
                f"--engine ray needs {module.split('.')[0]}, which is not installed: run "
                f"`{INSTALL}`."
            )
