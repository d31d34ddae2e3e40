"""IVF-PQ indexes whose inverted lists live on disk, built shard by shard (`--index ivfpq`).

FAISS's recipe for indexes larger than RAM (its `contrib.ondisk.merge_ondisk`, as autofaiss
uses it): train the coarse quantizer (k-means cells) and the product quantizer once on a
sample, encode each shard of vectors into a small index file of its own (one shard in memory
at a time; shards can be encoded on other machines), then merge the shards' inverted lists
into one `index.ivfdata` file that queries read through a read-only mmap.

Files inside a snapshot folder (`jiyi.memory.store`), never modified once renamed into place:

    trained.faiss   the empty trained index (cells + PQ codebooks): compaction and rows added
                    later are encoded with it
    index.faiss     the index, pointing at index.ivfdata (found beside it, wherever the memory
                    folder moves)
    index.ivfdata   the inverted lists: each cell's slots and PQ codes

Rows added after the snapshot go to an in-RAM delta index with the same codebooks; forgotten
rows are excluded by a selector until a compaction re-encodes the live rows. Candidates
(`refine` x k of them) are re-scored with the stored vectors, so scores are exact cosines.

>>> writer = IvfpqWriter(folder, final=snapshot, dim=384, n_rows=10_000_000, params={})
>>> writer.train(sample)                         # (S, 384) float32 unit vectors
>>> for vectors, slots in shards:                # one shard in memory at a time
...     writer.add_shard(vectors, slots)
>>> writer.merge()                               # index.faiss + index.ivfdata in folder
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.errors import JiyiError
from jiyi.memory.index import SMALL_BATCH, faiss_module, fitting_vectors, sample_rows
from jiyi.memory.rowstore import snapshot_slots

# nlist 0 = 4·sqrt(N) cells; pq_m 0 = dim / 4 sub-quantizers (96 bytes a vector at 384-d);
# nprobe 0 = tuned at build time to target_recall (recall@10 against exact search)
DEFAULTS = {
    "nlist": 0,
    "pq_m": 0,
    "pq_bits": 8,
    "nprobe": 0,
    "refine": 32,  # x k candidates re-scored: recall@10 0.94 where 8 gave 0.83 (RESULTS.md)
    "target_recall": 0.95,
    "shard_rows": 100_000,
    "recall_queries": 1000,
}
FILES = ("trained.faiss", "index.faiss", "index.ivfdata")
EXACT_COLUMNS = 4096  # stored vectors scored at a time by exact_neighbours
EXACT_BLOCK = 16384  # (query, candidate) pairs re-scored at a time: 2 x 25 MB gathered at 384-d
TRAIN_POINTS_PER_CELL = 64  # k-means sample: this many points per cell (faiss wants >= 39)


def resolve_params(params: dict[str, Any] | None, n_rows: int, dim: int) -> dict[str, Any]:
    """Settings with the automatic ones chosen for `n_rows` vectors of `dim` dimensions.

    >>> resolve_params({}, 1_000_000, 384)["nlist"], resolve_params({}, 1_000_000, 384)["pq_m"]
    (4000, 96)
    """
    p = {**DEFAULTS, **{k: v for k, v in (params or {}).items() if v is not None}}
    n = max(int(n_rows), 1)
    nlist = int(p["nlist"]) or round(4 * math.sqrt(n))
    p["nlist"] = max(1, min(nlist, n // 39 or 1))  # k-means wants ~39 points per cell
    m = int(p["pq_m"]) or max(1, dim // 4)
    if dim % m:
        raise JiyiError(f"--pq-m {m}: must divide the vectors' dimension {dim}.")
    p["pq_m"] = m
    # fewer than 39 points per PQ centroid train badly (and faiss warns): fewer bits when small
    p["pq_bits"] = max(1, min(int(p["pq_bits"]), int(math.log2(max(n / 39, 2)))))
    for key in ("refine", "shard_rows", "recall_queries"):
        if int(p[key]) < 1:
            raise JiyiError(f"--{key.replace('_', '-')} {p[key]}: must be at least 1.")
    if not 0 < float(p["target_recall"]) <= 1:
        raise JiyiError(f"--target-recall {p['target_recall']}: must be in (0, 1].")
    return p


def training_rows(params: dict[str, Any], n_rows: int) -> int:
    """Rows to train on: enough for the k-means cells and the PQ centroids, at most all."""
    cells = TRAIN_POINTS_PER_CELL * int(params["nlist"])
    return min(n_rows, max(cells, 39 * 2 ** int(params["pq_bits"])))


@contextlib.contextmanager
def quiet_stdout(to_stderr: bool = True) -> Iterator[None]:
    """FAISS's on-disk lists print notices ("resizing ...") with C printf: send them to stderr
    (or nowhere), so `jiyi memory query` keeps stdout for its JSON lines."""
    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    saved = os.dup(1)
    target = os.dup(2) if to_stderr else os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(target, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(target)


def train(sample: np.ndarray, dim: int, params: dict[str, Any]) -> bytes:
    """The empty trained IVF-PQ index (serialized) for unit vectors, inner product."""
    faiss = faiss_module()
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    if sample.ndim != 2 or sample.shape[1] != dim or len(sample) == 0:
        raise JiyiError(f"--index ivfpq: needs a sample of {dim}-d vectors to train on.")
    nlist = max(1, min(int(params["nlist"]), len(sample)))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(
        quantizer,
        dim,
        nlist,
        int(params["pq_m"]),
        int(params["pq_bits"]),
        faiss.METRIC_INNER_PRODUCT,
    )
    index.cp.max_points_per_centroid = TRAIN_POINTS_PER_CELL
    # PQ k-means on 4-d sub-vectors runs off BLAS: 40 points a centroid and 10 iterations
    # train 96 sub-quantizers ~10x faster than faiss's 256 and 25, at the same recall@10
    # (0.937 against 0.944 at nprobe 64 of 256, 100k clustered vectors)
    index.pq.cp.max_points_per_centroid = 40
    index.pq.cp.niter = 10
    index.train(sample)
    return bytes(faiss.serialize_index(index))


def encode_shard(trained: bytes, vectors: np.ndarray, slots: np.ndarray, path: Path) -> int:
    """Encode one shard with the trained codebooks into its own index file (an independent
    task: a Ray worker can run it on another machine); returns the vectors written."""
    faiss = faiss_module()
    index = faiss.deserialize_index(np.frombuffer(trained, dtype=np.uint8))
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index.add_with_ids(vectors, np.ascontiguousarray(slots, dtype=np.int64))
    tmp = path.with_name(f".{path.name}.tmp")  # whole or absent: a killed worker leaves no shard
    faiss.write_index(index, str(tmp))
    os.replace(tmp, path)
    return len(vectors)


def merge(trained: bytes, shard_paths: list[Path], folder: Path, final: Path) -> int:
    """Merge the shards' inverted lists into folder/index.ivfdata and write folder/index.faiss
    (recording final/index.ivfdata, where the folder will be renamed to). Returns ntotal."""
    faiss = faiss_module()
    from faiss.contrib.ondisk import merge_ondisk

    index = faiss.deserialize_index(np.frombuffer(trained, dtype=np.uint8))
    with quiet_stdout():
        merge_ondisk(index, [str(p) for p in shard_paths], str(folder / "index.ivfdata"))
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
    lists.filename = str(final / "index.ivfdata")  # read back without a "moved" notice
    faiss.write_index(index, str(folder / "index.faiss"))
    return int(index.ntotal)


class IvfpqWriter:
    """Write trained.faiss, index.faiss and index.ivfdata into `folder`, shard by shard: the
    API a distributed engine feeds. Memory: one shard plus the codebooks."""

    def __init__(
        self,
        folder: Path,
        *,
        final: Path,
        dim: int,
        n_rows: int,
        params: dict[str, Any] | None = None,
        trained: bytes | None = None,
    ):
        self.folder, self.final, self.dim = Path(folder), Path(final), dim
        self.params = resolve_params(params, n_rows, dim)
        self.trained = trained
        self.shards: list[Path] = []
        self.work = self.folder / ".shards"

    def train(self, sample: np.ndarray) -> None:
        self.trained = train(sample, self.dim, self.params)

    def shard_path(self, i: int) -> Path:
        """Where shard i's index file goes (`encode_shard` there, then `add_shard_file`)."""
        self.work.mkdir(parents=True, exist_ok=True)
        return self.work / f"shard-{i:05d}.faiss"

    def add_shard(self, vectors: np.ndarray, slots: np.ndarray | list[int]) -> Path:
        """Encode a shard now; returns its file (merged and removed by `merge`)."""
        if self.trained is None:
            raise JiyiError("--index ivfpq: train the index (IvfpqWriter.train) before adding.")
        path = self.shard_path(len(self.shards))
        encode_shard(self.trained, vectors, np.asarray(slots), path)
        self.shards.append(path)
        return path

    def add_shard_file(self, path: Path) -> None:
        """Merge a shard encoded elsewhere with `encode_shard` (same trained bytes), in order."""
        if not Path(path).is_file():
            raise JiyiError(f"--index ivfpq: the encoded shard {path} is missing.")
        self.shards.append(Path(path))

    def merge(self) -> int:
        """Write the on-disk index; returns the vectors in it."""
        if self.trained is None:
            raise JiyiError("--index ivfpq: nothing trained, nothing to merge.")
        (self.folder / "trained.faiss").write_bytes(self.trained)
        n = merge(self.trained, self.shards, self.folder, self.final) if self.shards else 0
        shutil.rmtree(self.work, ignore_errors=True)
        return n


