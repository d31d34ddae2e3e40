"""Atomic writes: a reader (or a run killed mid-write) sees the old file or the new one, never a
torn one. Every file and folder written here gets the usual permissions (0666 / 0777 less the
umask, e.g. 0644 / 0755), whatever wrote it: safetensors and mkstemp make 0600.

Also the one check of an `--output` path for every verb (`output_folder`, `output_file`), so a
file given where a folder belongs is refused naming the flag, not met with a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(
        path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n"
    )


def write_predictions(output: str, rows: list[dict[str, Any]]) -> None:
    """`jiyi predict`'s output: one JSON line per row, to stdout ("-") or, atomically, to a file
    (then a count on stderr)."""
    import sys

    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    output = output_file(output)
    if output == "-":
        sys.stdout.write(lines)
    else:
        atomic_write_text(output, lines)
        print(f"{len(rows)} predictions written to {output}", file=sys.stderr)


def write_npy(path: str | os.PathLike, blocks: Iterable[Any], shape: tuple[int, int]) -> None:
    """Write `blocks` ((n_i, d) float32 arrays, in order, adding up to `shape`) as one .npy
    file, one block in memory at a time, with plain writes (no memory map whose pages would
    count as the writer's)."""
    import numpy as np

    with open(path, "wb") as f:
        header = {"descr": "<f4", "fortran_order": False, "shape": tuple(shape)}
        np.lib.format.write_array_header_1_0(f, header)
        for block in blocks:
            f.write(np.ascontiguousarray(block, dtype="<f4").tobytes())


def append_jsonl(path: str | os.PathLike, obj: dict[str, Any]) -> None:
    """Append one JSON line. A line is written with a single write() call, so a kill leaves at
    most a final partial line, which readers of metrics.jsonl skip."""
    line = json.dumps(obj, ensure_ascii=False, default=_json_default) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)


@contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; on success it replaces `path` whole.

    >>> with atomic_directory("runs/x/checkpoints/step-100") as tmp:
    ...     (tmp / "model.safetensors").write_bytes(b"...")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        usual_modes(tmp)  # mkdtemp makes 0700, safetensors' save_file 0600
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def usual_modes(root: str | os.PathLike) -> None:
    """Give `root` and everything under it the permissions a plain write would: 0666 (files) or
    0777 (folders) less the umask. Links are left alone."""
    mask = _umask()
    for path in [Path(root), *Path(root).rglob("*")]:
        if path.is_symlink():
            continue
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def output_folder(path: str | os.PathLike, flag: str = "--output") -> Path:
    """Check a folder a verb will create or write into: missing, or an existing folder. A file
    there (or a file where a parent folder belongs), or no permission to write, is refused
    naming `flag`: with some.csv an existing file, `output_folder("some.csv")` raises
    "--output some.csv: that is a file; --output takes a folder to write into. ..."."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise JiyiError(
            f"{flag} {path}: that is a file; {flag} takes a folder to write into. Choose a folder "
            "path (it is created if missing)."
        )
    _check_parents(path, flag)
    return path


def output_file(path: str | os.PathLike, flag: str = "--output") -> str:
    """Check a file a verb will write: missing, or an existing file ("-" is stdout). A folder
    there (or a file where a parent folder belongs), or no permission to write, is refused
    naming `flag`."""
    if str(path) == "-":
        return "-"
    file = Path(path)
    if file.is_dir():
        raise JiyiError(
            f"{flag} {file}: that is a folder; {flag} takes a file to write (or - for standard "
            f"output), e.g. {file / 'predictions.jsonl'}."
        )
    _check_parents(file, flag)
    return str(path)


def _check_parents(path: Path, flag: str) -> None:
    """The nearest existing ancestor of `path` must be a folder we may write in."""
    for parent in path.absolute().parents:
        if not parent.exists():
            continue
        if not parent.is_dir():
            raise JiyiError(f"{flag} {path}: {parent} is a file, not a folder.")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise JiyiError(f"{flag} {path}: no permission to write in {parent}.")
        return


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
