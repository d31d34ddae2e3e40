"""A compressed model folder: a drop-in for a run's model/ folder, with a record of its making.

```
OUT_DIR/
  config.json, tokenizer files      as in the source model folder
  jiyi.json                         the source's metadata (task, thresholds, max_length, ...) plus
                                    "format" (torch | torch-int8 | onnx) and "compress": the chain
                                    of methods, their parameters and the sha256 of the source weights
  model.safetensors                 torch and torch-int8 (int8 tensors, see `quantize.save_int8`)
  model.onnx                        onnx
```

`load_model(model_dir)` reads jiyi.json (through `jiyi.runs`) and returns something
`jiyi.predict.forward_probs` can call, whatever the format, so `jiyi predict`, `jiyi evaluate`
(and `jiyi serve`) take the folder as they take any run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from jiyi import runs
from jiyi.errors import JiyiError
from jiyi.runs import read_meta

FORMATS = ("torch", "torch-int8", "onnx")
WEIGHT_FILES = ("model.safetensors", "model.onnx", "model.onnx.data")


def model_dir_of(path: str | Path) -> Path:
    """RUN_DIR or RUN_DIR/model (or a compressed folder) -> the folder holding config.json."""
    return runs.model_dir(path, flag="")


def weights_sha256(model_dir: Path) -> str:
    h = hashlib.sha256()
    for name in WEIGHT_FILES:
        file = model_dir / name
        if file.is_file():
            with open(file, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
    return h.hexdigest()


def copy_support_files(src: Path, dst: Path) -> None:
    """Config, tokenizer and metadata files: everything but the weights."""
    dst.mkdir(parents=True, exist_ok=True)
    for file in src.iterdir():
        if file.is_file() and file.name not in WEIGHT_FILES:
            shutil.copy2(file, dst / file.name)


def write_meta(
    dst: Path, source_meta: dict[str, Any], fmt: str, step: dict[str, Any], source_dir: Path
) -> dict[str, Any]:
    """jiyi.json of a compressed folder: the source's, with the format and the chain so far."""
    chain = [*source_meta.get("compress", {}).get("chain", []), step]
    origin = source_meta.get("compress", {}).get("origin") or {
        "path": str(source_dir.resolve()),
        "weights_sha256": weights_sha256(source_dir),
    }
    meta = {**source_meta, "format": fmt, "compress": {"origin": origin, "chain": chain}}
    runs.write_meta(dst, meta)
    return meta


def load_model(model_dir: str | Path, *, threads: int | None = None) -> Any:
    """The model of a (possibly compressed) folder, in eval mode, ready for `forward_probs`."""
    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    fmt = meta.get("format", "torch")
    if fmt not in FORMATS:
        raise JiyiError(f"{model_dir}: unknown model format {fmt!r} in jiyi.json.")
    if fmt == "onnx":
        from jiyi.compress.onnx import OnnxSequenceClassifier

        return OnnxSequenceClassifier(model_dir, meta.get("onnx_file", "model.onnx"), threads)
    if fmt == "torch-int8":
        from jiyi.compress.quantize import load_int8

        return load_int8(model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("jiyi_pruned_heads"):
        from jiyi.compress.prune import load_pruned

        model = load_pruned(model_dir)
    else:
        return None  # a plain Hugging Face folder: the caller loads it as usual
    if meta.get("dtype") == "bfloat16":
        import torch

        model = model.to(torch.bfloat16)
    return model.eval()
