"""`jiyi compress`: run a chain of methods on a fine-tuned model, then measure every artifact.

    trim-vocab  keep the vocabulary pieces a corpus uses (--corpus; the run's train file by
                default), drop the other embedding rows; same tokens on the corpus
    distill     a student with fewer layers trained on the teacher's soft targets + hard labels
    prune-heads remove the least important attention heads (physically), optional recovery
    dynamic-int8  int8 Linear weights, activations quantized at run time (torch.ao)
    bf16        a bfloat16 copy (where the CPU computes bf16 natively)
    onnx        ONNX export + ONNX Runtime's transformer optimizer; predictions on ONNX Runtime
    onnx-int8   as onnx, then ONNX Runtime's dynamic int8 quantizer

The model-changing methods (distill, prune-heads) come first; one final format
(dynamic-int8, bf16, onnx, onnx-int8) may end the chain. OUT_DIR is the last artifact; the
intermediate ones of a chain stay in OUT_DIR/steps/. Each step writes into a temporary folder
renamed into place, so a failure leaves no half-written artifact.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jiyi.compress.artifacts import copy_support_files, model_dir_of, read_meta, write_meta
from jiyi.errors import JiyiError
from jiyi.io import atomic_directory, atomic_write_json

METHODS = ("trim-vocab", "distill", "prune-heads", "dynamic-int8", "bf16", "onnx", "onnx-int8")
FINAL = ("dynamic-int8", "bf16", "onnx", "onnx-int8")


@dataclass
class Settings:
    ratio: float = 0.3
    recover_epochs: float = 0.0
    layers: int = 3
    epochs: float = 3.0
    temperature: float = 2.0
    alpha: float = 0.5
    lr: float = 1e-4
    batch_size: int = 32
    seed: int = 0
    opset: int = 17
    train: str | None = None
    validation: str | None = None
    max_examples: int = 2000  # validation rows used for head importance
    corpus: list[str] | None = None  # trim-vocab: the texts whose pieces stay
    keep: int | None = None  # trim-vocab: at most this many corpus pieces (the most frequent)


def parse_methods(spec: str) -> list[str]:
    methods = [m.strip() for m in spec.split(",") if m.strip()]
    if not methods:
        raise JiyiError("--method: name at least one of " + ", ".join(METHODS) + ".")
    for m in methods:
        if m not in METHODS:
            raise JiyiError(f"--method {m!r}: choose from {', '.join(METHODS)} (comma-separated).")
    finals = [i for i, m in enumerate(methods) if m in FINAL]
    if len(finals) > 1 or (finals and finals[0] != len(methods) - 1):
        raise JiyiError(
            f"--method {spec}: {', '.join(FINAL)} change the format and must come last, once "
            "(e.g. distill,prune-heads,onnx-int8)."
        )
    return methods


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _log_event(event: dict[str, Any]) -> None:
    """One line per distillation event: its name, then its numbers."""
    fields = " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in event.items()
        if k != "event" and not isinstance(v, list | dict)
    )
    _log(f"{event.get('event', 'distill')}: {fields}")


def _labelled(
    path: str, meta: dict[str, Any], label2id: dict[str, int], flag: str
) -> tuple[list, list]:
    """(texts, label ids or None per row) of a data file, with the run's columns."""
    from jiyi.data.readers import read_examples

    try:
        result = read_examples(
            path,
            text_column=meta.get("text_column", "text"),
            label_column=meta.get("label_column", "label"),
            require_labels=False,
        )
    except JiyiError as e:
        raise JiyiError(f"{flag} {e}") from None
    label2id = {str(k): int(v) for k, v in label2id.items()}
    texts, labels = [], []
    for ex in result.examples:
        texts.append(ex.text)
        if ex.label is None:
            labels.append(None)
        elif ex.label in label2id:
            labels.append(label2id[ex.label])
        else:
            raise JiyiError(
                f"{flag} {path} line {ex.line}: label {ex.label!r} is not one the model knows "
                f"({', '.join(label2id)})."
            )
    return texts, labels


