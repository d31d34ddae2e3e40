"""The durable row store under a memory directory: a snapshot plus a write-ahead log.

```
MEM_DIR/
  memory.json        what the memory is: model, fingerprint, pooling, index kind, tuned settings
  CURRENT            the live generation, e.g. "3" (replaced atomically)
  snap-000003/       that generation's snapshot, never modified once renamed into place:
    rows-00000.parquet ...   slot, id, text, label, payload (one row per live vector), in parts
    slots.npy, id_hash.npy, id_row.npy   the parts' index (jiyi.memory.rowstore)
    vectors.npy        (N, D) float32, row i = row i of the parts
    index.faiss        the ANN index (hnsw / ivf only; a flat index is rebuilt on open)
    trained.faiss, index.ivfdata   ivfpq only: codebooks and on-disk lists (jiyi.memory.ondisk)
    meta.json          seq (last log record folded in), next_slot, next_auto_id, dead slots,
                       the rows of each part
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.errors import JiyiError
from jiyi.io import atomic_directory, atomic_write_json, atomic_write_text, write_npy
from jiyi.memory.rowstore import PART_ROWS, Rows, SnapshotRows, write_rows

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
class State:
    """One consistent view of the memory: a generation's snapshot plus its log replayed."""

    generation: int
    seq: int  # last record applied
    next_slot: int
    next_auto_id: int
    rows: Rows
    log_offset: int  # bytes of the log that are whole records
    snapshot_dead: set[int]  # dead slots recorded in the snapshot (an ANN index still holds them)


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
        snap = self.snapshot_dir(generation)
        meta = json.loads((snap / "meta.json").read_text(encoding="utf-8"))
        manifest = self.manifest()
        base = SnapshotRows(snap, meta.get("parts"))
        # an ivfpq memory may be larger than RAM: its vectors are read from disk when needed
        on_disk = manifest.get("index") == "ivfpq"
        vectors = np.load(snap / "vectors.npy", mmap_mode="r" if on_disk else None)
        rows = Rows(int(manifest["dim"]), base, vectors)
        dead = {int(s) for s in meta.get("dead", [])}
        return State(
            generation, int(meta["seq"]), int(meta["next_slot"]), int(meta["next_auto_id"]),
            rows, 0, dead,
        )  # fmt: skip

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
        folder once its row parts and vectors.npy are there (final: where it will be).
        """
        rows = state.rows
        live = rows.live()
        generation = state.generation + 1
        dead = sorted(state.snapshot_dead | rows.dead) if keep_dead else []
        meta = {
            "seq": state.seq,
            "next_slot": state.next_slot,
            "next_auto_id": state.next_auto_id,
            "rows": len(live),
            "dead": dead,
        }

        def write(tmp: Path, final: Path) -> None:
            meta["parts"] = write_rows(tmp, rows.live_tables(live))
            blocks = (  # one part's vectors in RAM at a time
                rows.vectors_at(live[start : start + PART_ROWS])
                for start in range(0, len(live), PART_ROWS)
            )
            write_npy(tmp / "vectors.npy", blocks, (len(live), rows.dim))
            if index_bytes is not None:
                (tmp / "index.faiss").write_bytes(index_bytes)
            if index_files is not None:
                index_files(tmp, final)

        self.commit_snapshot(generation, write, meta)
        return self._load_snapshot(generation)

    def commit_snapshot(
        self, generation: int, write: Callable[[Path, Path], None], meta: dict[str, Any]
    ) -> None:
        """Write snapshot `generation` and switch CURRENT to it (under `writer_lock`): `write(tmp,
        final)` puts the row parts, vectors.npy and index files into a temporary folder (final:
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


def _remove(entry: Path) -> None:
    if entry.is_dir():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)
