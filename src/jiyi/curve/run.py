"""The curve's loop: one `jiyi train` run per (size, seed), then the kNN memory series, the
majority baseline, the fit and the plot.

`run_curve` trains the points seed by seed (a first whole curve comes early) and writes each
result to DIR/curve.json as soon as it is in, so a killed curve continues where it stopped; it
refuses to continue a curve made with other settings (`curve_settings`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jiyi.config import TrainConfig
from jiyi.curve.baselines import free_memory, majority_baseline, memory_points
from jiyi.curve.fit import FLAT, LOWER_IS_BETTER, analyse, size_stats
from jiyi.curve.plot import plot_curve
from jiyi.curve.subsets import class_floors, nested_subset, resolve_sizes, strata
from jiyi.errors import JiyiError
from jiyi.io import atomic_write_bytes, atomic_write_json, atomic_write_text

# TrainConfig fields the curve sets itself (per point) or has no use for (no flag for them)
CURVE_OWNED = (
    "output",
    "seed",
    "resume",
    "test",
    "validation_fraction",
    "tag_scheme",
    "stride",
    "tokens_column",
    "tags_column",
    "strict",
)
# fields that do not change a run's result: a curve may continue with other values
NOT_COMPARED = (
    *CURVE_OWNED,
    "train",
    "validation",
    "threads",
    "log_every",
    "save_steps",
    "keep_checkpoints",
    "eval_batch_size",
)


@dataclass
class CurveOptions:
    """The curve's own settings (the training settings are a TrainConfig)."""

    sizes: list[tuple[str, float | int]]  # (as written, fraction (float) or count (int))
    seeds: int = 3
    min_per_class: int = 8
    target: float | None = None
    memory: bool = False
    min_steps: int = 0
    bootstrap: int = 1000


def curve_settings(config: TrainConfig, options: CurveOptions) -> dict[str, Any]:
    """What the points of a curve depend on; a curve continues only with the same."""
    training = {k: v for k, v in dataclasses.asdict(config).items() if k not in NOT_COMPARED}
    if Path(config.model).exists():
        training["model"] = str(Path(config.model).resolve())
    return {
        "train": str(Path(config.train or "").resolve()),
        "validation": str(Path(config.validation or "").resolve()),
        "min_per_class": options.min_per_class,
        "min_steps": options.min_steps,
        "training": training,
    }


def _check_same(old: dict[str, Any], new: dict[str, Any], out: Path) -> None:
    from jiyi.resume import differing_settings

    if diffs := differing_settings(old, new):
        raise JiyiError(
            f"--output {out} holds a curve made with other settings ({'; '.join(diffs[:5])}). "
            "Rerun with the same settings to continue it, or choose another --output."
        )


def write_subset(path: Path, examples: Sequence[Any], config: TrainConfig) -> None:
    """The subset as JSONL, in the columns the run reads (multilabel labels as JSON lists)."""
    lines = []
    for e in examples:
        row: dict[str, Any] = {config.text_column: e.text}
        if config.text_pair_column:
            row[config.text_pair_column] = e.text_pair or ""
        row[config.label_column] = list(e.label) if isinstance(e.label, tuple) else e.label
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))


def train_point(
    config: TrainConfig,
    subset: Sequence[Any],
    run_dir: Path,
    seed: int,
    min_steps: int = 0,
    console: Any = None,
) -> dict[str, Any]:
    """One `jiyi train` run on `subset` in `run_dir` (removed first if a killed run left it);
    returns {"metric", "best_step", "steps", "train_seconds"}.

    `jiyi train` wants an empty run directory, so the subset is written beside it and moved in
    (as train.jsonl, config.yaml updated to match) once the run has finished. Checkpoints are
    dropped then: an unfinished point is retrained from scratch, never resumed.
    """
    import yaml

    from jiyi import train as train_module

    staging = run_dir.with_name(f".{run_dir.name}.train.jsonl")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    write_subset(staging, subset, config)
    point = dataclasses.replace(
        config, train=str(staging), output=str(run_dir), seed=seed, resume=False, test=None
    )
    per_epoch = math.ceil(math.ceil(len(subset) / config.batch_size) / config.grad_accum)
    if min_steps and config.max_steps is None and config.epochs * per_epoch < min_steps:
        point.max_steps = min_steps
    summary = train_module.train(point, console=console)
    staging.replace(run_dir / "train.jsonl")
    saved = run_dir / "config.yaml"
    if saved.is_file():
        values = yaml.safe_load(saved.read_text("utf-8")) or {}
        values["train"] = str(run_dir / "train.jsonl")
        atomic_write_text(saved, yaml.safe_dump(values, sort_keys=False, allow_unicode=True))
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return {
        "metric": summary.get("best_validation"),
        "best_step": summary.get("best_step"),
        "steps": summary.get("steps"),
        "train_seconds": summary.get("train_seconds"),
    }