def _run_config(model_dir: Path) -> dict[str, Any]:
    """The config.yaml of the run `model_dir` belongs to (for a compressed folder: of the run it
    was made from), or {}."""
    import yaml

    origin = read_meta(model_dir).get("compress", {}).get("origin", {}).get("path")
    for folder in (model_dir, *([Path(origin)] if origin else [])):
        run_dir = folder.parent if folder.name == "model" else folder
        if (run_dir / "config.yaml").is_file():
            return yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    return {}


def _run_files(source: Path, settings: Settings) -> tuple[str | None, str | None]:
    """--train / --validation, defaulting to the files the run was trained with."""
    config = _run_config(source)
    train = settings.train or config.get("train")
    validation = settings.validation or config.get("validation")
    return train, validation


def _need(path: str | None, flag: str, method: str) -> str:
    if not path:
        raise JiyiError(f"--method {method} needs {flag} FILE (the run does not record one).")
    if not Path(path).exists():
        raise JiyiError(f"{flag} {path}: no such file.")
    return path


def _step(method: str, src: Path, dst: Path, settings: Settings, files: tuple) -> dict[str, Any]:
    """Run one method from model folder `src` into folder `dst` (written whole or not at all)."""
    from jiyi.models import load_classifier

    meta = read_meta(src)
    if meta.get("format", "torch") != "torch" or meta.get("dtype") == "bfloat16":
        raise JiyiError(
            f"{src}: already {meta.get('format') if meta.get('format') != 'torch' else 'bf16'}; "
            f"--method {method} needs an fp32 PyTorch model."
        )
    train_file, val_file = files
    if method == "trim-vocab":
        from jiyi.compress.trim_vocab import trim_step

        corpus = settings.corpus or [_need(train_file, "--corpus", method)]
        return trim_step(src, dst, meta, corpus, settings.keep)
    model, tokenizer = load_classifier(src)
    step: dict[str, Any] = {"method": method}
    t0 = time.perf_counter()
    fmt, extra = "torch", {}
    with atomic_directory(dst) as tmp:
        copy_support_files(src, tmp)
        if method == "dynamic-int8":
            from jiyi.compress.quantize import dynamic_int8, save_int8

            save_int8(dynamic_int8(model), tmp)
            fmt = "torch-int8"
        elif method == "bf16":
            from jiyi.compress.quantize import to_bf16
            from jiyi.precision import cpu_has_bf16

            if not cpu_has_bf16():
                raise JiyiError(
                    "--method bf16: this CPU has no native bfloat16 (avx512_bf16 or AMX); it "
                    "would be emulated and slower than fp32. Use dynamic-int8 or onnx-int8."
                )
            _save_torch(to_bf16(model), tmp)
            extra = {"dtype": "bfloat16"}
        elif method in ("onnx", "onnx-int8"):
            from jiyi.compress.onnx import export_onnx, quantize_onnx

            info = export_onnx(model, tokenizer, tmp / "model.onnx", opset=settings.opset)
            step["export"] = info
            if not info["within_tolerance"]:
                raise JiyiError(
                    f"--method {method}: the exported graph's logits differ from PyTorch's by "
                    f"{info['max_abs_logit_diff']:.2e} (tolerance {info['tolerance']:.0e}); "
                    "nothing was written. Please report this with `jiyi env`."
                )
            if method == "onnx-int8":
                fp32 = tmp / "model.fp32.onnx"
                (tmp / "model.onnx").rename(fp32)
                step["quantize"] = quantize_onnx(fp32, tmp / "model.onnx")
                fp32.unlink()
            fmt, extra = "onnx", {"onnx_file": "model.onnx", "opset": info["opset"]}
        elif method == "prune-heads":
            step |= _prune(model, tokenizer, meta, settings, train_file, val_file)
            _save_torch(model, tmp)
        elif method == "distill":
            step |= _distill(model, tokenizer, meta, settings, train_file, val_file)
            _save_torch(step.pop("student"), tmp)
        meta_out = write_meta(tmp, {**meta, **extra}, fmt, step, src)
    if method in NEW_WEIGHTS and meta.get("calibration"):
        step["calibration"] = _recalibrate(dst, meta["calibration"].get("method"), val_file)
    step["seconds"] = round(time.perf_counter() - t0, 1)
    step["format"] = meta_out["format"]
    return step


