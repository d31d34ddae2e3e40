"""A new memory written from vectors that arrive in shards, never all in RAM at once:
`jiyi memory build --index ivfpq --engine ray` (`jiyi.scale.memory`) feeds it the Ray workers'
Parquet shards and encodes the index shards on Ray too.

The folder is the one `Memory.build` writes from the same vectors, file for file: memory.json,
CURRENT and one snapshot (the row parts and their index, vectors.npy, trained.faiss,
index.faiss, index.ivfdata, meta.json), made in a temporary folder and renamed into place whole.

>>> shards = lambda: (np.load(f) for f in ["v0.npy", "v1.npy"])   # (n_i, D) each, row order
>>> build_from_shards("mem", "minilm", texts, shards=shards, index_params={"shard_rows": 10_000})

`prepare` (the output check, the encoder, memory.json's contents) and `normal_label` are the
parts `Memory.build` shares.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.errors import JiyiError
from jiyi.io import atomic_directory, write_npy
from jiyi.memory.index import choose_kind, unit_rows
from jiyi.memory.rowstore import PART_ROWS, rows_table, write_rows
from jiyi.memory.store import Store
from jiyi.prompts import ROLES

FORMAT = 1  # memory.json's "format"
TASKS = ("classification", "multilabel")


def prepare(
    path: str | os.PathLike,
    model: str,
    *,
    n_rows: int,
    payload: Sequence[dict[str, Any] | None] | None,
    task: str,
    pooling: str,
    layers: str,
    max_length: int,
    batch_size: int,
    index: str,
    index_params: dict[str, Any] | None,
    overwrite: bool,
    prompts: dict[str, str | None] | None,
) -> tuple[Any, dict[str, Any]]:
    """(the encoder, memory.json) of a memory about to be built at `path`; refuses a folder in
    the way and a task a memory cannot hold. The prompts chosen are recorded in the manifest
    and the fingerprint (absent for models without prompts)."""
    from jiyi.inspect.embeddings import load_encoder, model_fingerprint

    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())) and not overwrite:
        raise JiyiError(
            f"--output {path}: exists and is not an empty folder; choose another or pass "
            "--overwrite to replace it."
        )
    if task not in TASKS:
        raise JiyiError(f"--task {task!r}: a memory holds classification or multilabel rows.")
    encoder = load_encoder(model, "MODEL_OR_RUN")
    chosen = {role: encoder.prompt(role, (prompts or {}).get(role)) for role in ROLES}
    chosen = {role: p for role, p in chosen.items() if p}
    fingerprint = model_fingerprint(
        encoder.path, pooling, layers, True, max_length=max_length, prompts=chosen
    )
    manifest = {
        "format": FORMAT,
        "model": str(Path(model).resolve()) if Path(model).exists() else model,
        "fingerprint": fingerprint,
        "pooling": pooling,
        "layers": layers,
        "normalize": True,
        "max_length": max_length,
        "batch_size": batch_size,
        "dim": encoder.hidden_size,
        "task": task,
        "index": choose_kind(index, n_rows),
        "index_params": dict(index_params or {}),
        "payload_columns": sorted({k for p in payload or [] if p for k in p}),
    }
    if chosen:  # absent for models without prompts: their memory.json is unchanged
        manifest["prompts"] = chosen
    return encoder, manifest


def normal_label(task: str, label: Any) -> Any:
    """A row's label as the store keeps it: "pos"; ["a", "b"] sorted (multilabel); None.

    >>> normal_label("multilabel", "a"), normal_label("multilabel", ["b", "a", "b"])
    (['a'], ['a', 'b'])
    """
    if label is None:
        return None
    if task == "multilabel":
        return [label] if isinstance(label, str) else sorted({str(x) for x in label})
    if isinstance(label, list | tuple):
        raise JiyiError(
            f"memory add: label {label!r} is a list, but this memory is single-label "
            "(build it with --task multilabel for several labels per text)."
        )
    return str(label)


def row_columns(
    task: str,
    texts: Sequence[str],
    labels: Sequence[Any] | None,
    payload: Sequence[dict[str, Any] | None] | None,
    ids: Sequence[str] | None,
) -> dict[str, list[Any]]:
    """The checked columns of a new memory's rows: ids ("0", "1", ... when none are given),
    labels, payloads, slots 0..n-1 (the checks `Memory.add` makes on rows)."""
    n = len(texts)
    for name, seq in (("labels", labels), ("payload", payload), ("ids", ids)):
        if seq is not None and len(seq) != n:
            raise JiyiError(f"memory add: {len(seq)} {name} for {n} texts; give one each.")
    if ids is None:
        ids = [str(i) for i in range(n)]
    else:
        ids = [str(i) for i in ids]
        if any(not i.strip() for i in ids):
            raise JiyiError("memory add: an id is empty; give every row an id, or none.")
        dupes = [i for i, c in Counter(ids).items() if c > 1]
        if dupes:
            raise JiyiError(
                f"memory add: id {dupes[0]!r} is twice in the input; ids must be unique. "
                "Nothing was added."
            )
    return {
        "slots": list(range(n)),
        "ids": list(ids),
        "texts": list(texts),
        "labels": [normal_label(task, x) for x in labels] if labels is not None else [None] * n,
        "payloads": list(payload) if payload is not None else [None] * n,
    }


def write_vectors(path: Path, shards: Iterable[np.ndarray], n_rows: int, dim: int) -> None:
    """Write the shards, in order, as one (n_rows, dim) float32 .npy file of unit rows (as
    `Memory.add` normalizes them), one shard in memory at a time."""
    done = 0

    def checked() -> Iterator[np.ndarray]:
        nonlocal done
        for shard in shards:
            shard = np.asarray(shard, dtype=np.float32)  # (n_i, D)
            if shard.ndim != 2 or shard.shape[1] != dim or done + len(shard) > n_rows:
                raise JiyiError(
                    f"memory build: a vector shard of shape {tuple(shard.shape)} after {done} "
                    f"rows does not fit {n_rows} rows of {dim} dimensions."
                )
            done += len(shard)
            yield unit_rows(shard, "memory build")

    write_npy(path, checked(), (n_rows, dim))
    if done != n_rows:
        raise JiyiError(f"memory build: the vector shards hold {done} rows for {n_rows} texts.")


def build_from_shards(
    path: str | os.PathLike,
    model: str,
    texts: Sequence[str],
    *,
    shards: Callable[[], Iterable[np.ndarray]],
    labels: Sequence[Any] | None = None,
    payload: Sequence[dict[str, Any] | None] | None = None,
    ids: Sequence[str] | None = None,
    task: str = "classification",
    pooling: str = "mean",
    layers: str = "-1",
    max_length: int = 512,
    batch_size: int = 64,
    index_params: dict[str, Any] | None = None,
    overwrite: bool = False,
    prompts: dict[str, str | None] | None = None,
    encode: Any = None,
    on_progress: Callable[[str], None] | None = None,
) -> Path:
    """Write a new `--index ivfpq` memory at `path` whose row i has texts[i] and the i-th
    vector that `shards()` yields (made with `model` as `Memory.build` makes them); `encode`
    (a `jiyi.memory.ondisk.ShardEncoder`) encodes the index shards elsewhere. Returns `path`."""
    from jiyi.memory.ondisk import build_index

    _, manifest = prepare(
        path, model, n_rows=len(texts), payload=payload, task=task, pooling=pooling,
        layers=layers, max_length=max_length, batch_size=batch_size, index="ivfpq",
        index_params=index_params, overwrite=overwrite, prompts=prompts,
    )  # fmt: skip
    columns = row_columns(task, texts, labels, payload, ids)
    n, dim = len(texts), int(manifest["dim"])
    say = on_progress or (lambda message: print(message, file=sys.stderr))
    tuned: dict[str, Any] = {}

    def write(folder: Path, final: Path) -> None:
        meta["parts"] = write_rows(
            folder,
            (
                rows_table(**{name: values[a : a + PART_ROWS] for name, values in columns.items()})
                for a in range(0, n, PART_ROWS)
            ),
        )
        write_vectors(folder / "vectors.npy", shards(), n, dim)
        params = manifest["index_params"]
        tuned.update(build_index(folder, final, dim, params, on_progress=say, encode=encode))

    with atomic_directory(path) as tmp:
        store = Store(tmp)
        store.create(manifest)  # generation 1: no rows
        meta = {
            "seq": 0,
            "next_slot": n,
            "next_auto_id": n if ids is None else 0,
            "rows": n,
            "dead": [],
        }
        store.commit_snapshot(2, write, meta)
        if tuned:
            store.update_manifest(index_params=tuned)
    return Path(path)