class OnDiskIndex:
    """An IVF-PQ index over int64 slots: the snapshot's lists on disk (mmap, read-only), rows
    added since in a delta index in RAM, forgotten slots excluded. Same methods as
    `jiyi.memory.index.VectorIndex`; `vectors_of(slots)` re-scores candidates exactly."""

    kind = "ivfpq"

    def __init__(self, dim: int, trained: bytes, disk: Any, params: dict[str, Any]):
        faiss = faiss_module()
        self.dim, self.trained, self.disk, self.params = dim, trained, disk, params
        self.delta = faiss.deserialize_index(np.frombuffer(trained, dtype=np.uint8))
        self.delta.set_direct_map_type(faiss.DirectMap.Hashtable)  # remove_ids by slot
        self.excluded: set[int] = set()
        self._selector: Any = None
        self.vectors_of: Callable[[np.ndarray], np.ndarray] | None = None

    @classmethod
    def open(cls, folder: Path, dim: int, params: dict[str, Any]) -> OnDiskIndex:
        """The index a snapshot folder holds (index.faiss absent: no rows on disk yet)."""
        faiss = faiss_module()
        trained = (folder / "trained.faiss").read_bytes()
        disk = None
        if (folder / "index.faiss").is_file():
            flags = faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY
            with quiet_stdout(to_stderr=False):  # a moved folder: faiss says so on stdout
                disk = faiss.read_index(str(folder / "index.faiss"), flags)
        return cls(dim, trained, disk, params)

    @classmethod
    def in_memory(
        cls, vectors: np.ndarray, slots: np.ndarray, dim: int, params: dict[str, Any]
    ) -> OnDiskIndex:
        """Trained on `vectors` and holding them in RAM, nothing on disk yet (a memory whose
        rows were all forgotten, then added again: the next compaction writes the files)."""
        params = resolve_params(params, len(vectors), dim)
        sample = sample_rows(vectors, training_rows(params, len(vectors)))
        index = cls(dim, train(sample, dim, params), None, params)
        index.add(vectors, slots)
        return index

    @property
    def ntotal(self) -> int:
        return int(self.delta.ntotal) + (int(self.disk.ntotal) if self.disk is not None else 0)

    def add(self, vectors: np.ndarray, slots: np.ndarray | list[int]) -> None:
        vectors = fitting_vectors(vectors, self.dim)
        if len(vectors):
            self.delta.add_with_ids(vectors, np.asarray(slots, dtype=np.int64))

    def remove(self, slots: list[int]) -> None:
        """Forget slots: deleted from the delta, excluded from the read-only lists on disk."""
        if not slots:
            return
        self.delta.remove_ids(np.asarray(slots, dtype=np.int64))
        self.excluded.update(int(s) for s in slots)
        self._selector = None

    def exclude(self, slots: set[int]) -> None:
        self.excluded = set(slots)
        self._selector = None

    def search(
        self, queries: np.ndarray, k: int, *, nprobe: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, slots), each (Q, k), best first; slot -1 and score -inf past the end."""
        faiss = faiss_module()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise JiyiError(
                f"query vectors of shape {tuple(queries.shape)} do not fit this memory: it holds "
                f"{self.dim}-dimensional vectors."
            )
        if k < 1:
            raise JiyiError(f"-k {k}: must be at least 1.")
        params = faiss.SearchParametersIVF()
        nlist = int(self.delta.nlist)
        params.nprobe = max(1, min(int(nprobe or self.params.get("nprobe") or nlist), nlist))
        if self.excluded:
            if self._selector is None:
                batch = faiss.IDSelectorBatch(np.asarray(sorted(self.excluded), dtype=np.int64))
                self._selector = (batch, faiss.IDSelectorNot(batch))  # keep `batch` alive
            params.sel = self._selector[1]
        fetch = k * int(self.params.get("refine", 1)) if self.vectors_of else k
        parts = [p for p in (self.disk, self.delta) if p is not None and p.ntotal]
        threads = faiss.omp_get_max_threads()
        few = len(queries) < SMALL_BATCH and threads > 1
        if few:  # OpenMP start-up costs more than a single query's search
            faiss.omp_set_num_threads(1)
        try:
            found = [p.search(queries, min(fetch, p.ntotal), params=params) for p in parts]
        finally:
            if few:
                faiss.omp_set_num_threads(threads)
        if not found:
            return _pad(np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0)), k)
        scores = np.concatenate([f[0] for f in found], axis=1)  # (Q, C)
        slots = np.concatenate([f[1] for f in found], axis=1).astype(np.int64)  # (Q, C)
        if self.vectors_of is not None:
            scores = self._exact(queries, slots)
        scores = np.where(slots < 0, -np.inf, scores).astype(np.float32)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (Q, <=k)
        best = np.take_along_axis(scores, order, axis=1)
        return _pad(best, np.take_along_axis(slots, order, axis=1), k)

    def _exact(self, queries: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Cosines of each query with its candidates, read from the stored vectors."""
        assert self.vectors_of is not None
        valid = slots >= 0
        unique, where = np.unique(slots[valid], return_inverse=True)
        vectors = np.asarray(self.vectors_of(unique), dtype=np.float32)  # (U, D)
        out = np.full(slots.shape, -np.inf, dtype=np.float32)
        rows, cols = np.nonzero(valid)  # row-major, as slots[valid] and `where`
        # in blocks of pairs: 1000 queries x 352 candidates x 384-d gathered at once took 1.1 GB
        for s in range(0, len(rows), EXACT_BLOCK):
            r, c, w = (
                rows[s : s + EXACT_BLOCK],
                cols[s : s + EXACT_BLOCK],
                where[s : s + EXACT_BLOCK],
            )
            out[r, c] = np.einsum("nd,nd->n", vectors[w], queries[r])  # (n,)
        return out

    def to_files(
        self, folder: Path, final: Path, live: Iterable[tuple[np.ndarray, np.ndarray]]
    ) -> None:
        """Re-encode the live (vectors, slots) shards into a new snapshot folder (compaction)."""
        writer = IvfpqWriter(
            folder, final=final, dim=self.dim, n_rows=1, params=self.params, trained=self.trained
        )
        for vectors, slots in live:
            writer.add_shard(vectors, slots)
        writer.merge()


