"""The memory's durability: a writer killed with SIGKILL at random moments (mid-add, mid-compaction)
never loses an acknowledged row and never leaves half a batch; readers stay consistent while a
writer adds; a torn log tail is ignored and cut; every index kind answers the same way."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from jiyi.errors import JiyiError
from jiyi.memory.knn import Memory
from jiyi.memory.store import Store

DIM = 8
BATCH = 5


def manifest(index: str = "flat", dim: int = DIM) -> dict:
    return {
        "format": 1,
        "model": "none",
        "fingerprint": "test",
        "pooling": "mean",
        "layers": "-1",
        "max_length": 512,
        "dim": dim,
        "task": "classification",
        "index": index,
        "index_params": {},
        "payload_columns": ["answer"],
    }


def vector_of(row_id: str) -> np.ndarray:
    rng = np.random.default_rng(abs(hash(row_id)) % (2**32))
    v = rng.normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def new_memory(path: Path, index: str = "flat") -> Memory:
    Store(path).create(manifest(index))
    return Memory.open(path)


WRITER = textwrap.dedent(
    """
    import sys, zlib
    import numpy as np
    from jiyi.memory.knn import Memory
    path, start = sys.argv[1], int(sys.argv[2])
    def vec(i):
        rng = np.random.default_rng(zlib.crc32(i.encode()))
        v = rng.normal(size=8).astype(np.float32)
        return v / np.linalg.norm(v)
    mem = Memory.open(path)
    print("OPEN", flush=True)
    for b in range(start, start + 10_000):
        ids = [f"{b}-{i}" for i in range(5)]
        mem.add([f"text of {i}" for i in ids], labels=["a" if b % 2 else "b"] * 5,
                payload=[{"answer": i} for i in ids], ids=ids,
                vectors=np.stack([vec(i) for i in ids]))
        print(f"ACK {b}", flush=True)
        if b % 7 == 3:
            mem.compact()
        if b % 11 == 5 and b - 4 >= start:
            mem.forget([f"{b - 4}-{i}" for i in range(5)], compact=b % 2 == 0)
            print(f"FORGOT {b - 4}", flush=True)
    """
)


def crc_vector(row_id: str) -> np.ndarray:
    import zlib

    rng = np.random.default_rng(zlib.crc32(row_id.encode()))
    v = rng.normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def check_consistent(path: Path, acked: set[int], forgotten: set[int]) -> set[int]:
    """Every acknowledged batch is there whole (unless forgotten), no batch is partial, and each
    row's text, label, payload and vector are the ones written. Returns the batches present."""
    mem = Memory.open(path)
    rows = mem.state.rows
    live = rows.live()
    by_batch: dict[int, list[int]] = {}
    for i in live:
        by_batch.setdefault(int(rows.ids[i].split("-")[0]), []).append(i)
    for batch, members in by_batch.items():
        assert len(members) == BATCH, f"batch {batch} is partial: {len(members)} rows"
        for i in members:
            rid = rows.ids[i]
            assert rows.texts[i] == f"text of {rid}"
            assert rows.payloads[i] == {"answer": rid}
            assert rows.labels[i] == ("a" if batch % 2 else "b")
            np.testing.assert_allclose(rows.vectors()[i], crc_vector(rid), atol=1e-6)
    missing = (acked - forgotten) - set(by_batch)
    # a batch whose forget ran, but whose "FORGOT" line the kill cut off, is rightly gone
    missing = {b for b in missing if not ((b + 4) % 11 == 5 and b + 4 in acked)}
    assert not missing, f"acknowledged batches lost: {sorted(missing)}"
    assert not (set(by_batch) & forgotten), "a forgotten batch came back"
    assert len(mem) == BATCH * len(by_batch)
    # the index agrees with the rows: each live row finds itself first
    if len(mem):
        probe = [rows.ids[i] for i in live[:: max(1, len(live) // 10)]]
        _, positions = mem.search(np.stack([crc_vector(r) for r in probe]), 1)
        assert [rows.ids[p] for p in positions[:, 0]] == probe
    return set(by_batch)


def test_kill_9_never_loses_an_acknowledged_add(tmp_path: Path) -> None:
    path = tmp_path / "mem"
    new_memory(path)
    rng = random.Random(0)
    acked: set[int] = set()
    forgotten: set[int] = set()
    start = 0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    kills_mid_run = 0
    for _ in range(12):
        child = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        # killed a random while after it opened the memory (its imports take seconds under load)
        assert child.stdout is not None and child.stdout.readline() == "OPEN\n", child.stderr
        time.sleep(rng.uniform(0.3, 1.5))
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate()
        assert child.returncode == -signal.SIGKILL, err
        for line in out.splitlines():
            word, number = line.split()
            (acked if word == "ACK" else forgotten).add(int(number))
        kills_mid_run += bool(out)
        present = check_consistent(path, acked, forgotten)
        start = max([start, *acked, *present]) + 1
    assert kills_mid_run >= 8, "the writer should have been killed while adding most rounds"
    assert len(acked) > 20


def test_torn_tail_is_ignored_then_cut(tmp_path: Path) -> None:
    mem = new_memory(tmp_path / "mem")
    mem.add(["one"], ids=["1"], vectors=vector_of("1")[None])
    log = Store(mem.path).log_path(mem.state.generation)
    whole = log.read_bytes()
    with open(log, "ab") as f:
        f.write(whole[: len(whole) // 2])  # a second record, torn by a kill
    reader = Memory.open(mem.path)
    assert len(reader) == 1
    writer = Memory.open(mem.path)
    writer.add(["two"], ids=["2"], vectors=vector_of("2")[None])
    again = Memory.open(mem.path)
    assert sorted(again.state.rows.ids) == ["1", "2"]
    assert log.stat().st_size == len(whole) * 2  # the torn half was cut, not kept


def test_a_killed_build_or_compaction_leaves_no_debris(tmp_path: Path) -> None:
    mem = new_memory(tmp_path / "mem")
    mem.add(["a"], ids=["a"], vectors=vector_of("a")[None])
    stray = tmp_path / "mem" / "snap-000099"  # a compaction killed before switching CURRENT
    stray.mkdir()
    (tmp_path / "mem" / ".snap-000100.xyz.tmp").mkdir()
    mem.compact()
    names = sorted(p.name for p in (tmp_path / "mem").iterdir())
    assert names == ["CURRENT", "lock", "memory.json", f"snap-{mem.state.generation:06d}"]
    assert len(Memory.open(tmp_path / "mem")) == 1


READER = textwrap.dedent(
    """
    import sys, numpy as np
    from jiyi.memory.knn import Memory
    mem = Memory.open(sys.argv[1])
    last, probe = 0, np.ones((1, 8), dtype=np.float32) / 8 ** 0.5
    for _ in range(400):
        mem.refresh()
        n = len(mem)
        assert n >= last and n % 5 == 0, (n, last)
        if n:
            scores, pos = mem.search(probe, 3)
            assert (pos[0] >= 0).sum() == min(3, n)
        last = n
    print(last)
    """
)


def test_readers_are_consistent_while_a_writer_adds(tmp_path: Path) -> None:
    path = tmp_path / "mem"
    mem = new_memory(path)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    b = 0
    while reader.poll() is None and b < 3000:
        ids = [f"{b}-{i}" for i in range(BATCH)]
        mem.add(ids, ids=ids, vectors=np.stack([vector_of(i) for i in ids]))
        if b % 25 == 24:
            mem.compact()
        b += 1
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    assert int(out) > 0


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_index_kinds_agree_and_forget_is_final(tmp_path: Path, kind: str) -> None:
    ids = [str(i) for i in range(300)]
    vectors = np.stack([vector_of(i) for i in ids])
    if kind == "ivf":  # ivf trains its cells on the rows present when the index is made
        mem = new_memory(tmp_path / kind, kind)
        mem.add(ids[:200], ids=ids[:200], vectors=vectors[:200])
        mem.compact()
        mem.add(ids[200:], ids=ids[200:], vectors=vectors[200:])
    else:
        mem = new_memory(tmp_path / kind, kind)
        mem.add(ids, ids=ids, vectors=vectors)
    _, positions = mem.search(vectors[:20], 1)
    assert [mem.state.rows.ids[p] for p in positions[:, 0]] == ids[:20]
    mem.forget(["0", "1", "2"])
    reopened = Memory.open(tmp_path / kind)
    for m in (mem, reopened):
        assert len(m) == 297
        _, positions = m.search(vectors[:3], 5)
        found = {m.state.rows.ids[p] for p in positions.ravel() if p >= 0}
        assert not found & {"0", "1", "2"}
    disk = b"".join(p.read_bytes() for p in (tmp_path / kind).rglob("*") if p.is_file())
    assert b'"text": "0"' not in disk and b"\x00\x00\x00\x010\x00" not in disk


def test_bad_input_errors(tmp_path: Path) -> None:
    mem = new_memory(tmp_path / "mem")
    with pytest.raises(JiyiError, match="8-dimensional"):
        mem.add(["x"], vectors=np.ones((1, 5), dtype=np.float32))
    mem.add(["x"], ids=["x"], vectors=vector_of("x")[None])
    with pytest.raises(JiyiError, match="already in the memory"):
        mem.add(["y"], ids=["x"], vectors=vector_of("y")[None])
    with pytest.raises(JiyiError, match="twice in the input"):
        mem.add(["y", "z"], ids=["y", "y"], vectors=np.stack([vector_of("y")] * 2))
    with pytest.raises(JiyiError, match="no row with id 'nope'"):
        mem.forget(["nope"])
    with pytest.raises(JiyiError, match="NaN"):
        mem.add(["n"], vectors=np.full((1, DIM), np.nan, dtype=np.float32))
    with pytest.raises(JiyiError, match="query is empty"):
        mem.query(["  "])
    with pytest.raises(JiyiError, match="dimensional"):
        mem.search(np.ones((1, 3), dtype=np.float32), 1)
    with pytest.raises(JiyiError, match="not a jiyi memory"):
        Memory.open(tmp_path)
    assert len(Memory.open(tmp_path / "mem")) == 1  # nothing half-added by the failures
    assert json.loads((tmp_path / "mem" / "memory.json").read_text())["dim"] == DIM


def test_auto_ids_never_collide(tmp_path: Path) -> None:
    mem = new_memory(tmp_path / "mem")
    mem.add(["a"], ids=["1"], vectors=vector_of("a")[None])
    got = mem.add(["b", "c"], vectors=np.stack([vector_of("b"), vector_of("c")]))
    assert "1" not in got and len(set(got)) == 2
    mem.forget(got[:1])
    more = mem.add(["d"], vectors=vector_of("d")[None])
    assert more[0] not in got  # a forgotten id is not handed out again