# Steps whose model computes other logits than its source: the source's calibration (fitted on
# the source's logits, `jiyi.calibrate`) does not carry over and is fitted again.
NEW_WEIGHTS = ("prune-heads", "distill")


def _recalibrate(folder: Path, method: str | None, val_file: str | None) -> dict[str, Any]:
    """Fit the source run's calibration method again for the model in `folder`, on the run's
    validation file; without one, drop it (probabilities are then the model's own) and say so."""
    from jiyi import runs
    from jiyi.calibrate_cli import calibrate_run

    if val_file is None:
        meta = runs.read_meta(folder)
        meta.pop("calibration", None)
        runs.write_meta(folder, meta)
        _log(
            f"{folder}: the source's calibration does not fit the new weights and there is no "
            "validation file to fit it again; run `jiyi calibrate` on it."
        )
        return {"method": "none"}
    return calibrate_run(folder, val_file, method=method or "temperature")


def _save_torch(model: Any, folder: Path) -> None:
    from jiyi.hf import quiet_transformers

    with quiet_transformers():
        model.save_pretrained(str(folder), safe_serialization=True)


def _prune(model: Any, tokenizer: Any, meta: dict, settings: Settings, train_file, val_file):
    import copy

    import numpy as np

    from jiyi.compress.prune import choose_heads, head_scores, prune_heads

    val_file = _need(val_file, "--validation", "prune-heads")
    texts, labels = _labelled(val_file, meta, model.config.label2id, "--validation")
    keep = [i for i, y in enumerate(labels) if y is not None]
    rng = np.random.default_rng(settings.seed)
    if len(keep) > settings.max_examples:
        keep = sorted(rng.choice(keep, settings.max_examples, replace=False).tolist())
    if not keep:
        raise JiyiError(f"--validation {val_file}: no labelled rows to score the heads on.")
    _log(
        f"prune-heads: scoring {model.config.num_hidden_layers * model.config.num_attention_heads} heads on {len(keep)} validation rows"
    )
    scores = head_scores(
        model,
        tokenizer,
        [texts[i] for i in keep],
        [labels[i] for i in keep],
        max_length=int(meta.get("max_length", 128)),
        batch_size=settings.batch_size,
    )
    heads = choose_heads(scores, settings.ratio)
    teacher = copy.deepcopy(model) if settings.recover_epochs > 0 else None
    prune_heads(model, heads)
    out: dict[str, Any] = {
        "ratio": settings.ratio,
        "recover_epochs": settings.recover_epochs,
        "validation": val_file,
        "scored_on": len(keep),
        "pruned_heads": {str(k): v for k, v in heads.items()},
        "n_pruned": sum(len(v) for v in heads.values()),
        "importance": np.round(scores, 5).tolist(),
    }
    if teacher is not None:
        out["recovery"] = _train_student(
            teacher, model, tokenizer, meta, settings, train_file, val_file, settings.recover_epochs
        )
    return out


def _distill(model: Any, tokenizer: Any, meta: dict, settings: Settings, train_file, val_file):
    from jiyi.compress.distill import make_student

    n = model.config.num_hidden_layers
    if not 1 <= settings.layers < n:
        raise JiyiError(f"--layers {settings.layers}: the model has {n}; choose 1..{n - 1}.")
    student, used = make_student(model, settings.layers)
    history = _train_student(
        model, student, tokenizer, meta, settings, train_file, val_file, settings.epochs
    )
    return {
        "layers": settings.layers,
        "teacher_layers": used,
        "training": history,
        "student": student,
    }


