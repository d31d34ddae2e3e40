"""The one optimisation loop, shared by `jiyi train` (fine-tuning) and `jiyi pretrain` (masked LM).

A workflow builds its model, optimizer and data, then hands `run_loop` three callables: the
batches of an epoch (from a data position, for resume), the loss of a batch, and the
validation pass. The loop owns everything else, once: gradient accumulation, clipping, the
schedule, logging (metrics.jsonl, TensorBoard, the progress bar), checkpoints, early stopping,
SIGINT/SIGTERM and resume. Runs unchanged under `accelerate launch --num_processes N`.

A new run writes its folder (config.yaml, logs, metrics.jsonl) only once its first optimizer step
is done, and one that fails before that step removes what it wrote; a run that finishes keeps
model/ and, only when asked (--keep-final-checkpoint), its last checkpoints, and says its size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from jiyi.checkpoint import (
    TrainState,
    check_world_size,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from jiyi.config import LoopConfig, TrainConfig, config_to_yaml
from jiyi.dropout import enable as enable_fast_dropout
from jiyi.errors import JiyiError
from jiyi.io import append_jsonl, atomic_write_text
from jiyi.penalties import (  # also imported from here by the workflows and tests
    decay_split,
    l1_penalty,
    param_groups,
    soft_threshold_,
    weight_sparsity,
)
from jiyi.precision import resolve_precision
from jiyi.resume import prepare_run_dir
from jiyi.rowwise import AdamW as RowAdamW
from jiyi.rowwise import collect as collect_rows
from jiyi.rowwise import enable as enable_rowwise
from jiyi.runs import MODEL_DIR, FreshRun, folder_bytes, human_bytes

C = TypeVar("C", bound=LoopConfig)
# on_evaluate(step, validation scalars) after each validation pass; a non-empty string stops the
# training there, that string the reason (`jiyi tune` prunes a hopeless trial through it)
EvaluateHook = Callable[[int, dict[str, float]], str | None]
ON_EVALUATE: ContextVar[EvaluateHook | None] = ContextVar("jiyi_on_evaluate", default=None)
# new runs set up in this process, by folder: what to remove if they fail before their first step
FRESH_RUNS: dict[Path, FreshRun] = {}
# what --precision auto (or bf16 without native support) chose, by folder: said by start_run
PRECISION_NOTES: dict[Path, str] = {}


class StoppedBySignal(JiyiError):
    """A run stopped by SIGINT/SIGTERM, its checkpoint written (not a failure of the run)."""


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


def linear_schedule(warmup: int, total: int) -> Callable[[int], float]:
    def lr_lambda(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return lr_lambda


def build_optimizer(
    model: torch.nn.Module, config: LoopConfig, total_steps: int
) -> tuple[Any, Any]:
    """AdamW (fused where torch has it; vocabulary tables updated on the rows a step touched,
    `jiyi.rowwise`, unless the run spans processes) and linear warmup then linear decay to 0."""
    fused = {"fused": True} if "fused" in torch.optim.AdamW.__init__.__code__.co_varnames else {}
    dist = torch.distributed
    several = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    tables = [] if several else enable_rowwise(model)
    groups = param_groups(model, config.weight_decay)
    optimizer = RowAdamW(groups, lr=config.lr, tables=tables, **fused)
    warmup = int(config.warmup_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(warmup, total_steps))
    return optimizer, scheduler


def process_seconds() -> float:
    """Wall seconds since this process started: what a user has waited when an evaluation is
    logged (loading, tokenizing and earlier evaluations included; a resumed run counts from its
    resume)."""
    import psutil

    return time.time() - psutil.Process().create_time()


@dataclass
class Run:
    """What the loop needs of a workflow's set-up: the prepared model and optimizer, the state
    (restored on resume) and where to write."""

    config: LoopConfig
    accelerator: Any
    model: Any
    optimizer: Any
    scheduler: Any
    run_dir: Path
    total_steps: int
    state: TrainState
    console: Any
    verb: str = "train"  # named in the resume hint
    unit: str = "examples"  # the throughput unit logged: examples_per_s or tokens_per_s
    tb: Any = None
    penalised: list[Any] = dataclasses.field(default_factory=list)  # the weights --l1 applies to
    row_tables: list[Any] = dataclasses.field(default_factory=list)  # jiyi.rowwise's, if any
    sparsity: dict[str, Any] | None = None  # of those weights, at the end of training
    fresh: FreshRun | None = None  # a new run: what to remove if it fails before its first step
    unwritten: list[dict[str, Any]] | None = None  # metrics.jsonl records until the folder is
    on_evaluate: EvaluateHook | None = None  # from `evaluation_hook`, read by record_eval
    stopped_by: str | None = None  # the reason on_evaluate gave to stop

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def write_folder(self) -> None:
        """Write the run folder: config.yaml, logs/ (TensorBoard) and the metrics.jsonl records
        held until now. A new run calls this after its first optimizer step, a resumed one at
        once."""
        held, self.unwritten = self.unwritten or [], None
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.yaml", config_to_yaml(self.config))
            (self.run_dir / "logs").mkdir(exist_ok=True)
            self.tb = _tensorboard(self.run_dir / "logs")
            for record in held:
                append_jsonl(self.run_dir / "metrics.jsonl", record)

    def say(self, *args: Any, **kwargs: Any) -> None:
        if self.main:
            self.console.print(*args, **kwargs)

    def log(self, record: dict[str, Any]) -> None:
        if self.unwritten is not None:  # no folder yet: held until the first step
            self.unwritten.append(record)
        elif self.main:
            append_jsonl(self.run_dir / "metrics.jsonl", record)

    def record_eval(
        self, metrics: dict[str, Any], metric: str, save_best: Callable[[], None]
    ) -> bool:
        """Log a validation pass, keep the best model (save_best), count patience; True when
        early stopping says stop. `metrics[metric]` may be None (undefined): it never wins."""
        from jiyi.evaluate import metric_is_better

        state = self.state
        value = metrics.get(metric)
        improved = state.best_metric is None or metric_is_better(metric, value, state.best_metric)
        if improved:
            state.best_metric, state.best_step = value, state.step
            state.evals_without_improvement = 0
            save_best()
        else:
            state.evals_without_improvement += 1
        scalars = headline(metrics)
        self.log(
            {
                "event": "eval",
                "step": state.step,
                "epoch": state.epoch,
                **scalars,
                "best": state.best_metric,
                "improved": improved,
                "elapsed_s": round(process_seconds(), 1),
            }
        )
        if self.tb:
            for k, v in scalars.items():
                self.tb.add_scalar(f"validation/{k}", v, state.step)
        shown = "undefined" if value is None else f"{value:.4f}"
        best = "undefined" if state.best_metric is None else f"{state.best_metric:.4f}"
        self.say(
            f"step {state.step}: validation {metric} {shown}"
            + (" [green](best)[/]" if improved else f" (best {best})")
        )
        patience = getattr(self.config, "patience", None)
        stop = patience is not None and state.evals_without_improvement >= patience
        if stop:
            self.say(f"Early stopping: no improvement of {metric} in {patience} evaluations.")
        if self.on_evaluate is not None and (reason := self.on_evaluate(state.step, scalars)):
            self.stopped_by, stop = reason, True
            self.log({"event": "stopped", "step": state.step, "reason": reason})
            self.say(f"Stopped at step {state.step}: {reason}.")
        return stop

    def summary(self, train_seconds: float, **extra: Any) -> dict[str, Any]:
        """What every workflow's summary starts with (then `extra`): the run, its best step and
        validation value, steps, training seconds and the weights' sparsity."""
        state = self.state
        return {
            "run_dir": str(self.run_dir),
            "best_step": state.best_step,
            "best_validation": state.best_metric,
            "steps": state.step,
            "train_seconds": train_seconds,
            **extra,
            "sparsity": self.sparsity,
            **({"stopped_by": self.stopped_by} if self.stopped_by else {}),
        }

    def checkpoint(self) -> None:
        self.accelerator.wait_for_everyone()
        if self.main:
            save_checkpoint(
                self.run_dir,
                self.state,
                self.accelerator.unwrap_model(self.model),
                self.optimizer,
                self.scheduler,
                self.config.keep_checkpoints,
            )
        self.accelerator.wait_for_everyone()


