"""Where vocabulary trimming meets training and prediction.

    jiyi train --trim-vocab          the base trimmed to the run's training text, as its task
                                     encodes it (RUN_DIR/trimmed-base): classification,
                                     multilabel, ner (pre-split words), qa (questions, contexts)
    jiyi pretrain --from M --trim-vocab   M trimmed to the pieces of --corpus
    jiyi train --freeze-embeddings   the embedding layer frozen, left out of the optimizer
    jiyi predict (a trimmed model)   one warning per call when over 5% of the tokens are [UNK]

The trimming itself is `jiyi.compress.trim_vocab`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from jiyi.compress.trim_vocab import CONFIG_KEY, RECORD, Text, trim_vocab
from jiyi.runs import FreshRun

HUB_FILES = ["*.json", "*.safetensors", "vocab.txt", "*.model"]  # what trimming reads
UNK_WARN_RATE = 0.05  # warn when more than this share of a batch's tokens are unknown
log = logging.getLogger("jiyi.trim_vocab")


def training_texts(data: Any) -> list[str]:
    """Every text (and text pair) of the prepared training split: the vocabulary is chosen from
    the text the model learns from, never from the validation or test text it is judged on."""
    texts: list[str] = []
    for e in data.splits["train"].examples:
        texts.append(e.text)
        if getattr(e, "text_pair", None):
            texts.append(e.text_pair)
    return texts


def base_for_training(
    model_path: str,
    config: Any,
    data: Any,
    run_dir: Path,
    accelerator: Any,
    say: Callable[..., None],
) -> str:
    """`jiyi train --trim-vocab` for classification: `trimmed_base` on `training_texts(data)`."""
    return trimmed_base(model_path, config, lambda: training_texts(data), run_dir, accelerator, say)


def trimmed_base(
    model_path: str,
    config: Any,
    texts: Callable[[], Sequence[Text]],
    run_dir: Path,
    accelerator: Any,
    say: Callable[..., None],
    corpus: Sequence[str] | None = None,
) -> str:
    """`jiyi train --trim-vocab`: the base model trimmed to the pieces of `texts()` (the run's
    training text exactly as its task encodes it: strings, or NER's sentences as lists of words;
    `jiyi pretrain`'s corpus), named in the record as `corpus` (default: --train),
    in RUN_DIR/trimmed-base (made once by rank 0; a resumed run reuses it). Else `model_path`.
    A trim that fails removes the folder it made; a run that fails later, before its first
    step, removes it with the rest (`jiyi.runs.discard_if_unstarted`, jiyi.loop)."""
    if not getattr(config, "trim_vocab", False):
        return model_path
    out = Path(run_dir) / "trimmed-base"
    if accelerator.is_main_process and not (out / RECORD).is_file():
        if not Path(model_path).is_dir():  # a Hub id (online): its files, from the HF cache
            from huggingface_hub import snapshot_download

            model_path = snapshot_download(model_path, allow_patterns=HUB_FILES)
        fresh = FreshRun.before(run_dir)  # a new run's folder: trimming is the first to write
        try:
            record = trim_vocab(model_path, texts(), out, corpus=corpus or [config.train])
        except BaseException:
            if fresh is not None:  # leave no folder behind a failed trim
                fresh.discard()
            raise
        say(
            f"--trim-vocab: kept {record['kept']:,} of {record['original_vocab_size']:,} "
            f"vocabulary rows ({record['corpus_tokens']:,} tokens of {record['corpus_texts']:,} "
            f"texts) -> {out}"
        )
    accelerator.wait_for_everyone()
    return str(out)


def freeze_embeddings(model: Any) -> int:
    """Freeze the embedding layer: word, position and token-type embeddings and the LayerNorm
    after them (the whole `embeddings` module of a BERT-like encoder; the input embeddings
    alone where there is no such module). A tied MLM decoder is frozen with them. Frozen
    parameters get no gradient and stay out of the optimizer. Returns how many were frozen."""
    base = getattr(model, "base_model", model)
    layer = getattr(base, "embeddings", None)
    if not hasattr(layer, "parameters"):
        layer = model.get_input_embeddings()
    params = list(layer.parameters())
    for p in params:
        p.requires_grad_(False)
    return sum(p.numel() for p in params)


def apply_freeze(model: Any, config: Any, say: Callable[..., None]) -> None:
    """`jiyi train --freeze-embeddings`."""
    if getattr(config, "freeze_embeddings", False):
        n = freeze_embeddings(model)
        total = sum(p.numel() for p in model.parameters())
        say(f"--freeze-embeddings: {n:,} of {total:,} parameters frozen (the embedding layer).")


@lru_cache(maxsize=64)
def trimmed_record(model_dir: str) -> dict[str, Any] | None:
    """config.json's trimming record of a model folder, or None (read once per folder)."""
    file = Path(model_dir) / "config.json"
    if not file.is_file():
        return None
    record = json.loads(file.read_text(encoding="utf-8")).get(CONFIG_KEY)
    return record if isinstance(record, dict) else None


def warn_unknown_rate(tokenizer: Any, enc: Any, model_dir: str | Path) -> float | None:
    """After tokenizing a batch for a trimmed model: log one warning when more than 5% of the
    batch's tokens (special tokens aside) are unknown. Returns the rate (None: not trimmed)."""
    import numpy as np

    record = trimmed_record(str(model_dir))
    unk = getattr(tokenizer, "unk_token_id", None)
    if record is None or unk is None or len(enc.ids) == 0:
        return None
    special = [i for i in tokenizer.all_special_ids if i != unk]
    content = ~np.isin(enc.ids, special)
    n = int(content.sum())
    rate = float((enc.ids[content] == unk).sum()) / max(n, 1)
    if rate > UNK_WARN_RATE:
        log.warning(
            "%.1f%% of the %d tokens of these texts are %s: the model's vocabulary was trimmed "
            "to %d of %d pieces (corpus: %s), and these texts use pieces it dropped. Its "
            "predictions on them are unreliable; trim to a corpus that covers them, or use "
            "the untrimmed model.",
            100 * rate, n, tokenizer.unk_token, record.get("kept"),
            record.get("original_vocab_size"), ", ".join(record.get("corpus") or []) or "texts",
        )  # fmt: skip
    return rate


__all__ = [
    "apply_freeze",
    "base_for_training",
    "freeze_embeddings",
    "trimmed_base",
    "warn_unknown_rate",
]
