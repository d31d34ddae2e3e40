"""The one training loop: fine-tune an encoder for (multi-label) text classification.

Reads top to bottom: set up, read data, build model, loop (numbered steps), restore the best
model, evaluate on test. Runs unchanged under `accelerate launch --num_processes N`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jiyi.calibrate import Calibration
from jiyi.config import TrainConfig, load_yaml_config
from jiyi.data.collate import pad_batch, sorted_batches
from jiyi.imbalance import training_objective
from jiyi.io import atomic_directory
from jiyi.loop import (
    EvaluateHook,
    Run,
    build_optimizer,
    evaluation_hook,
    grouped_epochs,
    headline,
    mid_epoch_evals,
    run_loop,
    setup,
    start_run,
    steps_per_epoch,
    weight_sparsity,
)
from jiyi.predict import forward_logits, forward_probs
from jiyi.prepare import PreparedData, Split, augment_train, read_data, tokenize_splits
from jiyi.runs import discard_if_unstarted, write_meta
from jiyi.tasks.presets import resolve_schedule
from jiyi.tasks.registry import get_task
from jiyi.unpadded import enable as enable_unpadded
from jiyi.unpadded import unpadding


def evaluate_split(
    model: Any,
    split: Split,
    labels: list[str],
    config: TrainConfig,
    accelerator: Any,
    pad_id: int,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray | None]:
    """Metrics of `split`, its (N, C) logits in row order (kept for calibration: the best step's
    are the best model's) and the multilabel thresholds, tuned on `split` (the validation data).
    Under several processes each evaluates a share; the results are gathered."""
    from jiyi.calibrate import probabilities
    from jiyi.evaluate import classification_metrics, multilabel_metrics, tune_thresholds

    logits = split_outputs(model, split, config, accelerator, pad_id)
    multilabel = config.task == "multilabel"
    probs = probabilities(logits, multilabel, None)  # the model's own, as checkpoints compare
    if multilabel:
        thresholds = tune_thresholds(split.targets, probs)
        return multilabel_metrics(split.targets, probs, labels, thresholds), logits, thresholds
    return classification_metrics(split.targets, probs, labels), logits, None


def split_outputs(
    model: Any, split: Split, config: TrainConfig, accelerator: Any, pad_id: int
) -> np.ndarray:
    """(N, C) logits of `split` in row order (probabilities: `jiyi.calibrate.probabilities`);
    each process computes a share of the batches, the shares are gathered. In float32 whatever
    --precision trained with: the numbers a run stores are those `jiyi.load` gives."""
    from accelerate.utils import gather_object

    assert split.enc is not None
    batches = sorted_batches(split.enc.lengths, config.eval_batch_size)
    mine = batches[accelerator.process_index :: accelerator.num_processes]
    rows, out = forward_logits(
        accelerator.unwrap_model(model),
        split.enc,
        pad_id=pad_id,
        batch_size=config.eval_batch_size,
        indices=mine,
    )
    if accelerator.num_processes > 1:
        gathered = gather_object([(rows, out)])
        rows = np.concatenate([r for r, _ in gathered])
        out = np.concatenate([p for _, p in gathered])
    ordered = np.empty_like(out)
    ordered[rows] = out
    return ordered


def calibrate_on_validation(
    model: Any,
    data: PreparedData,
    config: TrainConfig,
    accelerator: Any,
    pad_id: int,
    run_dir: Path,
    say: Any,
    logits: np.ndarray | None = None,
) -> Calibration | None:
    """Fit --calibration (default temperature) on the validation logits of the best model and
    store it in model/jiyi.json (`jiyi.calibrate.refit`); every process fits the same one.
    `logits`: those the loop's evaluation of the best step computed (no second pass)."""
    from jiyi.calibrate import refit, summary_line
    from jiyi.runs import read_meta

    method = config.calibration or "temperature"
    val = data.splits["validation"]
    if logits is None:
        logits = split_outputs(model, val, config, accelerator, pad_id)
    meta = read_meta(run_dir / "model")
    where = config.validation or f"{config.train} (validation slice)"
    calibration, meta = refit(logits, val.targets, data.labels, meta, method=method, data=where)
    if accelerator.is_main_process:
        write_meta(run_dir / "model", meta)
    if calibration is not None:
        say(f"calibration: {summary_line(meta['calibration'])} (validation)")
    accelerator.wait_for_everyone()
    return calibration


def train(
    config: TrainConfig,
    console: Any = None,
    explicit: set[str] = frozenset(),
    on_evaluate: EvaluateHook | None = None,
) -> dict[str, Any]:
    """Fine-tune `config.model` on `config.train` for its task; returns a summary (metrics,
    paths, timings; `task`, and `test` with the test metrics when --test is given).

    `explicit` names the settings given on the command line (they may override a resumed run's).
    `on_evaluate(step, scalars)` is called after each validation pass; a non-empty string it
    returns stops training there (`jiyi.loop.evaluation_hook`; the summary's `stopped_by`)."""
    from jiyi.card import write_card_safely
    from jiyi.tasks import adapter, get_task

    saved = Path(config.output or "") / "config.yaml"
    task = config.task
    if config.resume and saved.is_file():  # a resumed run keeps its task
        task = load_yaml_config(str(saved), TrainConfig).get("task", task)
    spec = get_task(task)
    with (
        discard_if_unstarted(config.output, config.resume),  # a failed start leaves no folder
        evaluation_hook(on_evaluate),
    ):
        summary = adapter(spec).train(config, console, explicit)
    write_card_safely(summary["run_dir"])  # RUN_DIR/README.md, every task; a failure only warns
    return {"task": spec.name, **summary}


def train_classifier(
    config: TrainConfig, console: Any = None, explicit: set[str] = frozenset()
) -> dict[str, Any]:
    """Fine-tune for classification or multilabel (`jiyi.tasks.classification.train`)."""
    from jiyi.compress.trim_hooks import apply_freeze, base_for_training
    from jiyi.lora import apply_lora, save_adapter
    from jiyi.models import load_for_classification, resolve_model, save_model
    from jiyi.pooled import head_meta

    run_dir, config, accelerator, console, say = setup(config, explicit, console)
    main = accelerator.is_main_process
    multilabel = config.task == "multilabel"

    # --- data: every input error surfaces here, before the run directory is touched ----------
    data: PreparedData = read_data(config)
    objective = training_objective(  # --loss, --class-weights; warns on imbalanced data
        config, data.labels, data.splits["train"].targets, run_dir, say
    )
    model_path = resolve_model(config.model)
    model_path = base_for_training(model_path, config, data, run_dir, accelerator, say)
    model, tokenizer = load_for_classification(
        model_path, data.labels, multilabel=multilabel, dropout=config.dropout,
        pooling=config.pooling,
    )  # fmt: skip
    apply_freeze(model, config, say)
    model = apply_lora(model, config, say)  # --lora-r: peft adapters, the head in full
    # training steps on real tokens only (BERT-shaped encoders): then batches of random texts
    # cost no padding, and they train better models than length-grouped ones (bench/RESULTS.md)
    unpadded = config.batch_order != "length" and enable_unpadded(model)
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
    per_epoch = steps_per_epoch(len(train_split.examples), config, world)
    total_steps = resolve_schedule(
        get_task(config.task).preset, config, per_epoch, model, say, config.task
    )
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
                **objective.record(),
            }
        )

    best_logits: list[np.ndarray] = []  # the validation logits of the best step in this process

    def save_best(
        metrics: dict[str, Any], thresholds: np.ndarray | None, logits: np.ndarray
    ) -> None:
        best_logits[:] = [logits]
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
            meta.update(save_adapter(accelerator.unwrap_model(model), run_dir))  # RUN_DIR/adapter
            meta.update(head_meta(accelerator.unwrap_model(model)))  # --pooling mean
            write_meta(tmp, meta)

    def run_eval() -> bool:
        """Validate, keep the best model; True when early stopping says stop."""
        metrics, logits, thresholds = evaluate_split(
            model, val_split, data.labels, config, accelerator, pad_id
        )
        assert config.metric is not None
        return run.record_eval(
            metrics, config.metric, lambda: save_best(metrics, thresholds, logits)
        )

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

    # --- the loop: batches shuffled by (seed, epoch), sharded by rank --------------------------
    targets = torch.from_numpy(train_split.targets)

    def batch_loss(batch: np.ndarray) -> tuple[torch.Tensor, int]:
        inputs = {
            k: v.to(accelerator.device)
            for k, v in pad_batch(train_split.enc, batch, pad_id).items()
        }
        with unpadding():
            logits = model(**inputs).logits.float()  # (B, C)
        return objective(logits, targets[batch].to(accelerator.device)), len(batch)

    train_seconds = run_loop(
        run,
        epoch_batches=grouped_epochs(
            train_split.enc.lengths, config, accelerator, unpadded=unpadded
        ),
        batch_loss=batch_loss,
        evaluate=run_eval,
        eval_due=mid_epoch_evals(config, config.evals_per_epoch, per_epoch),
    )

    # --- restore the best model, evaluate on test ----------------------------------------------
    from jiyi.models import load_classifier

    accelerator.wait_for_everyone()
    best_model, _ = load_classifier(run_dir / "model")
    summary = run.summary(train_seconds, labels=data.labels)
    shown = objective.settings()  # the loss and class weights, in the report's settings
    return finish_classifier_run(
        best_model, data, config, accelerator, pad_id, run, summary, shown, say,
        validation_logits=best_logits[0] if best_logits else None,
    )  # fmt: skip


