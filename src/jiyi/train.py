"""The one training loop: fine-tune an encoder for (multi-label) text classification.

Reads top to bottom: set up, read data, build model, loop (numbered steps), restore the best
model, evaluate on test. Runs unchanged under `accelerate launch --num_processes N`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jiyi.checkpoint import TrainState
from jiyi.config import TrainConfig, load_yaml_config
from jiyi.data.collate import length_grouped_batches, pad_batch, sorted_batches
from jiyi.io import atomic_directory, atomic_write_json
from jiyi.loop import (
    build_optimizer,
    headline,
    prepare_run_dir,
    run_loop,
    shard,
    start_run,
)
from jiyi.predict import JIYI_META, forward_probs
from jiyi.prepare import PreparedData, Split, augment_train, read_data, tokenize_splits


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, multilabel: bool) -> torch.Tensor:
    if multilabel:
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    return torch.nn.functional.cross_entropy(logits, targets)


def evaluate_split(
    model: Any, split: Split, labels: list[str], config: TrainConfig, accelerator: Any, pad_id: int
) -> tuple[dict[str, Any], np.ndarray, np.ndarray | None]:
    """Metrics of `split`; under several processes each evaluates a share, results are gathered."""
    from accelerate.utils import gather_object

    from jiyi.evaluate import classification_metrics, multilabel_metrics, tune_thresholds

    assert split.enc is not None
    batches = sorted_batches(split.enc.lengths, config.eval_batch_size)
    mine = batches[accelerator.process_index :: accelerator.num_processes]
    rows, probs = forward_probs(
        accelerator.unwrap_model(model),
        split.enc,
        pad_id=pad_id,
        batch_size=config.eval_batch_size,
        multilabel=config.task == "multilabel",
        indices=mine,
        bf16=config.bf16,
    )
    if accelerator.num_processes > 1:
        gathered = gather_object([(rows, probs)])
        rows = np.concatenate([r for r, _ in gathered])
        probs = np.concatenate([p for _, p in gathered])
    ordered = np.empty_like(probs)
    ordered[rows] = probs
    if config.task == "multilabel":
        thresholds = tune_thresholds(split.targets, ordered)
        return multilabel_metrics(split.targets, ordered, labels, thresholds), ordered, thresholds
    return classification_metrics(split.targets, ordered, labels), ordered, None


def train(
    config: TrainConfig, console: Any = None, explicit: set[str] = frozenset()
) -> dict[str, Any]:
    """Fine-tune `config.model` on `config.train`; returns a summary (metrics, paths, timings).

    `explicit` names the settings given on the command line (they may override a resumed run's)."""
    from accelerate import Accelerator
    from rich.console import Console

    from jiyi.evaluate import metric_is_better
    from jiyi.models import load_for_classification, resolve_model, save_model

    saved = Path(config.output or "") / "config.yaml"
    task = config.task
    if config.resume and saved.is_file():  # a resumed run keeps its task
        task = load_yaml_config(str(saved), TrainConfig).get("task", task)
    if task == "ner":
        from jiyi.ner.train import train_ner

        return train_ner(config, console, explicit)
    config.validate(require_paths=True)
    run_dir, config = prepare_run_dir(config, explicit)
    console = console or Console(stderr=True, soft_wrap=True)
    # cpu=True on a machine without CUDA lets torchrun-launched processes form a gloo group
    # (accelerate only picks MULTI_CPU when told the run is on the CPU)
    accelerator = Accelerator(mixed_precision="no", cpu=not torch.cuda.is_available())
    main = accelerator.is_main_process
    say = console.print if main else (lambda *a, **k: None)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    multilabel = config.task == "multilabel"

    # --- data: every input error surfaces here, before the run directory is touched ----------
    data: PreparedData = read_data(config)
    model_path = resolve_model(config.model)
    model, tokenizer = load_for_classification(
        model_path, data.labels, multilabel=multilabel, dropout=config.dropout
    )
    augment_train(data, config, tokenizer, model)
    tokenize_splits(data, tokenizer, config)
    train_split, val_split = data.splits["train"], data.splits["validation"]
    assert train_split.enc is not None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for name, split in data.splits.items():
        if split.enc is not None and split.enc.truncated:
            say(
                f"[yellow]{split.enc.truncated} of {len(split.examples)} {name} texts "
                f"({split.enc.truncated / len(split.examples):.1%}) were longer than --max-length "
                f"{config.max_length} and were cut ({config.truncation}).[/]"
            )
    for name, n in data.skipped.items():
        if n:
            say(f"[yellow]--on-bad-rows skip: skipped {n} bad rows of {name}.[/]")

    # --- optimizer, schedule, resume ------------------------------------------------------------
    world = accelerator.num_processes
    # batches per process per epoch, exactly as `shard` cuts them (the last one may be short)
    n_batches = max(1, math.ceil(len(train_split.examples) / config.batch_size) // world)
    steps_per_epoch = math.ceil(n_batches / config.grad_accum)
    total_steps = config.max_steps or math.ceil(config.epochs * steps_per_epoch)
    eval_every = max(1, steps_per_epoch // config.evals_per_epoch)
    optimizer, scheduler = build_optimizer(model, config, total_steps)
    run = start_run(
        config,
        accelerator,
        model,
        optimizer,
        scheduler,
        run_dir=run_dir,
        total_steps=total_steps,
        console=console,
    )
    model, state = run.model, run.state
    if state.step == 0:
        run.log(
            {
                "event": "start",
                "labels": data.labels,
                "n_train": len(train_split.examples),
                "n_validation": len(val_split.examples),
                "n_augmented": data.n_augmented,
                "truncated": {k: s.enc.truncated for k, s in data.splits.items() if s.enc},
                "skipped": data.skipped,
                "total_steps": total_steps,
                "world_size": world,
            }
        )

    def save_best(metrics: dict[str, Any], thresholds: np.ndarray | None) -> None:
        if not main:
            return
        with atomic_directory(run_dir / "model") as tmp:
            save_model(accelerator.unwrap_model(model), tokenizer, tmp)
            meta = {
                "task": config.task,
                "max_length": config.max_length,
                "truncation": config.truncation,
                "text_column": config.text_column,
                "text_pair_column": config.text_pair_column,
                "label_column": config.label_column,
                "base_model": config.model,
                "step": state.step,
                "validation": metrics,
            }
            if thresholds is not None:
                meta["thresholds"] = [float(t) for t in thresholds]
            atomic_write_json(tmp / JIYI_META, meta)

    def run_eval() -> bool:
        """Validate, keep the best model; True when early stopping says stop."""
        metrics, _, thresholds = evaluate_split(
            model, val_split, data.labels, config, accelerator, pad_id
        )
        value = metrics.get(config.metric)  # None where undefined (roc_auc with one class)
        improved = state.best_metric is None or metric_is_better(
            config.metric, value, state.best_metric
        )
        if improved:
            state.best_metric, state.best_step, state.evals_without_improvement = (
                value,
                state.step,
                0,
            )
            save_best(metrics, thresholds)
        else:
            state.evals_without_improvement += 1
        run.log(
            {
                "event": "eval",
                "step": state.step,
                "epoch": state.epoch,
                **headline(metrics),
                "best": state.best_metric,
                "improved": improved,
            }
        )
        if run.tb:
            for k, v in headline(metrics).items():
                run.tb.add_scalar(f"validation/{k}", v, state.step)
        shown = "undefined" if value is None else f"{value:.4f}"
        best = "undefined" if state.best_metric is None else f"{state.best_metric:.4f}"
        say(
            f"step {state.step}: validation {config.metric} {shown}"
            + (" [green](best)[/]" if improved else f" (best {best})")
        )
        stop = config.patience is not None and state.evals_without_improvement >= config.patience
        if stop:
            say(
                f"Early stopping: no improvement of {config.metric} in {config.patience} evaluations."
            )
        return stop

    # --- sanity check: two validation batches through the model before any training ----------
    if state.step == 0:
        probe = sorted_batches(val_split.enc.lengths, config.eval_batch_size)[:2]  # type: ignore[union-attr]
        forward_probs(
            accelerator.unwrap_model(model),
            val_split.enc,
            pad_id=pad_id,
            batch_size=config.eval_batch_size,
            multilabel=multilabel,
            indices=probe,
        )

    # --- the loop: length-grouped batches shuffled by (seed, epoch), sharded by rank ---------
    targets = torch.from_numpy(train_split.targets)

    def epoch_batches(epoch: int, position: int) -> Iterator[np.ndarray]:
        batches = length_grouped_batches(
            train_split.enc.lengths, config.batch_size, config.seed, epoch
        )
        return iter(shard(batches, accelerator.process_index, world)[position:])

    def batch_loss(batch: np.ndarray) -> tuple[torch.Tensor, int]:
        inputs = {
            k: v.to(accelerator.device)
            for k, v in pad_batch(train_split.enc, batch, pad_id).items()
        }
        logits = model(**inputs).logits.float()  # (B, C)
        return loss_fn(logits, targets[batch].to(accelerator.device), multilabel), len(batch)

    def eval_due(state: TrainState) -> bool:  # mid-epoch validation passes
        step_in_epoch = math.ceil(state.batch_in_epoch / config.grad_accum)
        return config.evals_per_epoch > 1 and step_in_epoch % eval_every == 0

    train_seconds = run_loop(
        run,
        epoch_batches=epoch_batches,
        batch_loss=batch_loss,
        evaluate=run_eval,
        eval_due=eval_due,
    )
    tb = run.tb

    # --- restore the best model, evaluate on test ----------------------------------------------
    from jiyi.models import load_classifier

    accelerator.wait_for_everyone()
    best_model, _ = load_classifier(run_dir / "model")
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "best_step": state.best_step,
        "best_validation": state.best_metric,
        "steps": state.step,
        "train_seconds": train_seconds,
        "labels": data.labels,
    }
    if "test" in data.splits:
        best_model = accelerator.prepare(best_model)
        test_metrics = write_test_eval(best_model, data, config, accelerator, pad_id, run_dir)
        summary["test"] = test_metrics
        summary["test_file"] = config.test
        run.log({"event": "test", **headline(test_metrics)})
    if tb:
        tb.close()
    accelerator.wait_for_everyone()
    return summary


def write_test_eval(
    model: Any,
    data: PreparedData,
    config: TrainConfig,
    accelerator: Any,
    pad_id: int,
    run_dir: Path,
) -> dict[str, Any]:
    from jiyi.evaluate import classification_metrics, multilabel_metrics
    from jiyi.predict import read_meta
    from jiyi.report import write_eval_dir

    test = data.splits["test"]
    _, probs, _ = evaluate_split(model, test, data.labels, config, accelerator, pad_id)
    thresholds = None
    if config.task == "multilabel":  # thresholds tuned on validation, not on test
        thresholds = np.asarray(read_meta(run_dir / "model").get("thresholds", 0.5))
        metrics = multilabel_metrics(test.targets, probs, data.labels, thresholds)
    else:
        metrics = classification_metrics(test.targets, probs, data.labels)
    if accelerator.is_main_process:
        write_eval_dir(
            run_dir / "eval",
            metrics=metrics,
            y_true=test.targets,
            probs=probs,
            labels=data.labels,
            texts=test.texts,
            task=config.task,
            thresholds=thresholds,
            title=f"jiyi evaluation: {test.source}",
            extra={"model": config.model, "data": test.source, **_settings(config)},
        )
    return metrics


def _settings(config: TrainConfig) -> dict[str, Any]:
    keep = (
        "epochs",
        "batch_size",
        "lr",
        "max_length",
        "truncation",
        "seed",
        "weight_decay",
        "warmup_ratio",
        "dropout",
        "augment",
    )
    return {k: v for k, v in dataclasses.asdict(config).items() if k in keep}
