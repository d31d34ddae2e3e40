"""Few-shot classification by contrastive fine-tuning (SetFit's method): `jiyi train --method
contrastive`. Training reads as two named phases:

1. body: sentence pairs from the few labelled texts (`pairs.sentence_pairs`: same label =
   positive, different = negative), the encoder tuned so that the cosine of a pair's mean-pooled
   vectors nears 1 (positive) or 0 (negative) (`train.cosine_pair_loss`), on jiyi's loop;
2. head: a logistic regression on the tuned, normalised mean-pooled vectors of the training texts
   (`jiyi.memory.classify.fit_linear_head`).

The run is a normal run folder; its model/ holds the tuned encoder (a Hugging Face folder that
`AutoModel` loads), `head.safetensors` and jiyi.json's "head" entry, and
`jiyi.models.load_classifier` returns a `jiyi.pooled.SentenceClassifier` for it, so predict, evaluate,
calibrate, serve and memory take it like any classification run. Importing this package
imports no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError

CONTRASTIVE = "contrastive"
# Flags of `jiyi train` the contrastive phases do not read, with their value when unset.
NOT_READ = {
    "augment": None,
    "loss": "ce",
    "class_weights": None,
    "text_pair_column": None,
    "trim_vocab": False,
    "freeze_embeddings": False,
    "dropout": None,
    "lora_r": None,
    "pooling": "cls",  # its head always reads the normalised mean
}


def check_flags(config: Any) -> None:
    """--method is one of `METHODS`; --pair-iterations only with --method contrastive; with it,
    no flag it would ignore. Classification's adapter calls this; every other task (multilabel
    too) refuses both flags as classification's own (`TaskSpec.own_flags`).

    >>> check_flags(TrainConfig(method="contrastive", augment="all"))  # doctest: +SKIP
    jiyi.errors.JiyiError: --augment does not apply to --method contrastive ...
    """
    from dataclasses import fields

    from jiyi.tasks.registry import METHODS, MethodConfig, flags_of_other_methods

    if config.method not in METHODS:
        raise JiyiError(f"--method must be one of {', '.join(METHODS)}; got {config.method!r}.")
    defaults = {f.name: f.default for f in fields(MethodConfig)}
    for name in sorted(flags_of_other_methods(config.method)):  # another method's settings
        if getattr(config, name) != defaults[name]:
            owners = [m.name for m in METHODS.values() if name in m.flags]
            raise JiyiError(
                f"--{name.replace('_', '-')} applies to --method {' and '.join(owners)} only."
            )
    if config.method != CONTRASTIVE:
        return
    if config.pair_iterations < 1:
        raise JiyiError(f"--pair-iterations must be at least 1, got {config.pair_iterations}.")
    for name, unset in NOT_READ.items():
        if getattr(config, name, unset) != unset:
            flag = "--" + name.replace("_", "-")
            raise JiyiError(
                f"{flag} does not apply to --method contrastive (it tunes the encoder on pairs "
                "of single texts, then fits a logistic head); drop the flag or use --method "
                "finetune."
            )


def method_of(config: Any) -> str:
    """The --method a `jiyi train` runs: a resumed run's own (its config.yaml), else the flag's."""
    saved = Path(config.output or "") / "config.yaml"
    if config.resume and saved.is_file():
        import yaml

        return str(
            (yaml.safe_load(saved.read_text(encoding="utf-8")) or {}).get("method", "finetune")
        )
    return str(config.method)