@contextlib.contextmanager
def evaluation_hook(hook: EvaluateHook | None) -> Iterator[None]:
    """Runs started inside (`start_run`) call `hook(step, scalars)` after each validation pass
    (`Run.record_eval`); a non-empty string it returns stops training as early stopping does
    (the best model so far is kept, the run finishes normally) and is logged as event
    "stopped" with that reason."""
    token = ON_EVALUATE.set(hook)
    try:
        yield
    finally:
        ON_EVALUATE.reset(token)


def setup(
    config: C, explicit: set[str], console: Any, verb: str = "train"
) -> tuple[Path, C, Any, Any, Callable[..., None]]:
    """Validate the settings, check --output/--resume, make the accelerator, seed torch.
    Returns (run_dir, config as resumed, accelerator, console, say: prints on rank 0 only)."""
    from accelerate import Accelerator
    from rich.console import Console

    from jiyi.models import fit_max_length

    config.validate(require_paths=True)  # type: ignore[attr-defined]
    console = console or Console(stderr=True, soft_wrap=True)
    # cpu=True on a machine without CUDA lets torchrun-launched processes form a gloo group
    # (accelerate only picks MULTI_CPU when told the run is on the CPU)
    accelerator = Accelerator(mixed_precision="no", cpu=not torch.cuda.is_available())
    say = console.print if accelerator.is_main_process else (lambda *a, **k: None)
    run_dir, config = prepare_run_dir(config, explicit, verb=verb, say=say)
    config = fit_max_length(config, explicit, say)  # before anything is written
    precision, why = resolve_precision(config.precision, accelerator.device.type)
    if why != f"--precision {config.precision}":  # said when training starts, after the data
        PRECISION_NOTES[run_dir.absolute()] = f"Precision {precision} ({why})."
    config = dataclasses.replace(config, precision=precision)  # config.yaml says what ran
    if not config.resume and (fresh := FreshRun.before(run_dir)) is not None:
        FRESH_RUNS[fresh.run_dir] = fresh
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    return run_dir, config, accelerator, console, say


