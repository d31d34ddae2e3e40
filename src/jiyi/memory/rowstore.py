"""A snapshot's rows on disk, read on demand: Parquet parts, and index files that let a memory
open without reading them.

```
snap-000003/
  rows-00000.parquet ...  slot, id, text, label, payload (labels and payloads as JSON text);
                          PART_ROWS rows a part, in row groups of GROUP_ROWS
  slots.npy               (N,) int64, ascending: row i's slot (its id in the vector index)
  id_hash.npy             (N,) uint64, sorted: the 64-bit BLAKE2b hash of each row's id
  id_row.npy              (N,) int64: the row whose id has the hash beside it
```

Opening a snapshot memory-maps the three .npy files and reads nothing else: a row's id, text,
label and payload are read with its row group when asked for (the last CACHED_GROUPS groups
stay decoded), and an id is found by binary search of its hash, then checked against the row's
id (two ids with one hash cost one more read, never a wrong answer). So a memory's rows, like
an ivfpq memory's vectors, can outgrow RAM. A snapshot written before the parts (one
rows.parquet, meta.json without "parts") is read whole and indexed in RAM when opened; the next
compaction writes it as parts.

`Rows` is the live view a memory works on: the snapshot's rows plus the rows replayed from the
log (in RAM), with forgotten ones marked dead.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PART_ROWS = 100_000
GROUP_ROWS = 1_024
CACHED_GROUPS = 64
COLUMNS = ("id", "text", "label", "payload")
LEGACY = "rows.parquet"
_JSON = frozenset({"label", "payload"})  # columns stored as JSON text


def part_name(i: int) -> str:
    return f"rows-{i:05d}.parquet"


def id_hashes(ids: Iterable[str]) -> np.ndarray:
    """The 64-bit BLAKE2b hash of each id's UTF-8 bytes, as uint64 (the same in every process)."""
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(i.encode("utf-8"), digest_size=8).digest(), "little")
            for i in ids
        ),
        dtype=np.uint64,
    )


def rows_table(
    slots: Sequence[int],
    ids: Sequence[str],
    texts: Sequence[str],
    labels: Sequence[Any],
    payloads: Sequence[Any],
) -> Any:
    """The pyarrow table of rows as a part stores them (labels and payloads as JSON text)."""
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


def write_rows(folder: Path, tables: Iterable[Any]) -> list[int]:
    """Write `tables` (rows_table's columns, slots ascending), in order, as the parts and index
    files of a snapshot folder; one part in memory at a time. Returns the rows of each part
    (meta.json's "parts")."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    counts: list[int] = []
    hashes: list[np.ndarray] = []
    slots: list[np.ndarray] = []

    def flush(part: Any) -> None:
        pq.write_table(part, folder / part_name(len(counts)), row_group_size=GROUP_ROWS)
        counts.append(part.num_rows)
        hashes.append(id_hashes(part.column("id").to_pylist()))
        slots.append(part.column("slot").to_numpy().astype(np.int64))

    waiting: list[Any] = []
    held = 0
    for table in tables:
        waiting.append(table)
        held += table.num_rows
        while held >= PART_ROWS:
            whole = pa.concat_tables(waiting)
            flush(whole.slice(0, PART_ROWS))
            rest = whole.slice(PART_ROWS)
            waiting, held = [rest], rest.num_rows
    if held:
        flush(pa.concat_tables(waiting))
    all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    order = np.argsort(all_hashes, kind="stable")
    np.save(folder / "id_hash.npy", all_hashes[order])
    np.save(folder / "id_row.npy", order.astype(np.int64))
    np.save(folder / "slots.npy", np.concatenate(slots) if slots else np.zeros(0, np.int64))
    return counts


def snapshot_slots(folder: Path) -> np.ndarray:
    """Row i's slot, for every row of a snapshot folder (memory-mapped where it can be)."""
    if (folder / "slots.npy").is_file():
        return np.load(folder / "slots.npy", mmap_mode="r")
    import pyarrow.parquet as pq

    return (
        pq.read_table(folder / LEGACY, columns=["slot"]).column("slot").to_numpy().astype(np.int64)
    )