def run_curve(config: TrainConfig, options: CurveOptions, console: Any = None) -> dict[str, Any]:
    """Train (or find already trained) every (size, seed) point, add the memory series, fit,
    plot; returns what DIR/curve.json holds."""
    from rich.console import Console

    from jiyi.data.readers import check_split_labels, label_list
    from jiyi.models import resolve_model
    from jiyi.prepare import read_split

    console = console or Console(stderr=True, soft_wrap=True)
    # 1. settings and data: every user error surfaces here, before anything is trained
    _check_options(config, options)
    assert config.train and config.validation and config.output
    resolve_model(config.model)
    train = read_split(config, "--train", config.train)
    val = read_split(config, "--validation", config.validation)
    labels = label_list(train.examples, config.task)
    if config.task == "classification" and len(labels) < 2:
        raise JiyiError(f"--train {config.train}: one class ({labels[0]!r}); a curve needs two.")
    check_split_labels(train, val, labels, "--validation")
    examples, n_train = train.examples, len(train.examples)
    keys = strata(examples, config.task)
    floors = class_floors(keys, options.min_per_class, config.task, f"--train {config.train}")
    sizes, notes = resolve_sizes(options.sizes, n_train, sum(floors.values()))
    for note in notes:
        console.print(f"[yellow]{note}[/]")

    # 2. what an earlier, killed or shorter, curve in DIR already holds
    out = Path(config.output)
    settings = curve_settings(config, options)
    result = _load(out / "curve.json")
    if result:
        _check_same(result["settings"], settings, out)
        if result.get("n_train") != n_train:
            raise JiyiError(
                f"--output {out}: its curve was made from {result.get('n_train')} "
                f"training examples, --train has {n_train} now; choose another --output."
            )
    seeds = list(range(options.seeds))
    result = {
        "metric": config.metric,
        "model": config.model,
        "n_train": n_train,
        "n_validation": len(val.examples),
        "labels": labels,
        "class_counts": dict(sorted(Counter(keys).items())),
        "settings": settings,
        "options": {
            "sizes": [raw for raw, _ in options.sizes],
            "seeds": options.seeds,
            "target": options.target,
            "memory": options.memory,
            "bootstrap": options.bootstrap,
        },
        "sizes": sizes,
        "seeds": seeds,
        "notes": notes,
        "points": result.get("points", []) if result else [],
        "memory_points": result.get("memory_points", []) if result else [],
    }
    done = {(p["n"], p["seed"]) for p in result["points"]}

    # 3. the points: seed by seed, so that a first whole curve comes early
    todo = [(n, s) for s in seeds for n in sizes if (n, s) not in done]
    if done:
        console.print(
            f"{len(done)} point(s) already done in {out / 'curve.json'}; {len(todo)} to train."
        )
    for i, (n, seed) in enumerate(todo, 1):
        rows = nested_subset(keys, n, seed, floors)
        run_dir = out / "runs" / f"size-{n}-seed-{seed}"
        console.print(f"[bold]point {i}/{len(todo)}: {n:,} examples, seed {seed}[/] → {run_dir}")
        try:
            record = train_point(
                config, [examples[j] for j in rows], run_dir, seed, options.min_steps, console
            )
        except JiyiError as e:
            raise JiyiError(
                f"point {n:,} examples, seed {seed} ({run_dir}): {e} Finished points are kept in "
                f"{out / 'curve.json'}; rerun the same command to continue."
            ) from None
        finally:
            free_memory()
        per_class = Counter(keys[j] for j in rows)
        result["points"].append(
            {
                "n": n,
                "seed": seed,
                **record,
                "run_dir": str(run_dir.relative_to(out)),
                "per_class": dict(sorted(per_class.items())),
            }
        )
        atomic_write_json(out / "curve.json", result)

    # 4. the memory series: no training, one kNN classifier per subset
    if options.memory:
        have = {(p["n"], p["seed"]) for p in result["memory_points"]}
        missing = {
            (n, s): nested_subset(keys, n, s, floors)
            for s in seeds
            for n in sizes
            if (n, s) not in have
        }
        if missing:
            console.print(f"kNN memory over {config.model}'s vectors: {len(missing)} subset(s).")
            result["memory_points"] += memory_points(
                config, examples, val.examples, labels, missing
            )
            atomic_write_json(out / "curve.json", result)

    # 5. fit, summary, plot
    metric = config.metric or "accuracy"
    result.update(
        analyse(
            result["points"],
            metric,
            target=options.target,
            resamples=options.bootstrap,
            n_train=n_train,
        )
    )
    if config.task == "classification":
        result["baseline"] = majority_baseline(examples, val.examples, labels, metric)
        last = result["by_size"][-1] if result["by_size"] else None
        value = result["baseline"]["metric"]
        if (
            last
            and value is not None
            and metric not in LOWER_IS_BETTER
            and last["mean"] <= value + FLAT
        ):
            result["summary"] = (
                f"Not learning: at {last['n']:,} examples the fine-tuned runs score no better than "
                f"always predicting {result['baseline']['predict']!r} ({metric} {value:.3f}); train "
                f"longer (--epochs, --min-steps) or raise --lr before reading the curve. "
                + result["summary"]
            )
    if result["memory_points"]:
        result["memory_by_size"] = size_stats(result["memory_points"])
        last = result["memory_by_size"][-1]
        result["summary"] += (
            f" The kNN memory alone (no training): {last['mean']:.3f} at {last['n']:,}."
        )
    atomic_write_json(out / "curve.json", result)
    atomic_write_bytes(out / "curve.png", plot_curve(result))
    return result


