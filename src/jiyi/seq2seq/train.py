"""`jiyi train --task seq2seq`: summarization and translation on the shared loop (`jiyi.loop`).

Reads top to bottom: read the source/target pairs, load an encoder-decoder (or warm-start
BERT2BERT from two encoders, --share-weights tying them), tokenize (labels -100 past each
target), then the loop with a teacher-forced cross-entropy over the target tokens; each
validation generates (greedy, or beam search with --num-beams) and scores ROUGE, BLEU, chrF and
the teacher-forced loss, keeping the best model by --metric; the test split at the end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jiyi.config import TrainConfig
from jiyi.data.collate import sorted_batches
from jiyi.io import atomic_directory, atomic_write_json, atomic_write_text
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
from jiyi.runs import write_meta
from jiyi.seq2seq.data import (
    IGNORE,
    EncodedPairs,
    Pair,
    PairData,
    encode_pairs,
    pad_pairs,
    read_pairs,
)
from jiyi.tasks.presets import resolve_schedule
from jiyi.tasks.registry import get_task


def read_splits(config: TrainConfig) -> dict[str, PairData]:
    """train / validation (/ test) pairs; without --validation a seeded slice of --train."""
    splits: dict[str, PairData] = {}
    for name, path in (
        ("train", config.train),
        ("validation", config.validation),
        ("test", config.test),
    ):
        if path:
            splits[name] = read_pairs(
                path,
                source_column=config.source_column,
                target_column=config.target_column,
                on_bad_rows=config.on_bad_rows,
            )
    if "validation" not in splits:
        train, held = carve_validation(splits["train"].examples, config, "pairs")
        splits["train"].examples = train
        splits["validation"] = PairData(Path(f"{config.train} (held out)"), held)
    return splits


def fit_lengths(model: Any, config: TrainConfig, say: Any) -> tuple[int, int, int]:
    """--max-length, --max-target-length and --max-new-tokens (default: the target length),
    each cut to what the model's position embeddings hold, with a notice when cut. A tiny BERT
    of 64 positions as the decoder: targets of at most 64 tokens, at most 63 new ones (its
    start token takes the first position)."""
    from jiyi.seq2seq.modeling import position_limits

    enc_limit, dec_limit = position_limits(model)
    new_limit = None if dec_limit is None else dec_limit - 1
    wanted = (
        ("--max-length", config.max_length, enc_limit, f"the encoder holds {enc_limit} positions"),
        ("--max-target-length", config.max_target_length, dec_limit,
         f"the decoder holds {dec_limit} positions"),
        ("--max-new-tokens", config.max_new_tokens or config.max_target_length, new_limit,
         f"the decoder holds {dec_limit} positions, one for its start token"),
    )  # fmt: skip
    out = []
    for flag, value, limit, why in wanted:
        if limit is not None and value > limit:
            say(f"[yellow]{flag} {value}: {why}; using {limit}.[/]")
            value = limit
        out.append(value)
    return out[0], out[1], out[2]


def token_loss(model: Any, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Teacher-forced cross-entropy summed over the target tokens, and their number.

    The decoder reads the labels shifted right behind its start token (-100 read as padding):
    labels "b c </s>" -> decoder input "<start> b c"; position t predicts labels[t].
    """
    labels = inputs["labels"]  # (B, T)
    core = model.module if hasattr(model, "module") else model  # under DDP
    decoder_input_ids = core.prepare_decoder_input_ids_from_labels(labels=labels)  # (B, T)
    logits = model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        decoder_input_ids=decoder_input_ids,
    ).logits.float()  # (B, T, V)
    loss = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="sum"
    )
    return loss, int((labels != IGNORE).sum())


@torch.inference_mode()
def mean_token_loss(
    model: Any, enc: EncodedPairs, pad_id: int, batch_size: int, device: Any
) -> float:
    """Teacher-forced loss per target token over a whole split (the `loss` metric)."""
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    for batch in sorted_batches(enc.lengths, batch_size):
        inputs = {k: v.to(device) for k, v in pad_pairs(enc, batch, pad_id).items()}
        loss, count = token_loss(model, inputs)
        total, n = total + float(loss), n + count
    if was_training:
        model.train()
    return total / max(1, n)


def evaluate_pairs(
    model: Any, tokenizer: Any, enc: EncodedPairs, pairs: list[Pair], gen: Any, *,
    batch_size: int, device: Any,
) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    """Generate for every source, score against the targets; returns (metrics, predictions)."""
    from jiyi.seq2seq.metrics import seq2seq_metrics
    from jiyi.seq2seq.modeling import generate_texts

    predictions = generate_texts(
        model, tokenizer, enc.sources, gen, batch_size=batch_size, device=device
    )
    metrics = seq2seq_metrics(predictions, [p.target or "" for p in pairs])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    metrics["loss"] = mean_token_loss(model, enc, pad_id, batch_size, device)
    return metrics, predictions


