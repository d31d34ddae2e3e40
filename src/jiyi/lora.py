"""LoRA adapters for `jiyi train` (on peft): the base model stays frozen; low-rank updates of
chosen linear layers and the task head train.

    jiyi train --model minilm --train t.csv --output runs/lora --lora-r 8
    RUN_DIR/adapter/   peft's folder (adapter_config.json, adapter_model.safetensors): the LoRA
                       matrices and the task head (peft `modules_to_save`)
    RUN_DIR/model/     the merged model, a standard Hugging Face folder every verb reads; with
                       --no-lora-merge only config.json, the tokenizer and jiyi.json, whose
                       "lora" record names the base: the loaders join base + adapter in memory

The hook is `apply_lora(model, config, say)`, called where `--freeze-embeddings` is applied in
each task's training (classification, multilabel, ner, qa). A LoRA run's checkpoints hold only
what trains (`trainable_state`: the adapters and the head, ~1 MB for MiniLM r 8 instead of the
~90 MB base), with the adapters' settings in state.json; --resume rebuilds base + hook from the
run's config.yaml and loads them, after `check_checkpoint` has matched r and targets.
model/jiyi.json's "lora" record:

    {"r": 8, "alpha": 16.0, "dropout": 0.1, "targets": ["query", "value"],
     "head": ["classifier"], "merged": true, "base": "minilm", "adapter": "adapter",
     "trainable_parameters": 148226, "total_parameters": 22861058}

Importing this module imports neither torch nor peft.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError
from jiyi.runs import read_meta

ADAPTER_DIR = "adapter"  # RUN_DIR/adapter
INSTALL = "pip install 'jiyi[lora]'"
LORA_DEFAULTS = {"lora_alpha": None, "lora_dropout": 0.1, "lora_targets": None, "lora_merge": True}
RECORD_ATTR = "jiyi_lora"  # the "lora" record rides on the wrapped model until it is saved


@dataclass
class LoraFlags:
    """The LoRA flags of `jiyi train` (a base of `jiyi.config.TrainConfig`: flags, --help and
    YAML keys come from these fields and their docstrings)."""

    lora_r: int | None = None
    """Classification, multilabel, NER and QA: train LoRA adapters of this rank (peft, `pip install 'jiyi[lora]'`) instead of every weight: the base stays frozen, only the low-rank updates of --lora-targets and the task head train. RUN_DIR/adapter holds the adapter, RUN_DIR/model the merged model (see --lora-merge)."""
    lora_alpha: float | None = None
    """With --lora-r: the LoRA scaling numerator (the update is scaled by alpha / r; default 2 x --lora-r)."""
    lora_dropout: float = 0.1
    """With --lora-r: dropout on the input of the LoRA adapters."""
    lora_targets: str | None = None
    """With --lora-r: comma list of the linear layers that get adapters, by module name (query,value,key,dense, ...). Default by task: ner every linear layer of the encoder (query,key,value,dense for BERT); the others peft's choice for the architecture (query,value for BERT)."""
    lora_merge: bool = True
    """With --lora-r: write RUN_DIR/model as a standard model with the adapters merged in (every verb reads it unchanged); --no-lora-merge keeps only the adapter (RUN_DIR/adapter) and a reference to the base model, loaded as base + adapter (several adapters over one base)."""


def check_lora_flags(config: Any, spec: Any) -> None:
    """`TrainConfig.validate`: --lora-r and its companions, naming the flag at fault.

    >>> TrainConfig(train="t.csv", lora_alpha=16)  # doctest: +SKIP
    Traceback (most recent call last):
    jiyi.errors.JiyiError: --lora-alpha goes with --lora-r R (the rank of the adapters) ...
    """
    r = getattr(config, "lora_r", None)
    if r is None:
        for name, default in LORA_DEFAULTS.items():
            if getattr(config, name, default) != default:
                flag = "--no-lora-merge" if name == "lora_merge" else "--" + name.replace("_", "-")
                raise JiyiError(
                    f"{flag} goes with --lora-r R (the rank of the adapters); give --lora-r or "
                    f"drop {flag}."
                )
        return
    if not getattr(spec, "lora", False):
        from jiyi.tasks.registry import tasks_taking_lora

        takers = tasks_taking_lora()
        raise JiyiError(
            f"--lora-r applies to --task {', '.join(takers[:-1])} and {takers[-1]}, "
            f"not {spec.name}."
        )
    if isinstance(r, bool) or r < 1:
        raise JiyiError(f"--lora-r must be at least 1, got {r}.")
    if config.lora_alpha is not None and not config.lora_alpha > 0:
        raise JiyiError(f"--lora-alpha must be positive, got {config.lora_alpha}.")
    if not 0 <= config.lora_dropout < 1:
        raise JiyiError(f"--lora-dropout must be in [0, 1), got {config.lora_dropout}.")
    if config.lora_targets is not None:
        parse_targets(config.lora_targets)
    if getattr(config, "freeze_embeddings", False):
        raise JiyiError(
            "--freeze-embeddings with --lora-r: LoRA already freezes the whole base model, "
            "embeddings included; drop --freeze-embeddings."
        )
    if getattr(config, "method", "finetune") not in ("finetune", None):
        raise JiyiError(f"--lora-r applies to --method finetune, not {config.method}.")
    if importlib.util.find_spec("peft") is None:
        raise JiyiError(f"--lora-r needs peft, which is not installed: run `{INSTALL}`.")