def grouped_epochs(
    lengths: np.ndarray, config: TrainConfig, accelerator: Any, *, unpadded: bool = False
) -> Callable[[int, int], Iterator[np.ndarray]]:
    """epoch_batches for run_loop over texts of these lengths: batches shuffled by (seed,
    epoch), this process's share, from a data position. `--batch-order` decides: "length"
    groups texts of similar length (little padding), "random" mixes them, and "auto" mixes them
    for a model whose steps skip the padding (`unpadded`, `jiyi.unpadded`), else groups."""
    from jiyi.data.collate import length_grouped_batches

    order = config.batch_order
    grouped = order == "length" or (order == "auto" and not unpadded)
    mega = 50 if grouped else 1  # a pool of 1 batch: random texts

    def epoch_batches(epoch: int, position: int) -> Iterator[np.ndarray]:
        batches = length_grouped_batches(lengths, config.batch_size, config.seed, epoch, mega)
        world = accelerator.num_processes
        return iter(shard(batches, accelerator.process_index, world)[position:])

    return epoch_batches


def carve_validation(examples: list[Any], config: Any, noun: str) -> tuple[list[Any], list[Any]]:
    """(train, validation) when there is no --validation: a --validation-fraction of the training
    `examples` (at least one) chosen by --seed, both in file order. `noun` names them in the
    error when too few are left to train on."""
    order = list(range(len(examples)))
    random.Random(config.seed).shuffle(order)
    cut = max(1, round(config.validation_fraction * len(examples)))
    if len(examples) - cut < 1:
        raise JiyiError(f"--train {config.train}: too few {noun} to carve out a validation set.")
    held = set(order[:cut])
    return (
        [ex for i, ex in enumerate(examples) if i not in held],
        [examples[i] for i in sorted(held)],
    )