class SnapshotRows:
    """The rows of one snapshot folder, read a row group at a time when asked for."""

    def __init__(self, folder: Path, parts: Sequence[int] | None):
        self.folder = folder
        self._groups: OrderedDict[tuple[int, int], Any] = OrderedDict()  # pyarrow tables
        self._files: dict[int, Any] = {}
        self._columns: dict[str, list[Any]] = {}
        self._maps: list[Any] = []
        if parts is None:  # a snapshot from before the parts: read whole, indexed here
            import pyarrow.parquet as pq

            table = pq.read_table(folder / LEGACY)
            self._names = [LEGACY]
            self._starts = np.asarray([0, table.num_rows], dtype=np.int64)
            self.slots = table.column("slot").to_numpy().astype(np.int64)
            self._columns = {
                name: _decode(name, table.column(name).to_pylist()) for name in COLUMNS
            }
            hashes = id_hashes(self._columns["id"])
            order = np.argsort(hashes, kind="stable")
            self._hash, self._row = hashes[order], order.astype(np.int64)
        else:
            import pyarrow as pa

            self._names = [part_name(i) for i in range(len(parts))]
            # mapped now, so a compaction that deletes this snapshot under a reader cannot
            # take its rows away (the files stay readable while mapped)
            self._maps = [pa.memory_map(str(folder / name)) for name in self._names]
            self._starts = np.concatenate([[0], np.cumsum(parts, dtype=np.int64)])
            self.slots = np.load(folder / "slots.npy", mmap_mode="r")
            self._hash = np.load(folder / "id_hash.npy", mmap_mode="r")
            self._row = np.load(folder / "id_row.npy", mmap_mode="r")

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def parts(self) -> int:
        return len(self._names)

    def value(self, name: str, row: int) -> Any:
        """Column `name` of row `row`."""
        if name in self._columns:
            return self._columns[name][row]
        part = int(np.searchsorted(self._starts, row, side="right")) - 1
        within = row - int(self._starts[part])
        group = self._group(part, within // GROUP_ROWS)
        value = group.column(name)[within % GROUP_ROWS].as_py()  # only this cell is decoded
        return json.loads(value) if name in _JSON and value is not None else value

    def _group(self, part: int, group: int) -> Any:
        key = (part, group)
        found = self._groups.get(key)
        if found is not None:
            self._groups.move_to_end(key)
            return found
        found = self._file(part).read_row_group(group, columns=list(COLUMNS))
        self._groups[key] = found
        if len(self._groups) > CACHED_GROUPS:
            self._groups.popitem(last=False)
        return found

    def _file(self, part: int) -> Any:
        if part not in self._files:
            import pyarrow.parquet as pq

            source = self._maps[part] if self._maps else self.folder / self._names[part]
            self._files[part] = pq.ParquetFile(source)
        return self._files[part]

    def __del__(self) -> None:
        for mapped in getattr(self, "_maps", []):
            mapped.close()

    def column(self, name: str) -> list[Any]:
        """Every row's value of column `name` (read whole once, then kept)."""
        if name not in self._columns:
            values: list[Any] = []
            for part in range(self.parts):
                table = self._file(part).read(columns=[name])
                values.extend(_decode(name, table.column(name).to_pylist()))
            self._columns[name] = values
        return self._columns[name]

    def table(self, part: int) -> Any:
        """Part `part` as a pyarrow table (rows_table's columns, as stored)."""
        return self._file(part).read()

    def part_range(self, part: int) -> tuple[int, int]:
        return int(self._starts[part]), int(self._starts[part + 1])

    def find(self, rid: str) -> int | None:
        """The row whose id is `rid`, or None."""
        if not len(self._hash):
            return None
        (h,) = id_hashes([rid])
        lo = int(np.searchsorted(self._hash, h, side="left"))
        hi = int(np.searchsorted(self._hash, h, side="right"))
        for row in self._row[lo:hi]:
            if self.value("id", int(row)) == rid:
                return int(row)
        return None


class Column(Sequence):
    """One column of `Rows`: the snapshot's values (read on demand) then the log's (in RAM)."""

    def __init__(self, base: SnapshotRows | None, name: str):
        self._base, self._name = base, name
        self._n = len(base) if base is not None else 0
        self.tail: list[Any] = []

    def __len__(self) -> int:
        return self._n + len(self.tail)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return list(self)[i]
        i = int(i)
        if i < 0:
            i += len(self)
        if i < self._n:
            assert self._base is not None
            return self._base.value(self._name, i)
        return self.tail[i - self._n]

    def __iter__(self) -> Iterator[Any]:
        if self._base is not None:
            yield from self._base.column(self._name)
        yield from self.tail


class Positions:
    """id -> row of the live rows: the snapshot's id index, then the rows added since and the
    ids forgotten since (both in RAM)."""

    def __init__(self, base: SnapshotRows | None):
        self._base = base
        self._added: dict[str, int] = {}
        self._removed: set[str] = set()

    def get(self, rid: str) -> int | None:
        if rid in self._added:
            return self._added[rid]
        if rid in self._removed or self._base is None:
            return None
        return self._base.find(rid)

    def __contains__(self, rid: object) -> bool:
        return isinstance(rid, str) and self.get(rid) is not None

    def __setitem__(self, rid: str, row: int) -> None:
        self._added[rid] = row

    def pop(self, rid: str) -> int:
        row = self.get(rid)
        if row is None:
            raise KeyError(rid)
        if self._added.pop(rid, None) is None:
            self._removed.add(rid)
        return row


class Rows:
    """Live rows in insertion order, with their vectors; `slots[i]` is row i's id in the index.

    The first `len(base)` rows are the snapshot's (read on demand; their vectors an array or a
    memory map), the rest were replayed from the log or added (in RAM)."""

    def __init__(self, dim: int, base: SnapshotRows | None = None, vectors: Any = None):
        self.dim = dim
        self.base = base
        self.ids = Column(base, "id")
        self.texts = Column(base, "text")
        self.labels = Column(base, "label")
        self.payloads = Column(base, "payload")
        self.position = Positions(base)
        self.dead: set[int] = set()  # slots forgotten since they were added
        self._base_slots = base.slots if base is not None else np.zeros(0, np.int64)
        self._base_vectors = vectors if vectors is not None else np.zeros((0, dim), np.float32)
        self._tail_slots: list[int] = []
        self._tail_vectors: list[np.ndarray] = []
        self._slots: np.ndarray | None = None
        self._joined: np.ndarray | None = None  # base and tail vectors in one array, when asked

    @property
    def snapshot_rows(self) -> int:
        return len(self._base_slots)

    @property
    def slots(self) -> np.ndarray:
        """Every row's slot, dead ones included, as int64 (ascending: handed out in order)."""
        if self._slots is None or len(self._slots) != self.snapshot_rows + len(self._tail_slots):
            tail = np.asarray(self._tail_slots, dtype=np.int64)
            self._slots = np.concatenate([np.asarray(self._base_slots), tail])
        return self._slots

    def __len__(self) -> int:
        return self.snapshot_rows + len(self._tail_slots) - len(self.dead)

    def vectors(self) -> np.ndarray:
        """All vectors, dead ones included (they line up with `slots`): (n, D) float32. With no
        rows since the snapshot, the snapshot's array or memory map itself."""
        if not self._tail_vectors:
            return self._base_vectors
        if self._joined is None or len(self._joined) != len(self.slots):
            tail = self._tail()
            base = np.asarray(self._base_vectors)
            self._joined = np.concatenate([base, tail]) if self.snapshot_rows else tail
        return self._joined

    def _tail(self) -> np.ndarray:
        if len(self._tail_vectors) != 1:
            self._tail_vectors = [np.concatenate(self._tail_vectors)]
        return self._tail_vectors[0]

    def vectors_at(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), D) float32: the vectors of these rows, reading only them from disk."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        from_base = rows < self.snapshot_rows
        if from_base.any():
            out[from_base] = self._base_vectors[rows[from_base]]
        if not from_base.all():
            out[~from_base] = self._tail()[rows[~from_base] - self.snapshot_rows]
        return out

    def append(self, header: dict[str, Any], vectors: np.ndarray) -> None:
        start = self.snapshot_rows + len(self._tail_slots)  # no slot array made per append
        self._tail_slots.extend(header["slots"])
        self.ids.tail.extend(header["ids"])
        self.texts.tail.extend(header["texts"])
        self.labels.tail.extend(header["labels"])
        self.payloads.tail.extend(header["payloads"])
        self._tail_vectors.append(np.asarray(vectors, dtype=np.float32))
        for i, rid in enumerate(header["ids"], start=start):
            self.position[rid] = i

    def forget(self, ids: Sequence[str]) -> list[int]:
        """Mark rows dead; returns their slots. Unknown ids are the caller's to reject."""
        slots = []
        for rid in ids:
            slot = int(self.slots[self.position.pop(rid)])
            self.dead.add(slot)
            slots.append(slot)
        return slots

    def live(self) -> np.ndarray:
        """Indices (into the columns) of the live rows."""
        if not self.dead:
            return np.arange(len(self.slots))
        return np.flatnonzero(~np.isin(self.slots, list(self.dead)))

    def live_tables(self, live: np.ndarray) -> Iterator[Any]:
        """The rows at `live` (ascending) as rows_table tables, a part or a log batch at a
        time: what a compaction writes."""
        import pyarrow as pa

        live = np.asarray(live, dtype=np.int64)
        if self.base is not None:
            for part in range(self.base.parts):
                start, stop = self.base.part_range(part)
                keep = live[(live >= start) & (live < stop)] - start
                if len(keep):
                    yield self.base.table(part).take(pa.array(keep))
        tail = live[live >= self.snapshot_rows] - self.snapshot_rows
        for a in range(0, len(tail), PART_ROWS):
            picked = tail[a : a + PART_ROWS]
            yield rows_table(
                [self._tail_slots[i] for i in picked],
                [self.ids.tail[i] for i in picked],
                [self.texts.tail[i] for i in picked],
                [self.labels.tail[i] for i in picked],
                [self.payloads.tail[i] for i in picked],
            )


