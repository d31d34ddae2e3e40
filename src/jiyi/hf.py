"""How jiyi calls Hugging Face `from_pretrained`: quietly, and only on safetensors weights.

    with quiet_transformers():
        model = AutoModel.from_pretrained(path, use_safetensors=use_safetensors(path))

A leaf module (it imports `jiyi.errors` only; transformers on first use), so every layer, from the
data collator to the compressors, can use it without importing `jiyi.models`, which itself loads
compressed folders through `jiyi.compress`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence the load report for heads we create on purpose (it is expected there)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def use_safetensors(path: str, flag: str = "--model") -> bool | None:
    """The `use_safetensors=` argument for `from_pretrained(path)`: True for a local folder, which
    must hold safetensors weights (jiyi never unpickles), None for a Hub id (HF decides)."""
    p = Path(path)
    if not p.is_dir():
        return None
    if any(p.glob("*.safetensors")) or (p / "model.safetensors.index.json").is_file():
        return True
    raise JiyiError(
        f"{flag} {path}: no .safetensors weights in the folder. jiyi never loads pickled "
        "weights (pytorch_model.bin); convert them to safetensors first."
    )


# Where Hugging Face configs keep their dropout probabilities (BERT, DistilBERT/BART, T5).
DROPOUT_KEYS = (
    "hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout",
    "dropout_rate", "classifier_dropout",
)  # fmt: skip


def dropout_config(config: Any, dropout: float | None) -> Any:
    """`config` (a Hugging Face config) with --dropout set on every dropout it has, the
    classifier's included; unchanged when `dropout` is None."""
    if dropout is None:
        return config
    for key in DROPOUT_KEYS:
        if hasattr(config, key):
            setattr(config, key, dropout)
    return config