def _check_options(config: TrainConfig, options: CurveOptions) -> None:
    from jiyi.tasks import get_task, refuse_unless

    refuse_unless(get_task(config.task), "curve", "jiyi curve")
    if not config.train:
        raise JiyiError("--train is required: the labelled examples the subsets are drawn from.")
    if not config.validation:
        raise JiyiError(
            "--validation is required: every point is scored on the full file. "
            "`jiyi data export` writes one; or split one off your data."
        )
    if not config.output:
        raise JiyiError("--output is required: the folder for the runs, curve.json and curve.png.")
    for flag, value in (("--seeds", options.seeds), ("--min-per-class", options.min_per_class)):
        if value < 1:
            raise JiyiError(f"{flag} must be at least 1, got {value}.")
    if options.min_steps < 0 or options.bootstrap < 0:
        flag = "--min-steps" if options.min_steps < 0 else "--bootstrap"
        raise JiyiError(f"{flag} must be >= 0.")
    bounded = config.metric != "log_loss"
    if options.target is not None and not (
        math.isfinite(options.target) and (not bounded or 0 <= options.target <= 1)
    ):
        raise JiyiError(f"--target {options.target}: {config.metric} lies in [0, 1].")
    if options.memory and config.text_pair_column:
        raise JiyiError("--memory with --text-pair-column: the kNN memory embeds single texts.")


def _load(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise JiyiError(
            f"{path}: not a curve.json jiyi can read; remove it or choose another --output."
        ) from None
    if not isinstance(data, dict) or "settings" not in data:
        raise JiyiError(f"{path}: not a jiyi curve; choose another --output.")
    return data
