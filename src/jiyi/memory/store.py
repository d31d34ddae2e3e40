"""The durable row store under a memory directory: a snapshot plus a write-ahead log.

```
MEM_DIR/
  memory.json        what the memory is: model, fingerprint, pooling, index kind, tuned settings
  CURRENT            the live generation, e.g. "3" (replaced atomically)
  snap-000003/       that generation's snapshot, never modified once renamed into place:
    rows.parquet       slot, id, text, label, payload (one row per live vector)
    vectors.npy        (N, D) float32, row i = rows.parquet row i
    index.faiss        the ANN index (hnsw / ivf only; a flat index is rebuilt on open)
    trained.faiss, index.ivfdata   ivfpq only: codebooks and on-disk lists (jiyi.memory.ondisk)
    meta.json          seq (last log record folded in), next_slot, next_auto_id, dead slots
  log-000003.bin     records appended since that snapshot: add (rows + vectors), forget (ids)
  lock               writers hold an exclusive flock on it; readers never lock
```

An `add` or `forget` is acknowledged only after its record is written with one `write()` and
fsync'ed, so it survives a kill -9 the moment the call returns. A record is framed as
`JYR1 | length | crc32 | body`: a torn tail (a kill mid-write) fails its length or checksum,
is ignored by readers and cut off by the next writer, so a half-written batch never appears.
Compaction writes a whole new snapshot into a temporary folder, renames it into place, fsyncs,
then switches CURRENT; a kill at any point leaves either the old generation or the new one.
Readers load CURRENT's snapshot and replay its log; when a compaction removes the files under
them they simply retry.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import struct
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.errors import JiyiError
from jiyi.io import atomic_directory, atomic_write_json, atomic_write_text

MAGIC = b"JYR1"
_FRAME = struct.Struct("<4sII")  # magic, body length, crc32(body)
_HEAD = struct.Struct("<I")  # JSON header length inside the body
MANIFEST = "memory.json"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Rows:
    """Live rows in insertion order, with their vectors; `slot` is the index's int64 id."""

    dim: int
    slots: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    labels: list[Any] = field(default_factory=list)  # str, list[str] (multilabel) or None
    payloads: list[Any] = field(default_factory=list)  # dict or None
    chunks: list[np.ndarray] = field(default_factory=list)  # vectors, concatenated on demand
    dead: set[int] = field(default_factory=set)  # slots forgotten since they were added
    position: dict[str, int] = field(default_factory=dict)  # id -> index into the lists
    _slot_array: np.ndarray | None = None

    def slot_array(self) -> np.ndarray:
        """`slots` as int64 (ascending: slots are handed out in order), cached until an append."""
        if self._slot_array is None or len(self._slot_array) != len(self.slots):
            self._slot_array = np.asarray(self.slots, dtype=np.int64)
        return self._slot_array

    def __len__(self) -> int:
        return len(self.slots) - len(self.dead)

    def vectors(self) -> np.ndarray:
        """All vectors, dead ones included (they line up with `slots`): (n, D) float32."""
        if len(self.chunks) != 1:
            whole = np.concatenate(self.chunks) if self.chunks else np.zeros((0, self.dim))
            self.chunks = [np.ascontiguousarray(whole, dtype=np.float32)]
        return self.chunks[0]

    def append(self, header: dict[str, Any], vectors: np.ndarray) -> None:
        start = len(self.slots)
        self.slots.extend(header["slots"])
        self.ids.extend(header["ids"])
        self.texts.extend(header["texts"])
        self.labels.extend(header["labels"])
        self.payloads.extend(header["payloads"])
        self.chunks.append(vectors)
        for i, rid in enumerate(header["ids"], start=start):
            self.position[rid] = i

    def forget(self, ids: Sequence[str]) -> list[int]:
        """Mark rows dead; returns their slots. Unknown ids are the caller's to reject."""
        slots = []
        for rid in ids:
            i = self.position.pop(rid)
            self.dead.add(self.slots[i])
            slots.append(self.slots[i])
        return slots

    def live(self) -> np.ndarray:
        """Indices (into the lists) of the live rows."""
        if not self.dead:
            return np.arange(len(self.slots))
        return np.flatnonzero(~np.isin(np.asarray(self.slots, dtype=np.int64), list(self.dead)))


