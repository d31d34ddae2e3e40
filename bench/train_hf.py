"""The Hugging Face side of bench_train.py's rows `a` and `b`: the Trainer set up as
examples/pytorch/text-classification/run_classification.py does, `a` with its defaults (pad to
max_length, `default_data_collator`), `b` with dynamic padding and group_by_length. Runs inside
bench_train.py's worker process; imports torch and transformers only when called.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from common import epoch_trainer_arguments, parameter_counts, read_csv, token_lengths, train_tokens


def trainer_row(
    cfg: dict[str, Any],
    variant: str,
    *,
    arguments: dict[str, Any] | None = None,
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """Row `variant` ("a" or "b") from OUTPUT/bench_config.json's settings: train, test, count.
    `arguments` replace or add `TrainingArguments` (bench_parity: evaluation cadence, bf16),
    `callbacks` go to the Trainer."""
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        default_data_collator,
        set_seed,
    )

    from jiyi.models import resolve_model

    torch.set_num_threads(cfg["threads"])
    hp, dynamic = cfg["hparams"], variant == "b"
    splits = {s: read_csv(p) for s, p in cfg["data"].items()}
    labels = sorted({r["label"] for r in splits["train"]})
    label2id = {label: i for i, label in enumerate(labels)}
    model_path = resolve_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(model_path)

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, Any]:
        padding = False if dynamic else "max_length"
        enc = tokenizer(
            batch["text"], padding=padding, truncation=True, max_length=hp["max_length"]
        )
        enc["label"] = [label2id[y] for y in batch["label"]]
        return enc

    data = {
        s: Dataset.from_dict(
            {"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]}
        ).map(tokenize, batched=True, remove_columns=["text", "label"])
        for s, rows in splits.items()
    }
    set_seed(hp["seed"])
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
    )
    args = epoch_trainer_arguments(
        Path(cfg["output"]) / "runs" / f"hf_{variant}",
        hp,
        cfg["epochs"],
        train_sampling_strategy="group_by_length" if dynamic else "random",
        **(arguments or {}),
    )

    def accuracy(pred: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer) if dynamic else default_data_collator,
        compute_metrics=accuracy,
        callbacks=callbacks,
    )
    t0 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t0
    pred = trainer.predict(data["test"])
    lengths = token_lengths(tokenizer, [r["text"] for r in splits["train"]], hp["max_length"])
    steps = trainer.state.global_step
    return {
        "test_accuracy": accuracy(pred)["accuracy"],
        "train_seconds": train_seconds,
        "steps": steps,
        "validations": sum("eval_accuracy" in h for h in trainer.state.log_history),
        "validation_accuracy": [
            h["eval_accuracy"] for h in trainer.state.log_history if "eval_accuracy" in h
        ],
        "train_tokens": train_tokens(lengths, cfg["epochs"], steps, hp["batch_size"]),
        "params": parameter_counts(model),
        "eval_batch_size": args.per_device_eval_batch_size,
    }
