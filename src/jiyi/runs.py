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

A run's life on disk, also here: a new run writes its folder only once its first optimizer step
is done (jiyi.loop), and `discard_if_unstarted` removes what a run that failed before that step
made; `checkpoint_dirs` lists its resumable states (`jiyi.resume` checks --output / --resume).

Nothing here imports torch; the tasks behind the names live in `jiyi.tasks`.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
    """Where `jiyi evaluate` writes: `output` (--output) when given, else RUN_DIR/eval (also
    when given RUN_DIR/model); a file there is refused naming the flag."""
    from jiyi.io import output_folder

    if output:
        return output_folder(output)
    folder = Path(run_or_model)
    return output_folder(
        (folder.parent if folder.name == MODEL_DIR else folder) / RUN_FORMAT["eval"], "RUN_DIR"
    )


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


# ---------------------------------------------------------------------------------------------
# --output and --resume

STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """RUN_DIR/checkpoints/step-NNNNNN folders holding a state.json, oldest first."""
    root = Path(run_dir) / RUN_FORMAT["checkpoints"]
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found) if (p / "state.json").is_file()]


# ---------------------------------------------------------------------------------------------
# a run that fails before its first optimizer step leaves nothing behind


@dataclass
class FreshRun:
    """What a new run would create at RUN_DIR: `created` is the top-most folder it makes (RUN_DIR
    or a missing parent), None when RUN_DIR already existed (empty: a new run needs it so)."""

    run_dir: Path
    created: Path | None

    @classmethod
    def before(cls, run_dir: str | Path) -> FreshRun | None:
        """Taken before anything is written; None when RUN_DIR is a non-empty folder (not ours
        to clean) or not a folder at all."""
        run_dir = Path(run_dir).absolute()
        if run_dir.exists():
            if not run_dir.is_dir() or any(run_dir.iterdir()):
                return None
            return cls(run_dir, None)
        top = run_dir
        while not top.parent.exists():
            top = top.parent
        return cls(run_dir, top)

    def started(self) -> bool:
        """The run has written its folder: config.yaml appears after the first optimizer step."""
        return (self.run_dir / RUN_FORMAT["config"]).is_file()

    def discard(self) -> None:
        """Remove what this run created: its folder (and the parents it made), or, in a folder
        that existed (empty), everything now in it."""
        if self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)
        elif self.run_dir.is_dir():
            for child in self.run_dir.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)


@contextmanager
def discard_if_unstarted(output: str | Path | None, resume: bool) -> Iterator[None]:
    """Around a whole training workflow: when it raises before its first optimizer step (the
    data, the model, the sanity check, the first batch), remove what it wrote (the folder, a
    --trim-vocab trimmed-base), so the same command can simply be run again. A resumed run,
    and one that has started, are left as they are.

    >>> with discard_if_unstarted(config.output, config.resume):  # doctest: +SKIP
    ...     summary = adapter(spec).train(config, console, explicit)
    """
    fresh = None if resume or not output else FreshRun.before(output)
    try:
        yield
    except BaseException:
        if fresh is not None and not fresh.started():
            fresh.discard()
        raise


def folder_bytes(path: str | Path) -> int:
    """Bytes of the files under `path` (0 when it is missing)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KB', 348_000_000 -> '348.0 MB' (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")