def finish_classifier_run(
    best: Any,
    data: PreparedData,
    config: TrainConfig,
    accelerator: Any,
    pad_id: int,
    run: Run,
    summary: dict[str, Any],
    settings: dict[str, str],
    say: Callable[..., None],
    validation_logits: np.ndarray | None = None,
) -> dict[str, Any]:
    """The end of a classifier run, after its loop: calibrate the best model on validation
    (--calibration; test uses it), evaluate it on the test split when there is one (metrics,
    report with `settings` shown, a "test" event), close TensorBoard. Returns `summary` with
    the test metrics. `validation_logits`: the best model's, when the loop kept them (a resumed
    run whose best step came before the resume has none: they are computed again)."""
    run_dir = run.run_dir
    calibration = None
    if "test" in data.splits or config.calibration != "none":
        best = accelerator.prepare(best)
    if config.calibration != "none":  # on the best model's validation logits; test uses it
        calibration = calibrate_on_validation(
            best, data, config, accelerator, pad_id, run_dir, say, logits=validation_logits
        )
    if "test" in data.splits:
        test_metrics = write_test_eval(
            best, data, config, accelerator, pad_id, run_dir, calibration, settings
        )
        summary["test"] = test_metrics
        summary["test_file"] = config.test
        run.log({"event": "test", **headline(test_metrics)})
    if run.tb:
        run.tb.close()
    accelerator.wait_for_everyone()
    return summary


