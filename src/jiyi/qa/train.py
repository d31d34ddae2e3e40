"""`jiyi train --task qa`: extractive question answering on the shared loop (`jiyi.loop.run_loop`).

Reads top to bottom: read and check the questions (every answer must sit at its answer_start),
cut question + context into overlapping windows with --stride, point each window's start/end
at the answer (or at [CLS] when it holds none), then the loop with the mean of the start and
end cross-entropies, validation exact match / F1 after the best span search over all windows of
a question (`jiyi.qa.spans`), and the test evaluation with the best model at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jiyi.config import TrainConfig
from jiyi.data.collate import pad_batch
from jiyi.errors import JiyiError
from jiyi.io import atomic_directory
from jiyi.loop import (
    build_optimizer,
    carve_validation,
    grouped_epochs,
    headline,
    mid_epoch_evals,
    run_loop,
    setup,
    start_run,
    steps_per_epoch,
)
from jiyi.qa.data import Columns, QAExample, read_qa
from jiyi.qa.predict import answer_questions, evaluate_answers, write_qa_eval
from jiyi.qa.windows import (
    QAWindows,
    cut_questions,
    encode_windows,
    max_question_tokens,
    training_span,
)
from jiyi.runs import write_meta
from jiyi.tasks.presets import resolve_schedule
from jiyi.tasks.registry import get_task


@dataclass
class QASplit:
    name: str
    source: str
    examples: list[QAExample]
    skipped: int = 0
    windows: QAWindows | None = None  # the training split only


def read_splits(config: TrainConfig) -> dict[str, QASplit]:
    """train / validation (/ test) questions; without --validation a seeded slice of --train."""
    columns = Columns(config.question_column, config.context_column, config.answers_column)
    splits: dict[str, QASplit] = {}
    for name, path in (
        ("train", config.train),
        ("validation", config.validation),
        ("test", config.test),
    ):
        if path:
            data = read_qa(path, columns=columns, labelled=True, on_bad_rows=config.on_bad_rows)
            splits[name] = QASplit(name, path, data.examples, len(data.skipped))
    if "validation" not in splits:
        train, held = carve_validation(splits["train"].examples, config, "questions")
        splits["train"].examples = train
        splits["validation"] = QASplit("validation", f"{config.train} (held out)", held)
    return splits


def training_windows(tokenizer: Any, examples: list[QAExample], config: TrainConfig) -> QAWindows:
    """Windows of the training questions, pointed at their first answer (or at [CLS])."""
    spans = [
        training_span(ex.context, ex.answers[0].start, ex.answers[0].text) if ex.answers else None
        for ex in examples
    ]
    assert config.stride is not None
    return encode_windows(
        tokenizer, [ex.question for ex in examples], [ex.context for ex in examples],
        config.max_length, config.stride, spans,
    )  # fmt: skip


def training_texts(tokenizer: Any, examples: list[QAExample], config: TrainConfig) -> list[str]:
    """What `encode_windows` tokenizes of the training questions, for --trim-vocab: every
    question whole (it is tokenized to find where to cut it) and as cut, and every context."""
    questions = [ex.question for ex in examples]
    cut, _ = cut_questions(tokenizer, questions, max_question_tokens(config.max_length))
    whole = [q.lstrip() for q in questions]
    return (
        whole
        + [c for c, w in zip(cut, whole, strict=True) if c != w]
        + [ex.context for ex in examples]
    )


def train_qa(
    config: TrainConfig, console: Any = None, explicit: set[str] = frozenset()
) -> dict[str, Any]:
    """Fine-tune a span-extraction model; returns a summary (metrics, paths, timings)."""
    from transformers import AutoModelForQuestionAnswering

    from jiyi.compress.trim_hooks import apply_freeze, trimmed_base
    from jiyi.hf import quiet_transformers, use_safetensors
    from jiyi.lora import apply_lora, load_pretrained, save_adapter, save_weights
    from jiyi.models import load_tokenizer, refuse_compressed, resolve_model

    run_dir, config, accelerator, console, say = setup(config, explicit, console)
    main = accelerator.is_main_process
    assert config.stride is not None and config.metric is not None

    # --- data and model: every input error surfaces here ----------------------------------
    splits = read_splits(config)
    model_path = resolve_model(config.model)
    refuse_compressed(Path(model_path))
    tokenizer = load_tokenizer(model_path)
    if config.trim_vocab:  # to the training questions and contexts, as encode_windows sees them
        model_path = trimmed_base(
            model_path, config, partial(training_texts, tokenizer, splits["train"].examples, config),
            run_dir, accelerator, say,
        )  # fmt: skip
        tokenizer = load_tokenizer(model_path)
    overrides: dict[str, Any] = {}
    if config.dropout is not None:
        overrides.update(
            hidden_dropout_prob=config.dropout, attention_probs_dropout_prob=config.dropout
        )
    try:
        with quiet_transformers():
            model = AutoModelForQuestionAnswering.from_pretrained(
                model_path, ignore_mismatched_sizes=True,
                use_safetensors=use_safetensors(model_path), **overrides,
            )  # fmt: skip
    except (OSError, ValueError) as e:
        raise JiyiError(
            f"--model {model_path}: could not load it for question answering ({e})."
        ) from None
    apply_freeze(model, config, say)
    model = apply_lora(model, config, say)  # --lora-r: peft adapters, the head in full
    train_split, val_split = splits["train"], splits["validation"]
    windows = training_windows(tokenizer, train_split.examples, config)
    for split in splits.values():
        if split.skipped:
            say(
                f"[yellow]--on-bad-rows skip: skipped {split.skipped} bad questions of {split.name}.[/]"
            )
    if len(windows) > len(train_split.examples):
        say(
            f"train: {len(train_split.examples)} questions in {len(windows)} windows (contexts "
            f"longer than --max-length {config.max_length} overlap by --stride {config.stride})."
        )
    if windows.questions_cut:
        say(f"[yellow]train: {windows.questions_cut} questions cut to half of --max-length.[/]")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    # --- optimizer, schedule, resume --------------------------------------------------------
    world = accelerator.num_processes
    enc = windows.to_encoded()
    per_epoch = steps_per_epoch(len(enc), config, world)
    total_steps = resolve_schedule(
        get_task(config.task).preset, config, per_epoch, model, say, config.task
    )
    optimizer, scheduler = build_optimizer(model, config, total_steps)
    run = start_run(
        config, accelerator, model, optimizer, scheduler,
        run_dir=run_dir, total_steps=total_steps, console=console,
    )  # fmt: skip
    model, state = run.model, run.state
    if state.step == 0:
        run.log(
            {
                "event": "start",
                "task": "qa",
                "n_train": len(train_split.examples),
                "n_validation": len(val_split.examples),
                "train_windows": len(windows),
                "train_unanswerable": sum(not ex.answers for ex in train_split.examples),
                "skipped": {k: s.skipped for k, s in splits.items()},
                "total_steps": total_steps,
                "world_size": world,
            }
        )

    def evaluate_split(model: Any, split: QASplit) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        spans = answer_questions(
            model, tokenizer,
            [ex.question for ex in split.examples], [ex.context for ex in split.examples],
            max_length=config.max_length, stride=config.stride,  # type: ignore[arg-type]
            max_answer_length=config.max_answer_length, null_threshold=config.null_threshold,
            batch_size=config.eval_batch_size, device=accelerator.device,
        )  # fmt: skip
        metrics, rows = evaluate_answers(split.examples, spans)
        metrics["skipped"] = split.skipped
        return metrics, rows

    def save_best(metrics: dict[str, Any]) -> None:
        if not main:
            return
        with atomic_directory(run_dir / "model") as tmp:
            with quiet_transformers():
                save_weights(accelerator.unwrap_model(model), tmp)  # a LoRA model: merged
                tokenizer.save_pretrained(str(tmp))
            meta = {
                "task": "qa",
                "max_length": config.max_length,
                "stride": config.stride,
                "max_answer_length": config.max_answer_length,
                "null_threshold": config.null_threshold,
                "question_column": config.question_column,
                "context_column": config.context_column,
                "answers_column": config.answers_column,
                "base_model": config.model,
                "step": state.step,
                "validation": metrics,
            }
            meta.update(save_adapter(accelerator.unwrap_model(model), run_dir))  # RUN_DIR/adapter
            write_meta(tmp, meta)

    def run_eval() -> bool:
        metrics, _ = evaluate_split(accelerator.unwrap_model(model), val_split)
        return run.record_eval(metrics, config.metric, lambda: save_best(metrics))  # type: ignore[arg-type]

    starts = torch.from_numpy(windows.start_positions)
    ends = torch.from_numpy(windows.end_positions)

    def batch_loss(batch: np.ndarray) -> tuple[torch.Tensor, int]:
        inputs = {k: v.to(accelerator.device) for k, v in pad_batch(enc, batch, pad_id).items()}
        out = model(**inputs)
        padding = inputs["attention_mask"] == 0  # (B, T)
        start_logits = out.start_logits.float().masked_fill(padding, -1e4)  # (B, T)
        end_logits = out.end_logits.float().masked_fill(padding, -1e4)  # (B, T)
        loss = (
            torch.nn.functional.cross_entropy(start_logits, starts[batch].to(accelerator.device))
            + torch.nn.functional.cross_entropy(end_logits, ends[batch].to(accelerator.device))
        ) / 2
        return loss, len(batch)

    train_seconds = run_loop(
        run,
        epoch_batches=grouped_epochs(enc.lengths, config, accelerator),
        batch_loss=batch_loss,
        evaluate=run_eval,
        eval_due=mid_epoch_evals(config, config.evals_per_epoch, per_epoch),
    )

    # --- the best model on the test split -------------------------------------------------------
    summary = run.summary(train_seconds)
    if "test" in splits:
        accelerator.wait_for_everyone()
        with quiet_transformers():
            best = load_pretrained(AutoModelForQuestionAnswering, run_dir / "model")
        best.to(accelerator.device)
        metrics, rows = evaluate_split(best, splits["test"])
        if main:
            write_qa_eval(run_dir / "eval", metrics, rows)
            run.log({"event": "test", **headline(metrics)})
        summary["test"] = metrics  # printed by `jiyi train` through the task's adapter
        summary["test_file"] = config.test
    if run.tb:
        run.tb.close()
    accelerator.wait_for_everyone()
    return summary
