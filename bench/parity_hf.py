"""The Hugging Face Trainer arms of bench_parity.py, in its worker process.

The set-ups are the ones the other benchmarks already run, called with extra `TrainingArguments`
and one callback, never copied:

    classification  train_hf.trainer_row: `a` pads to max_length (run_classification.py's
                    default collator), `b` pads dynamically and groups by length
    ner             bench_ner.worker_hf (run_ner.py's set-up: dynamic padding); `a` random
                    batches as run_ner.py, `b` with train_sampling_strategy="group_by_length"

On top: validation every `eval_steps` optimizer steps (eval_strategy="steps", the cadence of
jiyi's evaluations), `bf16=True` for the `_bf16` arms (bfloat16 autocast on the CPU), `max_steps`
in --quick, and `EvalClock`, which stamps every validation pass with the wall seconds since the
worker started. Imports torch and transformers only when called.
"""

from __future__ import annotations

import time
from typing import Any


def eval_clock(t0: float, metric: str) -> Any:
    """A TrainerCallback that records (wall seconds since `t0`, step, validation `metric`) at
    every evaluation, and the wall seconds at which training began and ended."""
    from transformers import TrainerCallback

    class EvalClock(TrainerCallback):
        def __init__(self) -> None:
            self.evaluations: list[dict[str, Any]] = []
            self.train_began: float | None = None
            self.train_ended: float | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.train_began = time.perf_counter() - t0

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.train_ended = time.perf_counter() - t0

        def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            metrics = kwargs.get("metrics") or {}
            self.evaluations.append(
                {
                    "wall": time.perf_counter() - t0,
                    "step": state.global_step,
                    "value": metrics.get(f"eval_{metric}"),
                }
            )

    return EvalClock()


def trainer_arm(cfg: dict[str, Any], arm: str, seed: int, t0: float) -> dict[str, Any]:
    """Train and test one Trainer arm (`hf_a`, `hf_b`, either with `_bf16`) at `seed` with the
    part's settings (OUTPUT/PART/config.json); the record bench_parity.py writes."""
    variant = "b" if arm.startswith("hf_b") else "a"
    precision = "bf16" if arm.endswith("_bf16") else "fp32"
    arguments: dict[str, Any] = {
        "eval_strategy": "steps",
        "eval_steps": cfg["eval_steps"],
        "bf16": precision == "bf16",
    }
    if cfg.get("max_steps"):
        arguments["max_steps"] = cfg["max_steps"]
    clock = eval_clock(t0, cfg["metric"])
    hp = {**cfg["trainer_hparams"], "seed": seed}
    shared = {"threads": cfg["threads"], "hparams": hp, "data": cfg["data"]}
    shared |= {"output": cfg["output"], "run_name": f"{arm}-{seed}"}  # no checkpoints written
    if cfg["part"] == "classification":
        from train_hf import trainer_row

        row = trainer_row(
            {**shared, "epochs": hp["epochs"]}, variant, arguments=arguments, callbacks=[clock]
        )
        test, extra = row["test_accuracy"], {"train_tokens": row["train_tokens"]}
    else:
        from bench_ner import worker_hf

        if variant == "b":
            arguments["train_sampling_strategy"] = "group_by_length"
        row = worker_hf(shared, arguments=arguments, callbacks=[clock])
        test = row["test"]["f1"]
        extra = {k: row["test"][k] for k in ("precision", "recall")}
        extra["truncated_test_words"] = row["truncated_test_words"]
    return {
        "system": "Trainer",
        "arm": arm,
        "seed": seed,
        "precision": precision,
        "test": test,
        "evaluations": clock.evaluations,
        "train_seconds": row["train_seconds"],
        "train_began": clock.train_began,
        "train_ended": clock.train_ended,
        "steps": row["steps"],
        "settings": {**hp, "eval_steps": cfg["eval_steps"], "max_steps": cfg.get("max_steps")},
        **extra,
    }