def _pad(scores: np.ndarray, slots: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if scores.shape[1] < k:
        pad = ((0, 0), (0, k - scores.shape[1]))
        scores = np.pad(scores, pad, constant_values=-np.inf)
        slots = np.pad(slots, pad, constant_values=-1)
    return scores.astype(np.float32), slots.astype(np.int64)


def exact_neighbours(
    queries: np.ndarray,
    shards: Iterable[tuple[np.ndarray, np.ndarray]],
    k: int,
    skip: np.ndarray | None = None,
) -> np.ndarray:
    """Slots (Q, k) of the exact top-k by inner product, streaming over (vectors, slots)
    shards (one in memory at a time); `skip[q]` is a slot query q may not return (itself)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(queries), k), -1, dtype=np.int64)
    # a shard is scored EXACT_COLUMNS vectors at a time: 1,000 queries against a whole shard of
    # 100,000 took ~2.4 GB of scores, ids and partition indices; a block takes ~60 MB
    blocks = (
        (np.asarray(v[i : i + EXACT_COLUMNS], np.float32), np.asarray(s[i : i + EXACT_COLUMNS]))
        for v, s in shards
        for i in range(0, len(s), EXACT_COLUMNS)
    )
    for vectors, slots in blocks:
        scores = queries @ vectors.T  # (Q, n)
        slots = slots.astype(np.int64, copy=False)
        if skip is not None:
            scores[slots[None, :] == skip[:, None]] = -np.inf
        all_s = np.concatenate([best_s, scores], axis=1)  # (Q, k + n)
        all_i = np.concatenate([best_i, np.broadcast_to(slots, scores.shape)], axis=1)
        top = np.argpartition(-all_s, min(k, all_s.shape[1] - 1), axis=1)[:, :k]
        best_s = np.take_along_axis(all_s, top, axis=1)
        best_i = np.take_along_axis(all_i, top, axis=1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.where(
        np.take_along_axis(best_s, order, axis=1) > -np.inf,
        np.take_along_axis(best_i, order, axis=1),
        -1,
    )


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true neighbours (-1 = none) that `found` holds."""
    hits = total = 0
    for f, t in zip(found, truth, strict=True):
        t = set(t[t >= 0].tolist())
        hits += len(t & set(f.tolist()))
        total += len(t)
    return hits / total if total else 1.0


def tune_nprobe(
    index: OnDiskIndex,
    queries: np.ndarray,
    truth: np.ndarray,
    *,
    target: float,
    skip: np.ndarray | None = None,
    fixed: int | None = None,
) -> dict[str, Any]:
    """The fewest cells per query (1, 2, 4, ... nlist) whose recall@k reaches `target`.

    Returns {"nprobe", "recall", "target_reached", "curve": {nprobe: recall}}; k = truth's
    width. With `skip`, each query's own slot is dropped from its results first.
    """
    k = truth.shape[1]
    nlist = int(index.delta.nlist)
    tried = sorted({min(2**i, nlist) for i in range(int(math.log2(nlist)) + 2)})
    if fixed:  # --nprobe given: measured, not tuned
        tried = [max(1, min(int(fixed), nlist))]
    curve: dict[int, float] = {}
    for nprobe in tried:
        _, found = index.search(queries, k + (skip is not None), nprobe=nprobe)
        if skip is not None:
            found = np.array(
                [[s for s in row if s != own][:k] for row, own in zip(found, skip, strict=True)]
            )
        curve[nprobe] = round(recall_at(found, truth), 4)
        if curve[nprobe] >= target:
            break
    nprobe = next((n for n, r in curve.items() if r >= target), max(curve, key=curve.get))
    return {
        "nprobe": nprobe,
        "recall": curve[nprobe],
        "target_reached": curve[nprobe] >= target,
        "curve": {str(n): r for n, r in curve.items()},
    }


def snapshot_shards(folder: Path, shard_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(vectors, slots) of a snapshot folder, `shard_rows` at a time, read from its files."""
    slots = snapshot_slots(folder)
    vectors = np.load(folder / "vectors.npy", mmap_mode="r")  # (N, D), never all in RAM
    for start in range(0, len(slots), shard_rows):
        stop = start + shard_rows
        yield np.asarray(vectors[start:stop], dtype=np.float32), np.asarray(slots[start:stop])


def snapshot_rows(folder: Path, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (n, D), slots (n,)) of rows [start, stop) of a snapshot folder: what a worker
    that encodes one shard reads (`encode_shards_here` shows the loop it replaces)."""
    vectors = np.load(folder / "vectors.npy", mmap_mode="r")  # (N, D)
    slots = np.asarray(snapshot_slots(folder)[start:stop])
    return np.asarray(vectors[start:stop], dtype=np.float32), slots


# encode(writer, folder, ranges, say): rows [start, stop) of ranges[i] encoded with
# writer.trained into writer.shard_path(i), then added in order with writer.add_shard_file
# (`encode_shards_here`; jiyi.scale.ivfpq runs the same on Ray workers)
ShardEncoder = Callable[["IvfpqWriter", Path, list[tuple[int, int]], Callable[[str], None]], None]


def encode_shards_here(
    writer: IvfpqWriter, folder: Path, ranges: list[tuple[int, int]], say: Callable[[str], None]
) -> None:
    """Encode a snapshot folder's shards in this process, one in memory at a time."""
    assert writer.trained is not None
    for i, (start, stop) in enumerate(ranges):
        vectors, slots = snapshot_rows(folder, start, stop)
        encode_shard(writer.trained, vectors, slots, writer.shard_path(i))
        writer.add_shard_file(writer.shard_path(i))
        say(f"ivfpq: encoded shard {i + 1} ({stop - start} rows)")


def shard_ranges(n_rows: int, shard_rows: int) -> list[tuple[int, int]]:
    """[(0, 100), (100, 200), (200, 240)] for 240 rows in shards of 100."""
    return [(start, min(start + shard_rows, n_rows)) for start in range(0, n_rows, shard_rows)]


def build_index(
    folder: Path,
    final: Path,
    dim: int,
    params: dict[str, Any] | None,
    *,
    trained: bytes | None = None,
    queries: np.ndarray | None = None,
    on_progress: Callable[[str], None] | None = None,
    encode: ShardEncoder | None = None,
) -> dict[str, Any]:
    """Write the on-disk index of a snapshot folder from its vectors.npy, shard by shard, and
    tune nprobe: recall@10 against exact search on held-out `queries`, or (none given) on
    `recall_queries` stored rows each left out of its own results. Returns the settings to
    record (nlist, pq_m, pq_bits, nprobe, recall, ...). With `trained`, the codebooks are kept
    (a compaction) and nprobe is not re-tuned. `encode` encodes the shards elsewhere (Ray
    workers); the default encodes them here."""
    say = on_progress or (lambda message: None)
    vectors = np.load(folder / "vectors.npy", mmap_mode="r")  # (N, D)
    n = len(vectors)
    p = resolve_params(params, n, dim)
    writer = IvfpqWriter(folder, final=final, dim=dim, n_rows=n, params=p, trained=trained)
    if trained is None and n:
        sample = sample_rows(vectors, training_rows(p, n))
        say(f"ivfpq: training {p['nlist']} cells and {p['pq_m']}x{p['pq_bits']}-bit PQ on "
            f"{len(sample)} rows")  # fmt: skip
        writer.train(sample)
    elif trained is None:
        return p  # no rows: the first compaction with rows trains
    (encode or encode_shards_here)(writer, folder, shard_ranges(n, int(p["shard_rows"])), say)
    writer.merge()
    if trained is not None or n == 0:
        return p
    index = OnDiskIndex.open(folder, dim, p)
    all_slots = np.asarray(snapshot_slots(folder))
    index.vectors_of = lambda s: np.asarray(vectors[np.searchsorted(all_slots, s)])
    skip = None
    if queries is None:  # leave-one-out: stored rows, each may not find itself
        picked = np.sort(
            np.random.default_rng(0).choice(n, size=min(n, int(p["recall_queries"])), replace=False)
        )
        queries, skip = np.asarray(vectors[picked], dtype=np.float32), all_slots[picked]
    k = min(10, n - (skip is not None)) or 1
    truth = exact_neighbours(queries, snapshot_shards(folder, int(p["shard_rows"])), k, skip)
    tuned = tune_nprobe(
        index, queries, truth, target=float(p["target_recall"]), skip=skip, fixed=p["nprobe"]
    )
    say(f"ivfpq: nprobe {tuned['nprobe']} gives recall@{k} {tuned['recall']} "
        f"(target {p['target_recall']})")  # fmt: skip
    return {
        **p,
        "nprobe": tuned["nprobe"],
        "recall": tuned["recall"],
        "recall_k": k,
        "recall_curve": tuned["curve"],
        "recall_queries_used": len(queries),
        "recall_held_out": skip is None,
        "target_reached": tuned["target_reached"],
    }


def describe(manifest: dict[str, Any], folder: Path) -> dict[str, Any]:
    """What `memory stats` says of the index: its layout and settings (ivfpq: the measured
    recall and the size of its on-disk lists)."""
    params = dict(manifest.get("index_params", {}))
    if manifest.get("index") != "ivfpq":
        return {"layout": "in RAM (rebuilt or loaded whole on open)", **params}
    lists = folder / "index.ivfdata"
    return {
        "layout": "ivfpq: inverted lists on disk (index.ivfdata, mmap), PQ codes, exact re-scoring",
        **{k: params.get(k) for k in ("nlist", "pq_m", "pq_bits", "nprobe", "refine")},
        **{k: params.get(k) for k in ("recall", "recall_k", "target_recall", "target_reached")},
        "recall_queries": params.get("recall_queries_used"),
        "ivfdata_bytes": lists.stat().st_size if lists.is_file() else 0,
    }