def row_store_layout(snapshot: Path, index: str) -> dict[str, Any]:
    """What `memory stats` says of a snapshot's row store: its files, rows and bytes, and how
    `Memory.open` reads them."""
    vectors = snapshot / "vectors.npy"
    how = "memory-mapped" if index == "ivfpq" else "read whole on open"
    parts = sorted(snapshot.glob("rows-*.parquet"))
    if (snapshot / LEGACY).is_file():  # written before the parts
        return {
            "layout": f"{LEGACY} (read whole on open) + vectors.npy ({how})",
            "files": 2,
            "rows": len(snapshot_slots(snapshot)),
            "rows_bytes": (snapshot / LEGACY).stat().st_size,
            "vectors_bytes": vectors.stat().st_size,
        }
    index_files = [snapshot / n for n in ("slots.npy", "id_hash.npy", "id_row.npy")]
    return {
        "layout": f"{len(parts)} Parquet part(s) of up to {PART_ROWS:,} rows (row groups of "
        f"{GROUP_ROWS:,} read on demand) + id index (memory-mapped) + vectors.npy ({how})",
        "files": len(parts) + len(index_files) + 1,
        "parts": len(parts),
        "rows": len(snapshot_slots(snapshot)),
        "rows_bytes": sum(p.stat().st_size for p in parts),
        "id_index_bytes": sum(f.stat().st_size for f in index_files),
        "vectors_bytes": vectors.stat().st_size,
    }


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _decode(name: str, values: list[Any]) -> list[Any]:
    if name in _JSON:
        return [json.loads(x) if x is not None else None for x in values]
    return values