def parse_targets(text: str) -> list[str]:
    """`--lora-targets` -> module names: "query, value" -> ["query", "value"]."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names or any(not n.replace("_", "").replace(".", "").isalnum() for n in names):
        raise JiyiError(
            f"--lora-targets {text!r}: give a comma list of module names, e.g. query,value."
        )
    return names


def head_modules(model: Any) -> list[str]:
    """The task head of a Hugging Face task model: its direct children with parameters other
    than the encoder (`base_model_prefix`): BertForSequenceClassification -> ["classifier"],
    BertForQuestionAnswering -> ["qa_outputs"], DistilBert's -> ["pre_classifier", "classifier"].
    They train in full beside the adapters (peft `modules_to_save`)."""
    prefix = getattr(model, "base_model_prefix", "")
    return [
        name
        for name, child in model.named_children()
        if name != prefix and any(True for _ in child.parameters())
    ]


def linear_names(model: Any) -> list[str]:
    """The distinct last names of the model's linear layers (what --lora-targets can name)."""
    import torch

    names = {
        n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
    }
    return sorted(names)


def encoder_linear_names(model: Any) -> list[str]:
    """`linear_names` of a task model's encoder (its `base_model_prefix` child; the head left
    out): BERT -> ["dense", "key", "query", "value"]."""
    return linear_names(getattr(model, getattr(model, "base_model_prefix", ""), None) or model)


def task_targets(model: Any, config: Any) -> list[str] | None:
    """The layers --lora-r adapts without --lora-targets: the task's choice (`TaskSpec.
    lora_targets`): every linear layer of the encoder, or None for peft's choice."""
    from jiyi.tasks.registry import get_task

    if get_task(config.task).lora_targets == "all-linear":
        return encoder_linear_names(model)
    return None


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, all) parameters of a model."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def base_reference(model_path: str, config: Any) -> str:
    """How the "lora" record names the base: a path relative to the run folder when the base
    lies inside it (--trim-vocab's trimmed-base), the --model alias, else an absolute folder
    (or the Hub id)."""
    from jiyi.model_names import ME5_ALIASES, MODEL_ALIASES

    path = Path(model_path)
    if config.output and path.is_dir():
        try:
            return path.resolve().relative_to(Path(config.output).resolve()).as_posix()
        except ValueError:
            pass
    if config.model in MODEL_ALIASES or config.model in ME5_ALIASES:
        return config.model
    return str(path.resolve()) if path.is_dir() else model_path


def apply_lora(model: Any, config: Any, say: Callable[..., None]) -> Any:
    """`jiyi train --lora-r R`: wrap `model` in peft LoRA adapters (the task head trained in
    full) and report the trainable parameters; `model` unchanged without --lora-r."""
    if getattr(config, "lora_r", None) is None:
        return model
    from peft import LoraConfig, get_peft_model

    _, total = count_parameters(model)
    base = base_reference(str(model.name_or_path), config)
    head = head_modules(model)
    alpha = float(config.lora_alpha if config.lora_alpha is not None else 2 * config.lora_r)
    targets = (
        parse_targets(config.lora_targets) if config.lora_targets else task_targets(model, config)
    )
    settings = LoraConfig(
        r=config.lora_r,
        lora_alpha=alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        modules_to_save=head,
        bias="none",
    )
    try:
        wrapped = get_peft_model(model, settings)
    except ValueError as e:
        flag = f"--lora-targets {config.lora_targets}" if targets else "--lora-r (default targets)"
        raise JiyiError(
            f"{flag}: {str(e).splitlines()[0]} Name some of the model's linear layers: "
            f"{', '.join(linear_names(model))}."
        ) from None
    trainable, _ = count_parameters(wrapped)
    chosen = sorted(wrapped.peft_config["default"].target_modules)
    setattr(
        wrapped,
        RECORD_ATTR,
        {
            "r": config.lora_r,
            "alpha": alpha,
            "dropout": config.lora_dropout,
            "targets": chosen,
            "head": head,
            "merged": bool(config.lora_merge),
            "base": base,
            "adapter": ADAPTER_DIR,
            "trainable_parameters": trainable,
            "total_parameters": total,
        },
    )
    say(
        f"--lora-r {config.lora_r}: {trainable:,} of {total:,} parameters train "
        f"({100 * trainable / total:.2f}%): adapters on {', '.join(chosen)} (alpha {alpha:g}), "
        f"head {', '.join(head)} in full."
    )
    return wrapped


