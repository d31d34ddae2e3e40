"""The Hugging Face side of bench_pretrain.py's throughput part, one round in its own process:

    python bench/pretrain_hf.py SPEC.json     # SPEC: bench_pretrain's settings plus "output"

run_mlm.py without --line_by_line: tokenize, group_texts into max_length blocks,
DataCollatorForLanguageModeling, BertForMaskedLM(config) with jiyi's BertConfig, Trainer; each
step timed from one `on_step_end` to the next. Writes OUTPUT/result.json.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import write_json


def main(spec_file: str) -> int:
    """One HF round with the settings in SPEC_FILE; writes OUTPUT/result.json beside it."""
    import datasets
    import torch
    from datasets import Dataset
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForMaskedLM,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    from jiyi.pretrain.mlm import PRESET_CONFIGS

    s = json.loads(Path(spec_file).read_text())
    datasets.disable_progress_bars()
    torch.set_num_threads(s["threads"])
    tokenizer = AutoTokenizer.from_pretrained(s["tokenizer"])
    block = s["max_length"]

    # 1. as many corpus lines as steps × batch × max_length tokens need, × 1.5 (prep not timed
    # against the budget: it is reported on its own)
    sample = []
    with open(s["corpus"], encoding="utf-8") as f:
        for line in f:
            if line.strip():
                sample.append(line.strip())
            if len(sample) == 2000:
                break
    per_line = statistics.fmean(len(x) for x in tokenizer(sample)["input_ids"])
    need_lines = math.ceil(1.5 * s["steps"] * s["batch_size"] * block / per_line)

    # 2. dataset prep, timed: read, tokenize, group_texts (run_mlm.py's functions)
    t0 = time.perf_counter()
    lines = []
    with open(s["corpus"], encoding="utf-8") as f:
        for line in f:
            if line.strip():
                lines.append(line.strip())
                if len(lines) == need_lines:
                    break

    def tokenize_function(examples: dict[str, list[str]]) -> Any:
        return tokenizer(examples["text"], return_special_tokens_mask=True)

    def group_texts(examples: dict[str, list[Any]]) -> dict[str, list[Any]]:
        concatenated = {k: [x for seq in examples[k] for x in seq] for k in examples}
        total = len(concatenated[next(iter(examples))]) // block * block
        return {
            k: [t[i : i + block] for i in range(0, total, block)] for k, t in concatenated.items()
        }

    dataset = Dataset.from_dict({"text": lines})
    dataset = dataset.map(tokenize_function, batched=True, remove_columns=["text"])
    dataset = dataset.map(group_texts, batched=True)
    prep_seconds = time.perf_counter() - t0

    # 3. the model: jiyi.pretrain.mlm.build_model's BertConfig, the same seed
    arch = dict(PRESET_CONFIGS[s["config"]])
    arch.update(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id or 0,
        max_position_embeddings=max(512, block),
        tie_word_embeddings=True,
    )
    set_seed(42)
    model = BertForMaskedLM(BertConfig(**arch))

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.begin: list[float] = []
            self.end: list[float] = []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.begin.append(time.perf_counter())

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.end.append(time.perf_counter())

    times = StepTimes()
    targs = TrainingArguments(
        output_dir=str(Path(s["output"]) / "trainer"),
        per_device_train_batch_size=s["batch_size"],
        max_steps=s["steps"],
        learning_rate=s["lr"],
        warmup_steps=s["warmup_ratio"],  # a float < 1 is a ratio of the total steps in 5.x
        weight_decay=s["weight_decay"],
        logging_steps=10**6,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),  # the GPU where there is one, as jiyi
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=42,
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=dataset,
        data_collator=DataCollatorForLanguageModeling(
            tokenizer, mlm_probability=s["mlm_probability"]
        ),
        processing_class=tokenizer,
        callbacks=[times],
    )
    t0 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t0

    # 4. a step is end-to-end like jiyi's log window: the Trainer fetches and masks a batch
    # before on_step_begin, so begin→end alone would leave the collator out
    tokens = s["batch_size"] * block  # group_texts blocks are all full
    step_s = [times.end[0] - times.begin[0]]
    step_s += [b - a for a, b in zip(times.end, times.end[1:], strict=False)]
    compute_s = [e - b for b, e in zip(times.begin, times.end, strict=True)]
    kept = [tokens / x for x in step_s[s["warmup_steps"] :]]
    write_json(
        Path(s["output"]) / "result.json",
        {
            "prep_seconds": prep_seconds,
            "prep_lines": len(lines),
            "blocks": len(dataset),
            "epochs_over_blocks": s["steps"] * s["batch_size"] / max(1, len(dataset)),
            "train_seconds": train_seconds,
            "steps": trainer.state.global_step,
            "tokens_per_s": kept,
            "median_tokens_per_s": statistics.median(kept),
            "median_tokens_per_s_begin_to_end": statistics.median(
                tokens / x for x in compute_s[s["warmup_steps"] :]
            ),
            "parameters": sum(p.numel() for p in model.parameters()),
            "attn_implementation": model.config._attn_implementation,
            "optimizer": str(targs.optim),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