def train_seq2seq(
    config: TrainConfig, console: Any = None, explicit: set[str] = frozenset()
) -> dict[str, Any]:
    """Fine-tune an encoder-decoder; returns a summary (metrics, paths, timings)."""
    from jiyi.seq2seq.metrics import check_installed
    from jiyi.seq2seq.modeling import generation_config, load_saved, load_seq2seq, save_seq2seq

    check_installed()
    run_dir, config, accelerator, console, say = setup(config, explicit, console)
    main = accelerator.is_main_process

    # --- data and model: every input error surfaces here ----------------------------------
    splits = read_splits(config)
    model, tokenizer, shared = load_seq2seq(
        config.model, decoder=config.decoder, share_weights=config.share_weights,
        dropout=config.dropout,
    )  # fmt: skip
    start_id = model.config.decoder_start_token_id
    max_length, max_target_length, max_new_tokens = fit_lengths(model, config, say)
    encoded = {
        name: encode_pairs(
            tokenizer,
            split.examples,
            max_length=max_length,
            max_target_length=max_target_length,
            decoder_start_id=start_id,
        )
        for name, split in splits.items()
    }
    for name, split in splits.items():
        enc = encoded[name]
        for n, what, flag, limit in (
            (enc.truncated_sources, "sources", "--max-length", max_length),
            (enc.truncated_targets, "targets", "--max-target-length", max_target_length),
        ):
            if n:
                say(
                    f"[yellow]{name}: {n} of {len(enc)} {what} were longer than {flag} {limit} "
                    "and were cut.[/]"
                )
        if split.skipped:
            say(f"[yellow]--on-bad-rows skip: skipped {len(split.skipped)} bad rows of {name}.[/]")
    gen = generation_config(
        model, num_beams=config.num_beams, length_penalty=config.length_penalty,
        max_new_tokens=max_new_tokens,
        no_repeat_ngram_size=config.no_repeat_ngram_size,
    )  # fmt: skip
    model.generation_config = gen  # saved with the model as generation_config.json
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    train_enc, val_enc = encoded["train"], encoded["validation"]
    if shared:
        say(f"--share-weights: {len(shared)} encoder tensors are the decoder's own.")

    # --- optimizer, schedule, resume --------------------------------------------------------
    world = accelerator.num_processes
    per_epoch = steps_per_epoch(len(train_enc), config, world)
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
        net = accelerator.unwrap_model(model)
        run.log(
            {
                "event": "start",
                "task": "seq2seq",
                "architecture": type(net).__name__,
                "parameters": sum(p.numel() for p in net.parameters()),
                "shared_tensors": len(shared),
                "n_train": len(train_enc),
                "n_validation": len(val_enc),
                "total_steps": total_steps,
                "world_size": world,
            }
        )

    def save_best(metrics: dict[str, Any]) -> None:
        if not main:
            return
        with atomic_directory(run_dir / "model") as tmp:
            save_seq2seq(accelerator.unwrap_model(model), tokenizer, tmp, shared)
            meta = {
                "task": "seq2seq",
                "source_column": config.source_column,
                "target_column": config.target_column,
                "max_length": max_length,
                "max_target_length": max_target_length,
                "generation": {
                    "num_beams": gen.num_beams,
                    "length_penalty": gen.length_penalty,
                    "max_new_tokens": gen.max_new_tokens,
                    "no_repeat_ngram_size": gen.no_repeat_ngram_size,
                },
                "share_weights": bool(shared),
                "base_model": config.model,
                "decoder": config.decoder,
                "step": state.step,
                "validation": metrics,
            }
            write_meta(tmp, meta)

    def run_eval() -> bool:
        metrics, _ = evaluate_pairs(
            accelerator.unwrap_model(model), tokenizer, val_enc, splits["validation"].examples,
            gen, batch_size=config.eval_batch_size, device=accelerator.device,
        )  # fmt: skip
        assert config.metric is not None
        return run.record_eval(metrics, config.metric, lambda: save_best(metrics))

    def batch_loss(batch: np.ndarray) -> tuple[torch.Tensor, int]:
        inputs = {
            k: v.to(accelerator.device) for k, v in pad_pairs(train_enc, batch, pad_id).items()
        }
        total, n_tokens = token_loss(model, inputs)
        return total / max(1, n_tokens), len(batch)

    train_seconds = run_loop(
        run,
        epoch_batches=grouped_epochs(train_enc.lengths, config, accelerator),
        batch_loss=batch_loss,
        evaluate=run_eval,
        eval_due=mid_epoch_evals(config, config.evals_per_epoch, per_epoch),
    )

    # --- the best model on the test split -------------------------------------------------------
    summary = run.summary(train_seconds, task="seq2seq")
    if "test" in splits:
        best = load_saved(run_dir / "model", share_weights=bool(shared)).to(accelerator.device)
        test = splits["test"]
        metrics, predictions = evaluate_pairs(
            best, tokenizer, encoded["test"], test.examples, best.generation_config,
            batch_size=config.eval_batch_size, device=accelerator.device,
        )  # fmt: skip
        if main:
            write_seq2seq_eval(run_dir / "eval", metrics, test.examples, predictions)
            run.log({"event": "test", **headline(metrics)})
        summary["test"] = metrics
        summary["test_file"] = config.test
    if run.tb:
        run.tb.close()
    accelerator.wait_for_everyone()
    return summary


def write_seq2seq_eval(
    out_dir: Path, metrics: dict[str, Any], pairs: list[Pair], predictions: list[str]
) -> None:
    """eval/metrics.json and eval/predictions.jsonl (line, source, target, prediction; the
    wrong ones first)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "metrics.json", metrics)
    rows = [
        {"line": p.line, "source": p.source, "target": p.target, "prediction": pred,
         "exact": pred.strip() == (p.target or "").strip()}
        for p, pred in zip(pairs, predictions, strict=True)
    ]  # fmt: skip
    rows.sort(key=lambda r: r["exact"])  # stable: the misses first, in file order
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    atomic_write_text(out_dir / "predictions.jsonl", lines)