def lora_record(model: Any) -> dict[str, Any] | None:
    """The "lora" record of a model `apply_lora` wrapped; None for any other model."""
    record = getattr(model, RECORD_ATTR, None)
    return dict(record) if record is not None else None


def checkpoint_record(model: Any) -> dict[str, Any] | None:
    """What a LoRA model's checkpoint says of its adapters (state.json "lora"), None for a plain
    model: the settings that decide the shapes and names of what it holds.

    >>> checkpoint_record(model)  # doctest: +SKIP
    {'r': 8, 'alpha': 16.0, 'targets': ['query', 'value'], 'head': ['classifier']}
    """
    record = lora_record(model)
    if record is None:
        return None
    return {k: record[k] for k in ("r", "alpha", "targets", "head")}


def trainable_state(model: Any) -> dict[str, Any]:
    """The tensors a LoRA checkpoint holds: the trainable parameters (adapters and head), by
    their `state_dict` names; the frozen base is rebuilt from --model on --resume."""
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def check_checkpoint(
    saved: dict[str, Any] | None, model: Any, keys: set[str], checkpoint: Path
) -> None:
    """Before --resume loads `checkpoint` (tensor names `keys`, its "lora" record `saved`) into
    `model`: the same adapters, and every parameter that trains found in it, else a JiyiError
    that names the settings (never a silent partial load)."""
    have = checkpoint_record(model)
    if saved is not None and have is None:
        raise JiyiError(
            f"--resume: {checkpoint} holds only LoRA adapters (--lora-r {saved['r']}, "
            f"--lora-targets {','.join(saved['targets'])}) and the head, not a whole model; "
            f"resume with the --lora-r it was trained with (the run's config.yaml)."
        )
    if saved is not None and have is not None:
        for key, flag in (("r", "--lora-r"), ("targets", "--lora-targets"), ("head", "head")):
            was, now = (",".join(v) if isinstance(v, list) else v for v in (saved[key], have[key]))
            if was != now:
                raise JiyiError(
                    f"--resume: {checkpoint} was trained with {flag} {was}, this run has {now}; "
                    f"resume with the run's own settings (config.yaml) or start a new run."
                )
    if saved is None and have is None:
        return  # a whole model's state, loaded as it always was
    missing = sorted(n for n, p in model.named_parameters() if p.requires_grad and n not in keys)
    if missing:
        raise JiyiError(
            f"--resume: {checkpoint} lacks {len(missing)} of the parameters this LoRA run trains "
            f"(first: {missing[0]}); it was written by a run with other settings (--lora-r, "
            f"--task, --model). Start a new run, or resume with the run's config.yaml settings."
        )


def save_weights(model: Any, out_dir: str | Path) -> None:
    """`save_pretrained` into a model folder: a plain model as it is; a LoRA model merged (a
    copy: training goes on), or with --no-lora-merge only its config.json (the weights are the
    base's and the adapter's)."""
    out_dir = Path(out_dir)
    record = lora_record(model)
    if record is None:
        model.save_pretrained(str(out_dir), safe_serialization=True)
    elif record["merged"]:
        merged = copy.deepcopy(model).merge_and_unload()
        merged.save_pretrained(str(out_dir), safe_serialization=True)
    else:
        base = model.get_base_model()
        settings = copy.deepcopy(base.config)
        settings.architectures = [type(base).__name__]
        settings.save_pretrained(str(out_dir))


def save_adapter(model: Any, run_dir: str | Path) -> dict[str, Any]:
    """Write a LoRA model's adapter to RUN_DIR/adapter (atomically); returns what model/jiyi.json
    gets ({"lora": record}), {} for a plain model. Call it before model/ is replaced, so a run
    killed in between keeps the adapter of its newer model/."""
    from jiyi.hf import quiet_transformers
    from jiyi.io import atomic_directory

    record = lora_record(model)
    if record is None:
        return {}
    with atomic_directory(Path(run_dir) / ADAPTER_DIR) as tmp, quiet_transformers():
        model.save_pretrained(str(tmp), safe_serialization=True)
        (tmp / "README.md").unlink(
            missing_ok=True
        )  # peft's template card: RUN_DIR/README.md is the card
    return {"lora": record}