def steps_per_epoch(n_examples: int, config: LoopConfig, world: int) -> int:
    """Optimizer steps in an epoch, as `shard` cuts the batches (the last one may be short)."""
    n_batches = max(1, math.ceil(n_examples / config.batch_size) // world)
    return math.ceil(n_batches / config.grad_accum)


def mid_epoch_evals(
    config: LoopConfig, evals_per_epoch: int, per_epoch: int
) -> Callable[[TrainState], bool]:
    """eval_due for run_loop: `evals_per_epoch` validation passes spread evenly over each
    epoch, the last of them the end-of-epoch pass run_loop makes anyway (the steps due before
    were multiples of per_epoch // evals_per_epoch, which also fell one step before the end:
    319 steps, 2 passes an epoch, ran 3).

    >>> due = mid_epoch_evals(LoopConfig(grad_accum=1), 2, 319)
    >>> [n for n in range(1, 320) if due(TrainState(batch_in_epoch=n))]
    [160]
    """
    marks = {round(k * per_epoch / evals_per_epoch) for k in range(1, evals_per_epoch)}
    marks -= {0, per_epoch}

    def due(state: TrainState) -> bool:
        return math.ceil(state.batch_in_epoch / config.grad_accum) in marks

    return due


def start_run(
    config: LoopConfig,
    accelerator: Any,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    *,
    run_dir: Path,
    total_steps: int,
    console: Any,
    verb: str = "train",
    unit: str = "examples",
) -> Run:
    """Prepare model and optimizer for the devices, restore the last checkpoint on --resume and
    write the run folder (a new run: after its first step, in run_loop). The model's dropout
    layers draw `jiyi.dropout`'s cheaper masks."""
    enable_fast_dropout(model)
    row_tables = list(getattr(optimizer, "tables", []))  # jiyi.rowwise.AdamW's; torch's: none
    model, optimizer = accelerator.prepare(model, optimizer)
    run = Run(
        config,
        accelerator,
        model,
        optimizer,
        scheduler,
        run_dir,
        total_steps,
        TrainState(),
        console,
    )
    run.verb, run.unit = verb, unit
    run.fresh = FRESH_RUNS.pop(run_dir.absolute(), None)
    if note := PRECISION_NOTES.pop(run_dir.absolute(), None):
        run.say(note)
    run.penalised = decay_split(accelerator.unwrap_model(model))[0]
    run.row_tables = row_tables
    run.on_evaluate = ON_EVALUATE.get()
    if config.resume and (ckpts := list_checkpoints(run_dir)):
        run.state = load_checkpoint(
            ckpts[-1], accelerator.unwrap_model(model), optimizer, scheduler
        )
        check_world_size(run.state, accelerator.num_processes, ckpts[-1])
        run.say(f"Resuming from {ckpts[-1]} (step {run.state.step}, epoch {run.state.epoch}).")
        state, patience = run.state, getattr(config, "patience", None)
        stopped_early = patience is not None and state.evals_without_improvement >= patience
        if state.finished and state.step < total_steps and not stopped_early:
            state.finished = False  # a larger --epochs / --max-steps (or --patience) given
            run.say(f"That run had finished at step {state.step}; continuing to {total_steps}.")
        elif state.finished:
            run.say("[yellow]That run had already finished; re-running its final evaluation.[/]")
    run.state.world_size = accelerator.num_processes  # saved with every checkpoint
    if config.resume:
        run.write_folder()
    else:
        run.unwritten = []
    accelerator.wait_for_everyone()
    return run


class _Lookahead:
    """An iterator that can tell whether another item follows (the end of an epoch)."""

    _END = object()

    def __init__(self, it: Iterator[Any]) -> None:
        self._it = it
        self._next = next(it, self._END)

    def exhausted(self) -> bool:
        return self._next is self._END

    def take(self, n: int) -> list[Any]:
        out = []
        while len(out) < n and self._next is not self._END:
            out.append(self._next)
            self._next = next(self._it, self._END)
        return out


def run_loop(
    run: Run,
    *,
    epoch_batches: Callable[[int, int], Iterator[Any]],
    batch_loss: Callable[[Any], tuple[torch.Tensor, int]],
    evaluate: Callable[[], bool],
    eval_due: Callable[[TrainState], bool] = lambda state: False,
) -> float:
    """Optimise until `run.total_steps`, early stopping or a signal; returns training seconds.

    epoch_batches(epoch, skip): this process's batches of `epoch`, after the first `skip` (the
        data position a resumed run continues from).
    batch_loss(batch): (mean loss of the batch, units in it: examples or tokens).
    evaluate(): validate, keep the best model; True when early stopping says stop. Called at
        the end of each epoch, at the last step, and whenever eval_due(state) says so.

    --l1 adds l1_penalty(run.penalised) to every batch's loss (scaled by the accumulation like
    the loss), or, with --l1-prox, soft-thresholds those weights after each optimizer step;
    either way metrics.jsonl logs the penalty as `l1` beside the data `loss`. At the end the
    weights' sparsity is logged (event "sparsity") and kept in run.sparsity.
    """
    config, accelerator, model, state = run.config, run.accelerator, run.model, run.state
    penalty_in_loss = config.l1 > 0 and not config.l1_prox
    world = accelerator.num_processes
    progress = _progress(run.console, run.main, run.unit)
    task = progress.add_task(
        run.verb, total=run.total_steps, completed=state.step, loss=float("nan"), eps=0.0
    )
    stop_early = state.finished
    window_loss, window_n, t_window, units_window = 0.0, 0, time.perf_counter(), 0
    t_start = time.perf_counter()
    model.train()
    with StopRequested() as stop, progress, _discard_if_unstarted(run):
        while state.step < run.total_steps and not stop_early:
            # 1. this epoch's batches, from the data position
            batches = _Lookahead(epoch_batches(state.epoch, state.batch_in_epoch))
            if batches.exhausted():
                if state.batch_in_epoch == 0:
                    raise JiyiError(
                        "The training data gave no batches: it is empty, or smaller than one "
                        "batch per process. Add data or lower --batch-size."
                    )
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                continue
            while state.step < run.total_steps:
                group = batches.take(config.grad_accum)
                # 2. forward and backward over the accumulation group
                for i, batch in enumerate(group):
                    sync = i == len(group) - 1
                    with (
                        contextlib.nullcontext() if sync else accelerator.no_sync(model),
                        torch.autocast(
                            accelerator.device.type,
                            dtype=torch.bfloat16,
                            enabled=config.precision == "bf16",
                        ),
                    ):
                        loss, units = batch_loss(batch)
                        loss = loss / len(group)
                    total = loss
                    if penalty_in_loss:  # outside autocast: summed in float32
                        total = loss + l1_penalty(run.penalised, config.l1) / len(group)
                    if not torch.isfinite(total):
                        raise JiyiError(
                            f"The training loss became {total.item()} at step {state.step} (epoch "
                            f"{state.epoch}). Lower --lr (now {config.lr}), keep --max-grad-norm "
                            "on, or use --precision fp32. The last good checkpoint is in "
                            f"{run.run_dir / 'checkpoints'}."
                        )
                    accelerator.backward(total)
                    window_loss += loss.item()
                    units_window += units * world
                # 3. clip (the vocabulary rows the group touched too), step, schedule
                if config.max_grad_norm > 0:
                    params = itertools.chain(model.parameters(), collect_rows(run.row_tables))
                    accelerator.clip_grad_norm_(params, config.max_grad_norm)
                run.optimizer.step()
                if config.l1_prox:  # shrink by the learning rate this step used, times λ
                    soft_threshold_(run.penalised, run.scheduler.get_last_lr()[0] * config.l1)
                run.scheduler.step()
                run.optimizer.zero_grad(set_to_none=True)
                state.step += 1
                if run.unwritten is not None:  # the first step is done: the run has started
                    run.write_folder()
                state.batch_in_epoch += len(group)
                state.examples_seen += sum(_batch_len(b) for b in group) * world
                window_n += 1
                # 4. log
                if state.step % config.log_every == 0 or state.step == run.total_steps:
                    mean_loss = float(
                        accelerator.reduce(torch.tensor(window_loss / window_n), "mean")
                    )
                    rate = units_window / max(1e-9, time.perf_counter() - t_window)
                    lr = run.scheduler.get_last_lr()[0]
                    record = {"event": "train", "step": state.step, "epoch": state.epoch}
                    record |= {"loss": mean_loss, "lr": lr, f"{run.unit}_per_s": rate}
                    if config.l1 > 0:  # the penalty on the weights as they are now
                        with torch.no_grad():
                            record["l1"] = float(l1_penalty(run.penalised, config.l1))
                    run.log(record)
                    if run.tb:
                        for k in ("loss", "lr", "l1"):
                            if k in record:
                                run.tb.add_scalar(f"train/{k}", record[k], state.step)
                    progress.update(task, loss=mean_loss, eps=rate)
                    window_loss, window_n, t_window, units_window = 0.0, 0, time.perf_counter(), 0
                progress.update(task, completed=state.step)
                # 5. validate + checkpoint; early stopping; periodic checkpoints; signals
                end_of_epoch = batches.exhausted()
                due = eval_due(state)
                if end_of_epoch:
                    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                t_aside = time.perf_counter()  # validation and checkpoints don't count in the rate
                if due or end_of_epoch or state.step == run.total_steps:
                    stop_early = evaluate()
                    if not (stop_early or state.step == run.total_steps):
                        run.checkpoint()  # the last is left to finish_checkpoints (it drops them)
                elif config.save_steps and state.step % config.save_steps == 0:
                    run.checkpoint()
                t_window += time.perf_counter() - t_aside
                if stop.signal is not None:
                    run.checkpoint()
                    name = signal.Signals(stop.signal).name
                    raise StoppedBySignal(
                        f"Stopped by {name} at step {state.step}; checkpoint written. "
                        f"Continue with: jiyi {run.verb} --output {run.run_dir} --resume"
                    )
                if stop_early or end_of_epoch:
                    break
    seconds = time.perf_counter() - t_start
    state.train_seconds += seconds
    state.finished = True
    # 6. how sparse the penalised weights ended up (with --l1 0 too: the baseline to compare)
    run.sparsity = weight_sparsity(accelerator.unwrap_model(model))
    run.log({"event": "sparsity", "step": state.step, "l1_lambda": config.l1, **run.sparsity})
    run.say(
        f"Weights with |w| < {run.sparsity['threshold']:g}: {run.sparsity['near_zero']:.2%} "
        f"(exactly 0: {run.sparsity['exact_zero']:.2%}) of {run.sparsity['n_weights']}."
    )
    finish_checkpoints(run)
    return seconds


def finish_checkpoints(run: Run) -> None:
    """At the end of a run: keep the last --keep-checkpoints checkpoints (the final one
    written) when --keep-final-checkpoint asks, else none (model/ is the result; optimizer
    state is only for resuming). Then say the folder's size in one line."""
    if run.config.keep_final_checkpoint:
        run.checkpoint()
    elif run.main:
        prune_checkpoints(run.run_dir, 0)
    run.accelerator.wait_for_everyone()
    ckpts = list_checkpoints(run.run_dir)
    kept = (
        f"{len(ckpts)} checkpoint{'s' * (len(ckpts) != 1)} "
        f"{human_bytes(folder_bytes(run.run_dir / 'checkpoints'))}"
        if ckpts
        else "no checkpoint: --keep-final-checkpoint keeps the last to --resume from"
    )
    run.say(
        f"Run folder {run.run_dir}: {human_bytes(folder_bytes(run.run_dir))} "
        f"({MODEL_DIR}/ {human_bytes(folder_bytes(run.run_dir / MODEL_DIR))}; {kept})."
    )


@contextlib.contextmanager
def _discard_if_unstarted(run: Run) -> Iterator[None]:
    """A new run that fails before its first optimizer step removes what it wrote."""
    try:
        yield
    except BaseException:
        if run.unwritten is not None and run.fresh is not None and run.main:
            run.fresh.discard()
        raise


def shard(batches: list[Any], rank: int, world: int) -> list[Any]:
    """This process's share: every world-th batch, the tail cut so all ranks step equally."""
    return batches[: len(batches) // world * world][rank::world] or batches[:1]


def skip(it: Iterator[Any], n: int) -> Iterator[Any]:
    """`it` after its first n items."""
    return itertools.islice(it, n, None)


def _batch_len(batch: Any) -> int:
    return len(batch) if hasattr(batch, "__len__") else 1


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar entries of a metrics dict (what goes to metrics.jsonl and TensorBoard)."""
    return {
        k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _tensorboard(log_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: metrics.jsonl still has everything
        return None
    return SummaryWriter(log_dir=str(log_dir))


def _progress(console: Any, enabled: bool, unit: str) -> Any:
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    short = {"examples": "ex", "tokens": "tok"}.get(unit, unit)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[eps]:.0f} " + short + "/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled or os.environ.get("JIYI_NO_PROGRESS") == "1",
    )
