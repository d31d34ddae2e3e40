"""`--index ivfpq`: an IVF-PQ memory whose inverted lists live on disk, built shard by shard.

Checked: the snapshot's files, the recall measured and recorded at build time against exact
search, scores that are exact cosines, rows added and forgotten after the build (the snapshot's
files untouched until a compaction), a sharded build equal to a one-shard build, a failed
build leaving the old memory whole, `memory stats`, and stdout kept clean for JSON.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from jiyi.cli import main as run_cli
from jiyi.errors import JiyiError
from jiyi.memory import ondisk
from jiyi.memory.knn import Memory
from jiyi.memory.ondisk import IvfpqWriter, OnDiskIndex, exact_neighbours, recall_at

DIM = 32  # the tiny test model's hidden size
N = 3000
PARAMS = {"pq_m": 16, "shard_rows": 700, "recall_queries": 200, "target_recall": 0.9}
ROW_AND_INDEX_FILES = (
    "trained.faiss", "index.ivfdata", "vectors.npy", "rows-00000.parquet", "slots.npy",
    "id_hash.npy", "id_row.npy", "meta.json",
)  # fmt: skip


def clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors around 20 centres, as sentence embeddings cluster by topic."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(20, DIM))
    x = centres[rng.integers(0, 20, n)] + 0.6 * rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def build(
    path: Path, model: Path, vectors: np.ndarray, overwrite: bool = False, **params: object
) -> Memory:
    ids = [str(i) for i in range(len(vectors))]
    return Memory.build(
        path,
        str(model),
        [f"row {i}" for i in ids],
        labels=["a" if i % 2 else "b" for i in range(len(ids))],
        ids=ids,
        vectors=vectors,
        index="ivfpq",
        index_params={**PARAMS, **params},
        overwrite=overwrite,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered(N, seed=0)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return clustered(100, seed=1)  # held out: not rows of the memory


@pytest.fixture(scope="module")
def built(tiny_model_dir: Path, vectors: np.ndarray, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ivfpq") / "mem"
    build(path, tiny_model_dir, vectors)
    return path


def test_build_writes_on_disk_lists_and_records_recall(built: Path) -> None:
    mem = Memory.open(built)
    snap = built / f"snap-{mem.state.generation:06d}"
    assert sorted(p.name for p in snap.iterdir()) == [
        "id_hash.npy", "id_row.npy", "index.faiss", "index.ivfdata", "meta.json",
        "rows-00000.parquet", "slots.npy", "trained.faiss", "vectors.npy",
    ]  # fmt: skip
    params = mem.manifest["index_params"]
    assert params["nlist"] == N // 39 and params["pq_m"] == 16  # 4 sqrt(N) = 219: too few rows
    assert params["pq_bits"] == 6  # log2(3000 / 39): enough points per PQ centroid
    assert params["recall_k"] == 10 and params["recall_queries_used"] == 200
    assert params["recall"] >= 0.9 and params["target_reached"]
    # nprobe is the first of 1, 2, 4, ... to reach the target
    curve = {int(k): v for k, v in params["recall_curve"].items()}
    assert params["nprobe"] == max(curve) and all(
        v < 0.9 for n, v in curve.items() if n < max(curve)
    )
    settings = mem.stats()["index_settings"]
    assert settings["layout"].startswith("ivfpq: inverted lists on disk")
    assert settings["nprobe"] == params["nprobe"] and settings["recall"] == params["recall"]
    assert settings["ivfdata_bytes"] == (snap / "index.ivfdata").stat().st_size > 0
    store = mem.stats()["row_store"]
    assert store["layout"].endswith("vectors.npy (memory-mapped)") and store["rows"] == N
    assert store["vectors_bytes"] == (snap / "vectors.npy").stat().st_size > N * DIM * 4
    assert isinstance(mem._ensure_index(), OnDiskIndex)
    assert mem._ensure_index().disk.ntotal == N


def test_queries_reach_the_recorded_recall_with_exact_scores(
    built: Path, vectors: np.ndarray, queries: np.ndarray
) -> None:
    mem = Memory.open(built)
    scores, positions = mem.search(queries, 10)
    found = np.asarray(mem.state.rows.slots)[positions]
    truth = exact_neighbours(queries, [(vectors, np.arange(N))], 10)
    assert recall_at(found, truth) >= 0.85  # held-out queries; the build measured >= 0.9
    np.testing.assert_allclose(scores, np.einsum("qkd,qd->qk", vectors[found], queries), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-7).all(), "best first"
    flat = Memory.open(built)  # nprobe = every cell: the candidates PQ ranks first, re-scored
    flat.manifest["index_params"] = {**flat.manifest["index_params"], "nprobe": 10_000}
    _, all_cells = flat.search(queries, 10)
    assert recall_at(np.asarray(flat.state.rows.slots)[all_cells], truth) >= 0.9


def test_add_forget_compact_keep_the_snapshot_untouched(
    built: Path, vectors: np.ndarray, tmp_path: Path
) -> None:
    path = tmp_path / "mem"
    shutil.copytree(built, path)
    mem = Memory.open(path)
    snap = path / f"snap-{mem.state.generation:06d}"
    before = {p.name: digest(p) for p in snap.iterdir()}
    new = clustered(5, seed=7)
    mem.add([f"new {i}" for i in range(5)], ids=[f"n{i}" for i in range(5)], vectors=new)
    mem.forget(["0", "1", "n0"], compact=False)
    assert {p.name: digest(p) for p in snap.iterdir()} == before, "a snapshot is never modified"
    for m in (mem, Memory.open(path)):  # in this process, and replayed from the log
        _, positions = m.search(np.concatenate([new, vectors[:2]]), 3)
        ids = [[m.state.rows.ids[p] for p in row] for row in positions]
        assert [row[0] for row in ids[1:5]] == ["n1", "n2", "n3", "n4"]
        assert not {"0", "1", "n0"} & {i for row in ids for i in row}
    mem.compact()
    snap2 = path / f"snap-{mem.state.generation:06d}"
    assert not snap.exists() and (snap2 / "index.ivfdata").is_file()
    reopened = Memory.open(path)
    index = reopened._ensure_index()
    assert index.disk.ntotal == N + 2 and index.delta.ntotal == 0 and not index.excluded
    assert digest(snap2 / "trained.faiss") == before["trained.faiss"], "codebooks kept"
    _, positions = reopened.search(new[1:], 1)
    assert [reopened.state.rows.ids[p] for p in positions[:, 0]] == ["n1", "n2", "n3", "n4"]
    disk = b"".join(p.read_bytes() for p in path.rglob("*") if p.is_file())
    assert b"new 0" not in disk and b"row 0" not in disk.replace(b"row 0 ", b"")


def test_sharded_build_equals_one_shard(vectors: np.ndarray, tmp_path: Path) -> None:
    params = ondisk.resolve_params(PARAMS, N, DIM)
    trained = ondisk.train(vectors[::2], DIM, params)
    results = []
    for shard_rows in (N, 400):
        folder = tmp_path / f"s{shard_rows}"
        folder.mkdir()
        writer = IvfpqWriter(
            folder, final=folder, dim=DIM, n_rows=N, params=params, trained=trained
        )
        for start in range(0, N, shard_rows):
            stop = min(start + shard_rows, N)
            writer.add_shard(vectors[start:stop], np.arange(start, stop))
        assert writer.merge() == N
        assert not (folder / ".shards").exists()
        index = OnDiskIndex.open(folder, DIM, {**params, "nprobe": 8})
        results.append(index.search(vectors[:50], 10))
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert ondisk.resolve_params({}, 1_000_000, 384)["nlist"] == 4000


def test_a_failed_build_leaves_the_old_memory(
    built: Path, tiny_model_dir: Path, vectors: np.ndarray, tmp_path: Path, monkeypatch
) -> None:
    path = tmp_path / "mem"
    shutil.copytree(built, path)
    before = sorted(p.name for p in path.iterdir())

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # as a kill mid-encoding would stop it

    monkeypatch.setattr(ondisk, "build_index", crash)
    with pytest.raises(KeyboardInterrupt):
        build(path, tiny_model_dir, vectors[:500], overwrite=True)
    assert sorted(p.name for p in path.iterdir()) == before
    assert not list(tmp_path.glob(".*.tmp"))
    assert len(Memory.open(path)) == N


def test_bad_settings_name_the_flag(
    tiny_model_dir: Path, vectors: np.ndarray, tmp_path: Path
) -> None:
    with pytest.raises(JiyiError, match="--pq-m 5: must divide"):
        build(tmp_path / "a", tiny_model_dir, vectors[:500], pq_m=5)
    with pytest.raises(JiyiError, match=r"--target-recall 1\.5"):
        build(tmp_path / "b", tiny_model_dir, vectors[:500], target_recall=1.5)


def test_cli_build_stats_and_query_of_a_moved_memory(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, capfd
) -> None:
    mem = tmp_path / "mem"
    argv = ["memory", "build", str(tiny_model_dir), "--data", str(tiny_data_dir / "train.csv"),
            "--output", str(mem), "--index", "ivfpq", "--max-length", "32", "--pq-m", "8",
            "--shard-rows", "100", "--target-recall", "0.8"]  # fmt: skip
    assert run_cli(argv) == 0
    out, err = capfd.readouterr()
    settings = json.loads(out)["index_settings"]
    assert settings["pq_m"] == 8 and settings["target_recall"] == 0.8
    assert "ivfpq: encoded shard 3 (40 rows)" in err  # 240 rows in shards of 100
    moved = tmp_path / "moved"
    mem.rename(moved)  # index.faiss names the old folder: the lists are found beside it
    text = "the film was good"
    assert run_cli(["memory", "query", str(moved), text, "-k", "2"]) == 0
    out, _ = capfd.readouterr()
    hits = [json.loads(line) for line in out.splitlines()]  # stdout: JSON lines only
    assert len(hits) == 1 and len(hits[0]["hits"]) == 2


def test_exact_neighbours_in_blocks_equal_a_full_sort() -> None:
    rng = np.random.default_rng(3)
    n = 2 * ondisk.EXACT_COLUMNS + 123  # blocks of 4,096, 904 and 3,315 rows
    vectors = clustered(n, seed=5)
    queries = vectors[rng.choice(n, 40, replace=False)]
    skip = np.arange(n)[rng.choice(n, 40, replace=False)]
    skip[:5] = [int(np.argmax(vectors @ q)) for q in queries[:5]]  # some skip their best row
    shards = [(vectors[:5000], np.arange(5000)), (vectors[5000:], np.arange(5000, n))]
    found = exact_neighbours(queries, shards, 10, skip)
    scores = queries @ vectors.T  # (40, n)
    scores[np.arange(40), skip] = -np.inf
    want = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(found, want)


def test_build_from_shards_equals_memory_build(
    built: Path, tiny_model_dir: Path, vectors: np.ndarray, tmp_path: Path
) -> None:
    from jiyi.memory.sharded import build_from_shards

    ids = [str(i) for i in range(N)]
    texts = [f"row {i}" for i in ids]
    labels = ["a" if i % 2 else "b" for i in range(N)]
    path = tmp_path / "mem"
    build_from_shards(
        path, str(tiny_model_dir), texts, labels=labels, ids=ids, index_params=PARAMS,
        shards=lambda: (vectors[i : i + 1000] for i in range(0, N, 1000)),
        on_progress=lambda message: None,
    )  # fmt: skip
    snap, want = path / "snap-000002", built / "snap-000002"
    for name in ROW_AND_INDEX_FILES:
        assert digest(snap / name) == digest(want / name), name
    assert Memory.open(path).manifest == Memory.open(built).manifest
    with pytest.raises(JiyiError, match="the vector shards hold 2000 rows for 3000 texts"):
        build_from_shards(
            tmp_path / "short", str(tiny_model_dir), texts, index_params=PARAMS,
            shards=lambda: (vectors[i : i + 1000] for i in range(0, 2000, 1000)),
        )  # fmt: skip
    with pytest.raises(JiyiError, match="id '7' is twice in the input"):
        build_from_shards(
            tmp_path / "dupes", str(tiny_model_dir), texts, ids=[*ids[:-1], "7"],
            index_params=PARAMS, shards=lambda: iter([vectors]),
        )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mem"], "nothing half-made"