@dataclass
class State:
    """One consistent view of the memory: a generation's snapshot plus its log replayed."""

    generation: int
    seq: int  # last record applied
    next_slot: int
    next_auto_id: int
    rows: Rows
    log_offset: int  # bytes of the log that are whole records
    snapshot_dead: set[int]  # dead slots recorded in the snapshot (an ANN index still holds them)
    snapshot_rows: int = 0  # rows that came from the snapshot; the rest came from the log


class Store:
    """Opens, replays, appends to and compacts the files of one memory directory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # ---- reading ---------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        file = self.path / MANIFEST
        if not file.is_file():
            raise JiyiError(
                f"{self.path}: not a jiyi memory (no {MANIFEST}); create one with "
                "`jiyi memory build MODEL --data FILE --output DIR`."
            )
        return json.loads(file.read_text(encoding="utf-8"))

    def generation(self) -> int:
        try:
            return int((self.path / "CURRENT").read_text().strip())
        except FileNotFoundError:
            raise JiyiError(f"{self.path}: the memory has no CURRENT file; rebuild it.") from None

    def snapshot_dir(self, generation: int) -> Path:
        return self.path / f"snap-{generation:06d}"

    def log_path(self, generation: int) -> Path:
        return self.path / f"log-{generation:06d}.bin"

    def load(self) -> State:
        """The latest consistent state; retried when a compaction swaps the files mid-read."""
        for attempt in range(50):
            generation = self.generation()
            try:
                state = self._load_snapshot(generation)
                self.replay(state)
                if self.generation() == generation:  # else a compaction raced us: read again
                    return state
            except FileNotFoundError:
                if self.generation() == generation and attempt > 2:
                    raise JiyiError(
                        f"{self.path}: snapshot {self.snapshot_dir(generation).name} is missing; "
                        "the memory is damaged, rebuild it."
                    ) from None
                time.sleep(0.02)
        raise JiyiError(f"{self.path}: could not get a consistent view (a writer kept compacting).")

    def _load_snapshot(self, generation: int) -> State:
        import pyarrow.parquet as pq

        snap = self.snapshot_dir(generation)
        meta = json.loads((snap / "meta.json").read_text(encoding="utf-8"))
        dim = int(self.manifest()["dim"])
        rows = Rows(dim)
        table = pq.read_table(snap / "rows.parquet")
        # an ivfpq memory may be larger than RAM: its vectors are read from disk when needed
        on_disk = self.manifest().get("index") == "ivfpq"
        vectors = np.load(snap / "vectors.npy", mmap_mode="r" if on_disk else None)
        labels = [
            json.loads(x) if x is not None else None for x in table.column("label").to_pylist()
        ]
        payloads = [
            json.loads(x) if x is not None else None for x in table.column("payload").to_pylist()
        ]
        rows.append(
            {
                "slots": table.column("slot").to_pylist(),
                "ids": table.column("id").to_pylist(),
                "texts": table.column("text").to_pylist(),
                "labels": labels,
                "payloads": payloads,
            },
            vectors.astype(np.float32, copy=False),
        )
        dead = {int(s) for s in meta.get("dead", [])}
        return State(
            generation,
            int(meta["seq"]),
            int(meta["next_slot"]),
            int(meta["next_auto_id"]),
            rows,
            0,
            dead,
            len(rows.slots),
        )

    def replay(self, state: State) -> list[tuple[dict[str, Any], np.ndarray | None]]:
        """Apply the log records after `state.log_offset`; returns them (for index updates)."""
        applied = []
        for offset, header, vectors in self._records(state.generation, state.log_offset):
            if header["seq"] <= state.seq:
                state.log_offset = offset
                continue
            if header["op"] == "add":
                state.rows.append(header, vectors)
                state.next_slot = max(state.next_slot, max(header["slots"], default=-1) + 1)
                state.next_auto_id = max(state.next_auto_id, int(header.get("next_auto_id", 0)))
            elif header["op"] == "forget":
                live = [rid for rid in header["ids"] if rid in state.rows.position]
                header["slots"] = state.rows.forget(live)
            state.seq = header["seq"]
            state.log_offset = offset
            applied.append((header, vectors))
        return applied

    def _records(
        self, generation: int, start: int
    ) -> Iterator[tuple[int, dict[str, Any], np.ndarray | None]]:
        """(offset after the record, header, vectors) for each whole record from `start`."""
        try:
            f = open(self.log_path(generation), "rb")  # noqa: SIM115 (closed by `with f`)
        except FileNotFoundError:
            return
        with f:
            f.seek(start)
            offset = start
            while True:
                frame = f.read(_FRAME.size)
                if len(frame) < _FRAME.size:
                    return
                magic, length, crc = _FRAME.unpack(frame)
                if magic != MAGIC:
                    return
                body = f.read(length)
                if len(body) < length or zlib.crc32(body) != crc:
                    return  # a torn tail: the write was never acknowledged
                (head_len,) = _HEAD.unpack_from(body)
                header = json.loads(body[_HEAD.size : _HEAD.size + head_len])
                vectors = None
                if header["op"] == "add":
                    raw = body[_HEAD.size + head_len :]
                    vectors = np.frombuffer(raw, dtype=np.float32).reshape(-1, header["dim"])
                offset += _FRAME.size + length
                yield offset, header, vectors

    def changed(self, state: State) -> bool:
        """Whether another process has written since `state` was read."""
        try:
            if self.generation() != state.generation:
                return True
            return self.log_path(state.generation).stat().st_size > state.log_offset
        except (FileNotFoundError, JiyiError):
            return True

    # ---- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def writer_lock(self, timeout: float = 60.0) -> Iterator[None]:
        """Exclusive lock for writers; waits up to `timeout` seconds for another writer."""
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() > deadline:
                        raise JiyiError(
                            f"{self.path}: another process has held the writer lock for "
                            f"{timeout:.0f} s; wait for it to finish, then retry."
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def append(self, state: State, header: dict[str, Any], vectors: np.ndarray | None) -> None:
        """Write one record and fsync it (call under `writer_lock`, with `state` caught up)."""
        header = {**header, "seq": state.seq + 1}
        head = json.dumps(header, ensure_ascii=False).encode("utf-8")
        body = _HEAD.pack(len(head)) + head
        if vectors is not None:
            body += np.ascontiguousarray(vectors, dtype=np.float32).tobytes()
        record = _FRAME.pack(MAGIC, len(body), zlib.crc32(body)) + body
        log = self.log_path(state.generation)
        new = not log.exists()
        fd = os.open(log, os.O_WRONLY | os.O_CREAT, 0o666)
        try:
            os.ftruncate(fd, state.log_offset)  # cut a torn tail left by a killed writer
            os.lseek(fd, state.log_offset, os.SEEK_SET)
            view = memoryview(record)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            _fsync_dir(self.path)
        state.seq = header["seq"]
        state.log_offset += len(record)

    def write_snapshot(
        self,
        state: State,
        *,
        index_bytes: bytes | None,
        keep_dead: bool,
        index_files: Callable[[Path, Path], None] | None = None,
    ) -> State:
        """Compact `state` into generation + 1 and switch CURRENT to it (under `writer_lock`).

        Dead rows are dropped from rows and vectors; with `keep_dead` (an HNSW index that cannot
        delete) their slots are listed in meta.json so the saved index keeps excluding them.
        `index_files(folder, final)` writes index files into the new snapshot's temporary
        folder once its rows.parquet and vectors.npy are there (final: where it will be).
        """
        import pyarrow.parquet as pq

        rows = state.rows
        live = rows.live()
        vectors = rows.vectors()[live]
        generation = state.generation + 1
        dead = sorted(state.snapshot_dead | rows.dead) if keep_dead else []

        def write(tmp: Path, final: Path) -> None:
            table = rows_table(
                [rows.slots[i] for i in live],
                [rows.ids[i] for i in live],
                [rows.texts[i] for i in live],
                [rows.labels[i] for i in live],
                [rows.payloads[i] for i in live],
            )
            pq.write_table(table, tmp / "rows.parquet")
            with open(tmp / "vectors.npy", "wb") as f:
                np.save(f, vectors)
            if index_bytes is not None:
                (tmp / "index.faiss").write_bytes(index_bytes)
            if index_files is not None:
                index_files(tmp, final)

        meta = {
            "seq": state.seq,
            "next_slot": state.next_slot,
            "next_auto_id": state.next_auto_id,
            "rows": len(live),
            "dead": dead,
        }
        self.commit_snapshot(generation, write, meta)
        fresh = Rows(rows.dim)
        fresh.append(
            {
                "slots": [rows.slots[i] for i in live],
                "ids": [rows.ids[i] for i in live],
                "texts": [rows.texts[i] for i in live],
                "labels": [rows.labels[i] for i in live],
                "payloads": [rows.payloads[i] for i in live],
            },
            vectors,
        )
        return State(
            generation,
            state.seq,
            state.next_slot,
            state.next_auto_id,
            fresh,
            0,
            set(dead),
            len(live),
        )

    def commit_snapshot(
        self, generation: int, write: Callable[[Path, Path], None], meta: dict[str, Any]
    ) -> None:
        """Write snapshot `generation` and switch CURRENT to it (under `writer_lock`): `write(tmp,
        final)` puts rows.parquet, vectors.npy and index files into a temporary folder (final:
        where it will be), then meta.json is added, everything fsync'ed and renamed into place."""
        with atomic_directory(self.snapshot_dir(generation)) as tmp:
            write(tmp, self.snapshot_dir(generation))
            (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
            for file in tmp.iterdir():
                if file.is_file():
                    with open(file, "rb") as f:
                        os.fsync(f.fileno())
            _fsync_dir(tmp)
        _fsync_dir(self.path)
        atomic_write_text(self.path / "CURRENT", f"{generation}\n")
        _fsync_dir(self.path)
        self.remove_stale(generation)

    def remove_stale(self, generation: int) -> None:
        """Delete snapshots and logs of other generations, and temporaries of killed writers."""
        for entry in self.path.iterdir():
            name = entry.name
            if name.startswith(("snap-", "log-")):
                try:
                    number = int(name.split("-")[1].split(".")[0])
                except ValueError:
                    continue
                if number != generation:
                    _remove(entry)
            elif name.startswith(".") and name.endswith(".tmp"):
                _remove(entry)

    def create(self, manifest: dict[str, Any]) -> State:
        """Write an empty memory: memory.json, generation 1 with no rows."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path / MANIFEST, manifest)
        empty = State(0, 0, 0, 0, Rows(int(manifest["dim"])), 0, set())
        return self.write_snapshot(empty, index_bytes=None, keep_dead=False)

    def update_manifest(self, **changes: Any) -> dict[str, Any]:
        """Merge `changes` into memory.json (call under `writer_lock`)."""
        manifest = self.manifest() | changes
        atomic_write_json(self.path / MANIFEST, manifest)
        return manifest


def row_store_layout(snapshot: Path, index: str) -> dict[str, Any]:
    """What `memory stats` says of a snapshot's row store: its files, rows and bytes, and how
    `Memory.open` reads them (rows whole into RAM; an ivfpq memory's vectors memory-mapped)."""
    import pyarrow.parquet as pq

    rows, vectors = snapshot / "rows.parquet", snapshot / "vectors.npy"
    return {
        "layout": "rows.parquet (read whole on open) + vectors.npy "
        + ("(memory-mapped)" if index == "ivfpq" else "(read whole on open)"),
        "files": 2,
        "rows": pq.ParquetFile(rows).metadata.num_rows,
        "rows_bytes": rows.stat().st_size,
        "vectors_bytes": vectors.stat().st_size,
    }


def rows_table(
    slots: Sequence[int],
    ids: Sequence[str],
    texts: Sequence[str],
    labels: Sequence[Any],
    payloads: Sequence[Any],
) -> Any:
    """The pyarrow table of a snapshot's rows.parquet (labels and payloads as JSON text)."""
    import pyarrow as pa

    return pa.table(
        {
            "slot": pa.array(slots, pa.int64()),
            "id": pa.array(ids, pa.string()),
            "text": pa.array(texts, pa.string()),
            "label": pa.array([_json(x) for x in labels], pa.string()),
            "payload": pa.array([_json(x) for x in payloads], pa.string()),
        }
    )


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _remove(entry: Path) -> None:
    if entry.is_dir():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)
