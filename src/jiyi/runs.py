"""The run folder, in one place: its layout, `jiyi.json`, RUN_DIR -> model/, and the task of a run.

```
RUN_DIR/
  config.yaml        every setting resolved
  model/             a Hugging Face folder (config.json, weights, tokenizer) plus jiyi.json:
    jiyi.json        {"task": "ner", "labels": [...], "max_length": 128, ...}
  checkpoints/  metrics.jsonl  eval/  logs/
```

Every verb that takes RUN_DIR also takes its model/ folder (or a folder `jiyi compress` wrote),
so `model_dir("runs/x")` and `model_dir("runs/x/model")` are the same folder:

>>> task_of("runs/ner")           # its model/jiyi.json says {"task": "ner", ...}
'ner'
>>> task_of("some/hf-folder") is None     # no jiyi.json: not a jiyi run
True

Nothing here imports torch; the tasks behind the names live in `jiyi.tasks`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError

META_FILE = "jiyi.json"  # beside config.json in a model folder: task, labels, max_length, ...
MODEL_DIR = "model"  # RUN_DIR/model: the best model
# The layout of a run folder: what each part is called, relative to RUN_DIR.
RUN_FORMAT: dict[str, str] = {
    "config": "config.yaml",
    "model": MODEL_DIR,
    "meta": f"{MODEL_DIR}/{META_FILE}",
    "checkpoints": "checkpoints",
    "metrics": "metrics.jsonl",
    "eval": "eval",
    "logs": "logs",
}
PRETRAINING = "pretraining"  # the task `jiyi pretrain` writes: an encoder, not a fine-tuned run


def model_folder(run_or_model: str | Path) -> Path:
    """RUN_DIR -> RUN_DIR/model when that holds a model, else the folder itself (unchecked)."""
    path = Path(run_or_model)
    inner = path / MODEL_DIR
    if (inner / "config.json").is_file() or (inner / META_FILE).is_file():
        return inner
    return path


def model_dir(run_or_model: str | Path, flag: str = "RUN_DIR") -> Path:
    """RUN_DIR (or RUN_DIR/model, or a folder `jiyi compress` wrote) -> the folder holding
    config.json; a clear refusal naming `flag` when there is none."""
    folder = model_folder(run_or_model)
    if not (folder / "config.json").is_file():
        raise JiyiError(not_a_run_message(run_or_model, flag))
    return folder


def eval_dir(run_or_model: str | Path, output: str | Path | None = None) -> Path:
    """Where `jiyi evaluate` writes: `output` when given, else RUN_DIR/eval (also when given
    RUN_DIR/model)."""
    if output:
        return Path(output)
    folder = Path(run_or_model)
    return (folder.parent if folder.name == MODEL_DIR else folder) / RUN_FORMAT["eval"]


def not_a_run_message(path: str | Path, flag: str = "RUN_DIR") -> str:
    where = f"{flag} {path}" if flag else str(path)
    if not Path(path).exists():
        return f"{where}: no such folder; give a jiyi run directory or its model/ folder."
    return f"{where}: not a jiyi run directory or model folder (no config.json)."


def read_meta(folder: str | Path) -> dict[str, Any]:
    """A model folder's jiyi.json as a dict; {} when there is none (a plain Hugging Face folder).

    A broken file is a user error naming it, never a traceback."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise JiyiError(f"{path}: not valid JSON ({e}); restore it or re-run training.") from None
    if not isinstance(meta, dict):
        raise JiyiError(f"{path}: expected a JSON object, found {type(meta).__name__}.")
    return meta


def write_meta(folder: str | Path, meta: dict[str, Any]) -> None:
    """Write a model folder's jiyi.json atomically."""
    from jiyi.io import atomic_write_json

    atomic_write_json(Path(folder) / META_FILE, meta)


def run_meta(run_or_model: str | Path) -> dict[str, Any]:
    """The jiyi.json of RUN_DIR/model (or of a model folder given directly); {} when absent."""
    return read_meta(model_folder(run_or_model))


def task_of(run_or_model: str | Path) -> str | None:
    """The task a run was trained for ("classification", "ner", "pretraining", ...), or None
    when its folder has no jiyi.json (a plain Hugging Face folder, or no folder at all)."""
    task = run_meta(run_or_model).get("task")
    return str(task) if task is not None else None


def wrong_task_message(folder: str | Path, kind: str, found: str | None) -> str:
    """The refusal of a task's loader given another task's run."""
    return f"{folder}: not a {kind} run (its {META_FILE} says task {found!r})."


def open_run(run_or_model: str | Path, task: str, kind: str) -> tuple[Path, dict[str, Any]]:
    """(model folder, its jiyi.json) of a run of `task`; refuses another task's run.

    `kind` is how the message names the task ("NER", "question-answering")."""
    folder = model_folder(run_or_model)
    meta = read_meta(folder)
    if meta.get("task") != task:
        raise JiyiError(wrong_task_message(folder, kind, meta.get("task")))
    return folder, meta