def _train_student(teacher, student, tokenizer, meta, settings, train_file, val_file, epochs):
    from jiyi.compress.distill import distill

    train_file = _need(train_file, "--train", "distill / --recover-epochs")
    val_file = _need(val_file, "--validation", "distill / --recover-epochs")
    texts, labels = _labelled(train_file, meta, teacher.config.label2id, "--train")
    val_texts, val_labels = _labelled(val_file, meta, teacher.config.label2id, "--validation")
    pairs = [(t, y) for t, y in zip(val_texts, val_labels, strict=True) if y is not None]
    _log(f"training the student on {len(texts)} texts for {epochs:g} epochs")
    settings_used = {
        "train": train_file,
        "validation": val_file,
        "epochs": epochs,
        "temperature": settings.temperature,
        "alpha": settings.alpha,
        "lr": settings.lr,
        "batch_size": settings.batch_size,
        "seed": settings.seed,
    }
    history = distill(
        teacher,
        student,
        tokenizer,
        texts,
        labels,
        val_texts=[t for t, _ in pairs],
        val_labels=[y for _, y in pairs],
        epochs=epochs,
        temperature=settings.temperature,
        alpha=settings.alpha,
        lr=settings.lr,
        batch_size=settings.batch_size,
        max_length=int(meta.get("max_length", 128)),
        seed=settings.seed,
        log=_log_event,
    )
    student.eval()
    return {"settings": settings_used, **history}


def compress(
    source: str | Path,
    methods: list[str],
    output: str | Path,
    settings: Settings,
    *,
    overwrite: bool = False,
) -> list[tuple[str, Path, dict[str, Any]]]:
    """Run the chain; returns (name, folder, step record) for each artifact, in order."""
    src = model_dir_of(source)
    out = Path(output)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise JiyiError(
            f"--output {out}: the folder exists and is not empty; choose another or pass "
            "--overwrite."
        )
    files = _run_files(src, settings)
    staging = out.parent / f".{out.name}.steps.tmp"  # intermediates, moved into OUT_DIR/steps
    shutil.rmtree(staging, ignore_errors=True)
    made: list[tuple[str, Path, dict[str, Any]]] = []
    current = src
    try:
        for i, method in enumerate(methods):
            last = i == len(methods) - 1
            dst = out if last else staging / f"{i + 1:02d}-{method}"
            _log(f"[{i + 1}/{len(methods)}] {method}: {current} -> {dst}")
            step = _step(method, current, dst, settings, files)
            made.append((method, dst, step))
            current = dst
        if staging.exists():
            staging.rename(out / "steps")
            made = [
                (m, out / "steps" / d.name if d.parent == staging else d, st) for m, d, st in made
            ]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return made


def write_report(
    output: Path, rows: list[dict[str, Any]], steps: list[dict[str, Any]], data: str | None
) -> dict[str, Any]:
    from jiyi.compress.report import table

    report = {
        "data": data,
        "results": [{k: v for k, v in r.items() if k != "predictions"} for r in rows],
        "agreement_with_original": [
            round(
                sum(a == b for a, b in zip(r["predictions"], rows[0]["predictions"], strict=True))
                / max(len(r["predictions"]), 1),
                4,
            )
            for r in rows
        ],
        "steps": steps,
        "table": table(rows),
    }
    atomic_write_json(output / "compress.json", report)
    return report


def report_data(source: Path, data: str | None) -> tuple[str | None, list[str], list[int] | None]:
    """The texts (and gold label ids) the report measures on: --data, else the run's test file,
    else its validation file."""
    folder = model_dir_of(source)
    meta = read_meta(folder)
    config = _run_config(folder)
    path = data or config.get("test") or config.get("validation")
    if not path:
        raise JiyiError("the report needs --data FILE (labelled texts to measure on).")
    label2id = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("label2id", {})
    texts, labels = _labelled(path, meta, label2id, "--data")
    gold = None if any(y is None for y in labels) else [int(y) for y in labels]
    return path, texts, gold