def write_test_eval(
    model: Any,
    data: PreparedData,
    config: TrainConfig,
    accelerator: Any,
    pad_id: int,
    run_dir: Path,
    calibration: Calibration | None = None,
    loss_settings: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Test metrics of the best model (calibrated when `calibration` is given, with the before
    and after numbers under `calibration`) -> RUN_DIR/eval. `loss_settings` (the loss and class
    weights, `jiyi.imbalance.Objective.settings`) join the report's settings."""
    from jiyi.calibrate import calibration_block, probabilities
    from jiyi.evaluate import classification_metrics, multilabel_metrics
    from jiyi.report import write_eval_dir
    from jiyi.runs import read_meta

    test = data.splits["test"]
    multilabel = config.task == "multilabel"
    logits = split_outputs(model, test, config, accelerator, pad_id)
    probs = probabilities(logits, multilabel, calibration)
    thresholds = None
    meta = read_meta(run_dir / "model")
    if multilabel:  # thresholds tuned on validation, not on test
        thresholds = np.asarray(meta.get("thresholds", 0.5))
        metrics = multilabel_metrics(test.targets, probs, data.labels, thresholds)
    else:
        metrics = classification_metrics(test.targets, probs, data.labels)
    raw_probs = None
    if calibration is not None:
        raw_probs = probabilities(logits, multilabel, None)
        metrics["calibration"] = calibration_block(
            meta["calibration"], test.targets, raw_probs, metrics, data.labels, multilabel
        )
    metrics["sparsity"] = weight_sparsity(accelerator.unwrap_model(model))  # the model evaluated
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
            extra={
                "model": config.model,
                "data": test.source,
                **_settings(config),
                **(loss_settings or {}),
            },
            uncalibrated_probs=raw_probs,
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
        "l1",
        "warmup_ratio",
        "dropout",
        "augment",
    )
    return {k: v for k, v in dataclasses.asdict(config).items() if k in keep}