def card_line(record: dict[str, Any]) -> str:
    """The model card's words for a "lora" record.

    >>> card_line({"r": 8, "alpha": 16.0, "targets": ["query", "value"], "head": ["classifier"],
    ...            "merged": True, "base": "minilm", "trainable_parameters": 148226,
    ...            "total_parameters": 22861058})
    'LoRA (r 8, alpha 16): 148,226 of 22,861,058 parameters trained (0.65%), adapters on query, value, the head classifier in full; RUN_DIR/adapter holds the adapter, model/ the merged model'
    """
    trainable, total = record["trainable_parameters"], record["total_parameters"]
    kept = (
        "model/ the merged model"
        if record.get("merged", True)
        else f"model/ only its config and tokenizer: it loads as base {record['base']} + adapter"
    )
    return (
        f"LoRA (r {record['r']}, alpha {record['alpha']:g}): {trainable:,} of {total:,} "
        f"parameters trained ({100 * trainable / total:.2f}%), adapters on "
        f"{', '.join(record['targets'])}, the head {', '.join(record['head'])} in full; "
        f"RUN_DIR/adapter holds the adapter, {kept}"
    )


def unmerged_record(folder: str | Path) -> dict[str, Any] | None:
    """The "lora" record of a model folder whose weights are base + adapter (--no-lora-merge),
    else None (also for a folder `jiyi compress` wrote from such a run: its weights are its own).
    """
    folder = Path(folder)
    record = read_meta(folder).get("lora")
    if not isinstance(record, dict) or record.get("merged") is not False:
        return None
    if any(folder.glob("*.safetensors")) or (folder / "model.onnx").is_file():
        return None
    return record


def base_folder(folder: str | Path, record: dict[str, Any]) -> str:
    """The base model of an unmerged run's model folder: inside the run (trimmed-base), an
    alias, a folder or a Hub id (`jiyi.model_names.resolve_model`)."""
    from jiyi.model_names import resolve_model

    inside = Path(folder).parent / record["base"]
    return str(inside) if inside.is_dir() else resolve_model(record["base"], "the LoRA base model")


def weight_files(folder: str | Path) -> list[Path]:
    """The files that hold a model folder's weights: its *.safetensors, or for an unmerged LoRA
    run the base's and the adapter's (what a fingerprint of the model reads)."""
    folder = Path(folder)
    record = unmerged_record(folder)
    if record is None:
        return sorted(folder.glob("*.safetensors"))
    adapter = folder.parent / record.get("adapter", ADAPTER_DIR) / "adapter_model.safetensors"
    base = sorted(Path(base_folder(folder, record)).glob("*.safetensors"))
    return [*base, *([adapter] if adapter.is_file() else [])]


def load_pretrained(cls: Any, folder: str | Path, **kwargs: Any) -> Any:
    """`cls.from_pretrained(folder, **kwargs)`, or, for a --no-lora-merge run's model folder, its
    base model with the adapter merged in memory (an encoder alone when `cls` is AutoModel)."""
    record = unmerged_record(folder)
    if record is None:
        return cls.from_pretrained(str(folder), **kwargs)
    model = load_unmerged(folder, record)
    return model.base_model if cls.__name__ == "AutoModel" else model


def load_unmerged(folder: str | Path, record: dict[str, Any]) -> Any:
    """Base (as the run's config.json describes the task model) + RUN_DIR/adapter, merged."""
    import transformers
    from transformers import AutoConfig

    from jiyi.hf import quiet_transformers, use_safetensors

    folder = Path(folder)
    if importlib.util.find_spec("peft") is None:
        raise JiyiError(
            f"{folder}: its LoRA adapter is kept apart from the base model (--no-lora-merge); "
            f"loading it needs peft: run `{INSTALL}`."
        )
    from peft import PeftModel

    adapter = folder.parent / record.get("adapter", ADAPTER_DIR)
    if not (adapter / "adapter_config.json").is_file():
        raise JiyiError(
            f"{folder}: a LoRA run kept unmerged (--no-lora-merge), and its adapter folder "
            f"{adapter} is missing; copy the whole run folder."
        )
    base = base_folder(folder, record)
    settings = AutoConfig.from_pretrained(str(folder), trust_remote_code=False)
    task_class = getattr(transformers, (settings.architectures or [""])[0], None)
    if task_class is None:
        raise JiyiError(f"{folder}/config.json: no known architectures entry to load its base.")
    with quiet_transformers():
        model = task_class.from_pretrained(
            base,
            config=settings,
            ignore_mismatched_sizes=True,
            trust_remote_code=False,
            use_safetensors=use_safetensors(base, "the LoRA base model"),
        )
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return model.eval()


__all__ = [
    "ADAPTER_DIR",
    "LoraFlags",
    "apply_lora",
    "card_line",
    "check_checkpoint",
    "check_lora_flags",
    "checkpoint_record",
    "head_modules",
    "load_pretrained",
    "lora_record",
    "save_adapter",
    "save_weights",
    "trainable_state",
    "unmerged_record",
    "weight_files",
]
