"""`jiyi memory build --index ivfpq --engine ray` (jiyi.scale.memory): vectors made and index
shards encoded on Ray workers give the files a local build of the same vectors writes (same
codebooks, same codes, same lists), the same answers as `--engine local`, and a build killed
after the embedding resumes by skipping the finished vector shards.

One local Ray (2 CPUs) serves the whole module: starting Ray takes seconds on 2 cores.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from jiyi.cli import main
from jiyi.memory.knn import Memory

pytest.importorskip("ray.data")
pq = pytest.importorskip("pyarrow.parquet")

SETTINGS = [
    "--index",
    "ivfpq",
    "--max-length",
    "32",
    "--pq-m",
    "8",
    "--target-recall",
    "0.8",
    "--shard-rows",
    "70",
]  # fmt: skip  (240 rows: 4 index shards)
QUERIES = ["the film was good", "a dull and boring story", "unrelated words"]


def build_argv(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["memory", "build", str(model), "--data", str(data), "--output", str(out),
            *SETTINGS, *extra]  # fmt: skip


def snapshot(path: Path) -> Path:
    return path / f"snap-{Memory.open(path).state.generation:06d}"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def answers(path: Path) -> list[list[tuple[str, float]]]:
    hits = Memory.open(path).query(QUERIES, k=5)
    return [[(h["id"], h["score"]) for h in row] for row in hits]


@pytest.fixture(scope="module")
def ray_built(
    ray_instance: None,
    tiny_model_dir: Path,
    tiny_data_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, np.ndarray]:
    """(the memory built on Ray, the vectors its workers made, as they came off the shards)."""
    import jiyi.scale.memory as scale_memory

    out = tmp_path_factory.mktemp("scale-ivfpq") / "mem"
    argv = build_argv(tiny_model_dir, tiny_data_dir / "train.csv", out, "--engine", "ray",
                      "--workers", "2")  # fmt: skip
    seen: list[np.ndarray] = []
    real = scale_memory.vector_shards

    def recorded(out_dir: Path) -> Iterator[np.ndarray]:
        for shard in real(out_dir):
            seen.append(shard.copy())
            yield shard

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scale_memory, "vector_shards", recorded)
        assert main(argv) == 0
    return out, np.concatenate(seen)


def test_ray_build_writes_the_files_of_a_local_build_of_the_same_vectors(
    ray_built: tuple[Path, np.ndarray], tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    on_ray, made = ray_built
    assert sorted(p.name for p in on_ray.parent.iterdir()) == ["mem"], "work folder removed"
    snap = snapshot(on_ray)
    assert sorted(p.name for p in snap.iterdir()) == [
        "id_hash.npy", "id_row.npy", "index.faiss", "index.ivfdata", "meta.json",
        "rows-00000.parquet", "slots.npy", "trained.faiss", "vectors.npy",
    ]  # fmt: skip
    rows = pq.read_table(snap / "rows-00000.parquet")
    assert made.shape == (240, 32) and rows.num_rows == 240  # the Ray workers' vectors
    labels = [json.loads(x) for x in rows.column("label").to_pylist()]
    local = Memory.build(
        tmp_path / "local",
        str(tiny_model_dir),
        rows.column("text").to_pylist(),
        labels=labels,
        vectors=made,
        index="ivfpq",
        index_params={"pq_m": 8, "target_recall": 0.8, "shard_rows": 70},
        max_length=32,
    )
    local_snap = snapshot(local.path)
    for name in ("trained.faiss", "index.ivfdata", "vectors.npy", "rows-00000.parquet"):
        assert digest(snap / name) == digest(local_snap / name), name
    assert json.loads((snap / "meta.json").read_text()) == json.loads(
        (local_snap / "meta.json").read_text()
    )
    ray_manifest = json.loads((on_ray / "memory.json").read_text())
    local_manifest = json.loads((local.path / "memory.json").read_text())
    for key in ("index", "index_params", "fingerprint", "dim", "prompts", "payload_columns"):
        assert ray_manifest.get(key) == local_manifest.get(key), key
    assert ray_manifest["index_params"]["recall"] >= 0.8  # tuned on the merged on-disk lists
    assert answers(on_ray) == answers(local.path)


def test_ray_build_answers_as_an_engine_local_build(
    ray_built: tuple[Path, np.ndarray], tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    on_ray, _ = ray_built
    local = tmp_path / "local"
    assert main(build_argv(tiny_model_dir, tiny_data_dir / "train.csv", local)) == 0
    got, want = answers(on_ray), answers(local)
    assert [[i for i, _ in row] for row in got] == [[i for i, _ in row] for row in want]
    np.testing.assert_allclose(
        [[s for _, s in row] for row in got], [[s for _, s in row] for row in want], atol=1e-5
    )  # the vectors differ by ~1e-6 (batching), the codebooks and codes not at all
    stats = Memory.open(on_ray).stats()
    assert stats["rows"] == 240 and stats["index_settings"]["layout"].startswith("ivfpq")


def test_a_build_killed_after_embedding_resumes_and_encodes_on_workers(
    ray_instance: None,
    tiny_model_dir: Path,
    tiny_data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    import jiyi.memory.sharded as sharded

    out = tmp_path / "mem"
    argv = build_argv(tiny_model_dir, tiny_data_dir / "train.csv", out, "--engine", "ray",
                      "--workers", "2")  # fmt: skip
    real = sharded.build_from_shards

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # as a kill between the embedding and the index would

    monkeypatch.setattr(sharded, "build_from_shards", killed)
    assert main(argv) == 130  # "interrupted"
    assert not out.exists(), "no half-made memory"
    work = tmp_path / ".mem.ray-vectors"
    assert len(list((work / "vectors").glob("part-*.parquet"))) == 1  # 240 rows: one shard
    capfd.readouterr()
    monkeypatch.setattr(sharded, "build_from_shards", real)
    assert main(argv) == 0
    err = capfd.readouterr().err
    assert "1 finished shards skipped" in err
    encoded = [line for line in err.splitlines() if "on a Ray worker" in line]
    assert len(encoded) == 4 and "(30 rows)" in "".join(encoded)  # 70 + 70 + 70 + 30
    assert not work.exists() and len(Memory.open(out)) == 240
