"""The one training loop: fine-tune an encoder for (multi-label) text classification.

Reads top to bottom: set up, read data, build model, loop (numbered steps), restore the best
model, evaluate on test. Runs unchanged under `accelerate launch --num_processes N`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jiyi.checkpoint import TrainState, list_checkpoints, load_checkpoint, save_checkpoint
from jiyi.config import TrainConfig, config_to_yaml, load_yaml_config
from jiyi.data.collate import length_grouped_batches, pad_batch, sorted_batches
from jiyi.errors import JiyiError
from jiyi.io import append_jsonl, atomic_directory, atomic_write_json, atomic_write_text
from jiyi.predict import JIYI_META, forward_probs
from jiyi.prepare import PreparedData, Split, augment_train, read_data, tokenize_splits


class StopRequested:
    """SIGINT/SIGTERM set a flag; the loop writes a checkpoint at the next step and exits."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopRequested:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: no handlers
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


RESUME_OVERRIDABLE = (
    "epochs",
    "max_steps",
    "patience",
    "save_steps",
    "keep_checkpoints",
    "threads",
    "log_every",
)


def prepare_run_dir(
    config: TrainConfig, explicit: set[str] = frozenset()
) -> tuple[Path, TrainConfig]:
    """Check --output / --resume. On resume the run's saved config wins; only the settings of
    RESUME_OVERRIDABLE given explicitly (e.g. a larger --epochs) change it."""
    assert config.output is not None
    run_dir = Path(config.output)
    if config.resume:
        saved = run_dir / "config.yaml"
        if not saved.is_file():
            raise JiyiError(
                f"--resume: {run_dir} holds no config.yaml; it is not a jiyi run to continue."
            )
        values = load_yaml_config(str(saved), TrainConfig)
        values.update({k: getattr(config, k) for k in RESUME_OVERRIDABLE if k in explicit})
        values["resume"] = True
        return run_dir, TrainConfig(**values)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise JiyiError(
            f"--output {run_dir} already exists and is not empty. Pass --resume to continue that "
            "run, or choose another --output."
        )
    return run_dir, config


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weight matrices only: not on biases or LayerNorm weights."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name or name.endswith(".bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def linear_schedule(warmup: int, total: int):
    def lr_lambda(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return lr_lambda


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

    # --- optimizer, schedule ---------------------------------------------------------------
    world = accelerator.num_processes
    # batches per process per epoch, exactly as the loop below cuts them (last one may be short)
    n_batches = max(1, math.ceil(len(train_split.examples) / config.batch_size) // world)
    steps_per_epoch = math.ceil(n_batches / config.grad_accum)
    total_steps = config.max_steps or math.ceil(config.epochs * steps_per_epoch)
    eval_every = max(1, steps_per_epoch // config.evals_per_epoch)
    warmup = int(config.warmup_ratio * total_steps)
    fused = {"fused": True} if "fused" in torch.optim.AdamW.__init__.__code__.co_varnames else {}
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr, **fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(warmup, total_steps))
    model, optimizer = accelerator.prepare(model, optimizer)

    # --- resume or start ----------------------------------------------------------------------
    state = TrainState()
    if config.resume and (ckpts := list_checkpoints(run_dir)):
        state = load_checkpoint(ckpts[-1], accelerator.unwrap_model(model), optimizer, scheduler)
        say(f"Resuming from {ckpts[-1]} (step {state.step}, epoch {state.epoch}).")
        if state.finished:
            say("[yellow]That run had already finished; re-running its final evaluation.[/]")
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", config_to_yaml(config))
        (run_dir / "logs").mkdir(exist_ok=True)
    accelerator.wait_for_everyone()
    tb = _tensorboard(run_dir / "logs") if main else None
    log = (lambda rec: append_jsonl(run_dir / "metrics.jsonl", rec)) if main else (lambda rec: None)
    if main and state.step == 0:
        log(
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
        """Validate, keep the best model, checkpoint; True when early stopping says stop."""
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
        log(
            {
                "event": "eval",
                "step": state.step,
                "epoch": state.epoch,
                **_headline(metrics),
                "best": state.best_metric,
                "improved": improved,
            }
        )
        if tb:
            for k, v in _headline(metrics).items():
                tb.add_scalar(f"validation/{k}", v, state.step)
        shown = "undefined" if value is None else f"{value:.4f}"
        best = "undefined" if state.best_metric is None else f"{state.best_metric:.4f}"
        say(
            f"step {state.step}: validation {config.metric} {shown}"
            + (" [green](best)[/]" if improved else f" (best {best})")
        )
        return config.patience is not None and state.evals_without_improvement >= config.patience

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

    # --- the loop ---------------------------------------------------------------------------
    targets = torch.from_numpy(train_split.targets)
    progress = _progress(console, main)
    task = progress.add_task(
        "train", total=total_steps, completed=state.step, loss=float("nan"), eps=0.0
    )
    stop_early = state.finished
    window_loss, window_n, t_window, ex_window = 0.0, 0, time.perf_counter(), 0
    t_start = time.perf_counter()
    model.train()
    with StopRequested() as stop, progress:
        while state.step < total_steps and not stop_early:
            # 1. this epoch's batches: length-grouped, shuffled by (seed, epoch), sharded by rank
            batches = length_grouped_batches(
                train_split.enc.lengths, config.batch_size, config.seed, state.epoch
            )
            batches = (
                batches[: len(batches) // world * world][accelerator.process_index :: world]
                or batches[:1]
            )
            while state.batch_in_epoch < len(batches) and state.step < total_steps:
                group = batches[state.batch_in_epoch : state.batch_in_epoch + config.grad_accum]
                # 2. forward and backward over the accumulation group
                for i, batch in enumerate(group):
                    inputs = {
                        k: v.to(accelerator.device)
                        for k, v in pad_batch(train_split.enc, batch, pad_id).items()
                    }
                    y = targets[batch].to(accelerator.device)
                    ctx = (
                        accelerator.no_sync(model)
                        if i < len(group) - 1
                        else contextlib.nullcontext()
                    )
                    with (
                        ctx,
                        torch.autocast(
                            accelerator.device.type, dtype=torch.bfloat16, enabled=config.bf16
                        ),
                    ):
                        logits = model(**inputs).logits.float()  # (B, C)
                        loss = loss_fn(logits, y, multilabel) / len(group)
                    if not torch.isfinite(loss):
                        raise JiyiError(
                            f"The training loss became {loss.item()} at step {state.step} (epoch "
                            f"{state.epoch}). Lower --lr (now {config.lr}), keep --max-grad-norm on, "
                            "or turn --bf16 off. The last good checkpoint is in "
                            f"{run_dir / 'checkpoints'}."
                        )
                    accelerator.backward(loss)
                    window_loss += loss.item()
                    ex_window += len(batch) * world
                # 3. clip, step, schedule
                if config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                state.batch_in_epoch += len(group)
                state.examples_seen += sum(len(b) for b in group) * world
                window_n += 1
                # 4. log
                if state.step % config.log_every == 0 or state.step == total_steps:
                    mean_loss = float(
                        accelerator.reduce(torch.tensor(window_loss / window_n), "mean")
                    )
                    eps = ex_window / max(1e-9, time.perf_counter() - t_window)
                    log(
                        {
                            "event": "train",
                            "step": state.step,
                            "epoch": state.epoch,
                            "loss": mean_loss,
                            "lr": scheduler.get_last_lr()[0],
                            "examples_per_s": eps,
                        }
                    )
                    if tb:
                        tb.add_scalar("train/loss", mean_loss, state.step)
                        tb.add_scalar("train/lr", scheduler.get_last_lr()[0], state.step)
                    progress.update(task, loss=mean_loss, eps=eps)
                    window_loss, window_n, t_window, ex_window = 0.0, 0, time.perf_counter(), 0
                progress.update(task, completed=state.step)
                # 5. validate + checkpoint; early stopping; periodic checkpoints; signals
                end_of_epoch = state.batch_in_epoch >= len(batches)
                step_in_epoch = math.ceil(state.batch_in_epoch / config.grad_accum)
                mid_epoch_eval = config.evals_per_epoch > 1 and step_in_epoch % eval_every == 0
                if end_of_epoch:
                    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                if mid_epoch_eval or end_of_epoch or state.step == total_steps:
                    stop_early = run_eval()
                    _checkpoint(run_dir, state, accelerator, model, optimizer, scheduler, config)
                    if stop_early:
                        say(
                            f"Early stopping: no improvement of {config.metric} in {config.patience} evaluations."
                        )
                elif config.save_steps and state.step % config.save_steps == 0:
                    _checkpoint(run_dir, state, accelerator, model, optimizer, scheduler, config)
                if stop.signal is not None:
                    _checkpoint(run_dir, state, accelerator, model, optimizer, scheduler, config)
                    name = signal.Signals(stop.signal).name
                    raise JiyiError(
                        f"Stopped by {name} at step {state.step}; checkpoint written. "
                        f"Continue with: jiyi train --output {run_dir} --resume"
                    )
                if stop_early or end_of_epoch:
                    break
    train_seconds = time.perf_counter() - t_start
    state.finished = True
    _checkpoint(run_dir, state, accelerator, model, optimizer, scheduler, config)

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
        log({"event": "test", **_headline(test_metrics)})
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


def _checkpoint(
    run_dir: Path,
    state: TrainState,
    accelerator: Any,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    config: TrainConfig,
) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_checkpoint(
            run_dir,
            state,
            accelerator.unwrap_model(model),
            optimizer,
            scheduler,
            config.keep_checkpoints,
        )
    accelerator.wait_for_everyone()


def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _tensorboard(log_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: metrics.jsonl still has everything
        return None
    return SummaryWriter(log_dir=str(log_dir))


def _progress(console: Any, enabled: bool) -> Any:
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[eps]:.0f} ex/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled or os.environ.get("JIYI_NO_PROGRESS") == "1",
    )
