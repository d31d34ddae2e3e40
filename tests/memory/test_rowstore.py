"""The row store in parts (jiyi.memory.rowstore): a memory opens without reading its rows, reads
a row group when a row is asked for, finds ids through the hash index (collisions included),
compacts parts and log into new parts, keeps a reader's rows readable after a compaction
deletes its snapshot, and still opens a snapshot written as one rows.parquet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import jiyi.memory.rowstore as rowstore
from jiyi.errors import JiyiError
from jiyi.memory.knn import Memory
from jiyi.memory.store import Store

DIM = 8
N = 130


def manifest(index: str = "flat") -> dict:
    return {
        "format": 1, "model": "none", "fingerprint": "test", "pooling": "mean", "layers": "-1",
        "max_length": 512, "dim": DIM, "task": "classification", "index": index,
        "index_params": {}, "payload_columns": ["n"],
    }  # fmt: skip


def unit(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def expected(i: int) -> tuple[str, str, str, dict]:
    return f"doc-{i}", f"text {i} 记忆", ("a" if i % 3 else "b"), {"n": i, "zh": "中文"}


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rowstore, "PART_ROWS", 50)
    monkeypatch.setattr(rowstore, "GROUP_ROWS", 8)


def filled(path: Path, index: str = "flat") -> tuple[Memory, np.ndarray]:
    """A memory of N rows in one snapshot (parts of 50 under `small_parts`)."""
    Store(path).create(manifest(index))
    mem = Memory.open(path)
    vectors = unit(N)
    rows = [expected(i) for i in range(N)]
    mem.add(
        [r[1] for r in rows],
        ids=[r[0] for r in rows],
        labels=[r[2] for r in rows],
        payload=[r[3] for r in rows],
        vectors=vectors,
    )
    mem.compact()
    return Memory.open(path), vectors


def snapshot(mem: Memory) -> Path:
    return mem.store.snapshot_dir(mem.state.generation)


def test_a_snapshot_is_written_in_parts_with_an_id_index(small_parts: None, tmp_path: Path) -> None:
    mem, _ = filled(tmp_path / "mem")
    snap = snapshot(mem)
    assert sorted(p.name for p in snap.glob("rows-*.parquet")) == [
        "rows-00000.parquet", "rows-00001.parquet", "rows-00002.parquet"
    ]  # fmt: skip
    assert json.loads((snap / "meta.json").read_text())["parts"] == [50, 50, 30]
    part = pq.ParquetFile(snap / "rows-00000.parquet")
    assert part.metadata.num_row_groups == 7  # 50 rows in groups of 8
    assert np.load(snap / "slots.npy").tolist() == list(range(N))
    hashes = np.load(snap / "id_hash.npy")
    assert (np.diff(hashes.astype(np.float64)) >= 0).all()  # sorted for binary search
    layout = mem.stats()["row_store"]
    assert layout["parts"] == 3 and layout["rows"] == N and layout["id_index_bytes"] > 0


def test_an_empty_memory_has_no_parts_and_says_so(tmp_path: Path) -> None:
    Store(tmp_path / "mem").create(manifest())
    layout = Memory.open(tmp_path / "mem").stats()["row_store"]
    assert (layout["parts"], layout["rows"], layout["rows_bytes"]) == (0, 0, 0)


def test_opening_reads_no_row_and_a_row_reads_only_its_group(
    small_parts: None, tmp_path: Path
) -> None:
    mem, vectors = filled(tmp_path / "mem")
    base = mem.state.rows.base
    assert base is not None and not base._groups and not base._columns  # nothing read yet
    scores, positions = mem.search(vectors[[77]], k=1)
    (hit,) = mem.hits(scores[0], positions[0])
    assert (hit["id"], hit["text"], hit["label"], hit["payload"]) == expected(77)
    assert list(base._groups) == [(1, 3)]  # part 1, rows 72..79: one group read
    rows = mem.state.rows
    for i in range(N):  # every row, through the groups
        assert (rows.ids[i], rows.texts[i], rows.labels[i], rows.payloads[i]) == expected(i)
    assert len(base._groups) <= rowstore.CACHED_GROUPS
    assert list(rows.labels) == [expected(i)[2] for i in range(N)]  # a whole column


def test_ids_are_found_through_the_hash_index_even_when_hashes_collide(
    small_parts: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rowstore, "id_hashes", lambda ids: np.zeros(len(list(ids)), np.uint64))
    mem, _ = filled(tmp_path / "mem")  # every id has the same hash
    position = mem.state.rows.position
    assert position.get("doc-101") == 101 and "doc-0" in position
    assert "doc-130" not in position and "missing" not in position
    with pytest.raises(JiyiError, match="'doc-5' is already in the memory"):
        mem.add(["again"], ids=["doc-5"], vectors=unit(1, 1))
    assert mem.forget(["doc-5", "doc-120"], compact=False) == 2
    assert "doc-5" not in mem.state.rows.position
    mem.add(["back"], ids=["doc-5"], vectors=unit(1, 2))  # a forgotten id may come back
    assert mem.state.rows.position.get("doc-5") == N
    with pytest.raises(JiyiError, match="no row with id 'doc-120'"):
        mem.forget(["doc-120"])


def test_compaction_writes_parts_and_log_rows_without_the_forgotten(
    small_parts: None, tmp_path: Path
) -> None:
    mem, _ = filled(tmp_path / "mem")
    mem.add(["late one", "late two"], ids=["late-1", "late-2"], vectors=unit(2, 3))
    mem.forget(["doc-0", "doc-60", "late-1"])  # compacts
    again = Memory.open(tmp_path / "mem")
    rows = again.state.rows
    kept = [i for i in range(N) if i not in (0, 60)]
    assert list(rows.ids) == [f"doc-{i}" for i in kept] + ["late-2"]
    assert rows.texts[len(kept)] == "late two" and rows.payloads[len(kept)] is None
    assert json.loads((snapshot(again) / "meta.json").read_text())["parts"] == [50, 50, 29]
    assert rows.position.get("late-2") == len(kept) and "doc-60" not in rows.position
    assert rows.slots.tolist() == [*kept, N + 1]  # slots survive compaction


def test_a_reader_keeps_its_rows_after_a_compaction_deletes_its_snapshot(
    small_parts: None, tmp_path: Path
) -> None:
    filled(tmp_path / "mem")
    reader = Memory.open(tmp_path / "mem")
    old = snapshot(reader)
    Memory.open(tmp_path / "mem").forget(["doc-1"])  # another writer compacts
    assert not old.exists()
    rows = reader.state.rows  # not caught up: still the deleted generation
    assert (rows.ids[99], rows.texts[99]) == expected(99)[:2]
    reader.refresh()
    assert "doc-1" not in reader.state.rows.position and len(reader) == N - 1


@pytest.mark.parametrize("index", ["flat", "hnsw"])
def test_a_snapshot_written_as_one_rows_parquet_still_opens(
    small_parts: None, tmp_path: Path, index: str
) -> None:
    mem, vectors = filled(tmp_path / "mem", index)
    snap = snapshot(mem)
    table = pa.concat_tables(pq.read_table(p) for p in sorted(snap.glob("rows-*.parquet")))
    pq.write_table(table, snap / "rows.parquet")  # the layout before the parts
    for file in [*snap.glob("rows-*.parquet"), *snap.glob("*.npy")]:
        if file.name != "vectors.npy":
            file.unlink()
    meta = json.loads((snap / "meta.json").read_text())
    del meta["parts"]
    (snap / "meta.json").write_text(json.dumps(meta))
    old = Memory.open(tmp_path / "mem")
    assert old.stats()["row_store"]["layout"].startswith("rows.parquet")
    scores, positions = old.search(vectors[[42]], k=1)
    assert old.hits(scores[0], positions[0])[0]["payload"] == expected(42)[3]
    old.forget(["doc-42"])  # the compaction writes parts
    new = Memory.open(tmp_path / "mem")
    assert new.stats()["row_store"]["parts"] == 3 and "doc-42" not in new.state.rows.position
    assert not (snapshot(new) / "rows.parquet").exists() and len(new) == N - 1
