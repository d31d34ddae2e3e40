"""The vector index of a memory: FAISS, inner product over unit vectors (= cosine similarity).

`flat` is exact search, `hnsw` a graph (fast queries, slow build, cannot delete: forgotten
slots are excluded with a selector), `ivf` inverted lists over k-means cells (fast build, needs
training data, deletes in place); `ivfpq` (`jiyi.memory.ondisk`) compressed codes whose inverted
lists live on disk, built shard by shard, for memories larger than RAM. Every index maps the store's int64 slots, so results name rows
whatever the index kind.

>>> index = VectorIndex.create("flat", dim=384)
>>> index.add(vectors, slots)
>>> scores, found = index.search(queries, k=10)  # (Q, k) each; found == -1 where none
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from jiyi.errors import JiyiError

KINDS = ("auto", "flat", "hnsw", "ivf", "ivfpq")  # ivfpq: jiyi.memory.ondisk
AUTO_FLAT_BELOW = 100_000  # rows; above it `auto` picks hnsw
SMALL_BATCH = 8  # queries; fewer are searched on one thread
# ef_search 256: recall@10 0.953 at 1.8 ms per query on 1M clustered 384-d vectors (96: 0.89);
# nlist 0 = 4·sqrt(N) cells, nprobe 0 = nlist / 32 (bench/bench_memory_scale.py, RESULTS.md)
DEFAULTS = {"hnsw_m": 32, "ef_construction": 80, "ef_search": 256, "nlist": 0, "nprobe": 0}


def faiss_module() -> Any:
    try:
        import faiss
    except ImportError:
        raise JiyiError("the memory needs faiss: pip install 'jiyi[memory]' (faiss-cpu).") from None
    return faiss


def unit_rows(vectors: np.ndarray, verb: str) -> np.ndarray:
    """(n, D) float32 rows scaled to length 1 (inner product = cosine); NaN or infinite values
    are refused, naming the `verb` that got them."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if not np.isfinite(vectors).all():
        raise JiyiError(f"{verb}: the vectors hold NaN or infinite values.")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def choose_kind(kind: str, n_rows: int) -> str:
    if kind not in KINDS:
        raise JiyiError(f"--index {kind!r}: choose one of {', '.join(KINDS)}.")
    if kind == "auto":
        return "flat" if n_rows < AUTO_FLAT_BELOW else "hnsw"
    return kind


class VectorIndex:
    """A FAISS index of unit vectors keyed by int64 slots, plus the slots to exclude."""

    def __init__(self, kind: str, dim: int, index: Any, params: dict[str, Any]):
        self.kind, self.dim, self.index, self.params = kind, dim, index, params
        self.excluded: set[int] = set()
        self._selector: Any = None

    @classmethod
    def create(
        cls,
        kind: str,
        dim: int,
        *,
        train: np.ndarray | None = None,
        params: dict[str, Any] | None = None,
    ) -> VectorIndex:
        """An empty index; `ivf` is trained on `train` (a sample of the vectors to come)."""
        faiss = faiss_module()
        params = {**DEFAULTS, **(params or {})}
        if kind == "flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        elif kind == "hnsw":
            base = faiss.IndexHNSWFlat(dim, int(params["hnsw_m"]), faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = int(params["ef_construction"])
            index = faiss.IndexIDMap2(base)
        elif kind == "ivf":
            if train is None or len(train) == 0:
                raise JiyiError("--index ivf: needs vectors to train its cells; add rows first.")
            nlist = int(params["nlist"]) or max(1, round(4 * math.sqrt(len(train))))
            nlist = max(1, min(nlist, len(train) // 39 or 1))  # faiss wants ~39 points per cell
            params["nlist"] = nlist
            quantizer = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            sample = sample_rows(train, 64 * nlist)  # k-means cost grows with sample x cells
            index.train(np.ascontiguousarray(sample, dtype=np.float32))
            index.nprobe = _nprobe(params)
            index.set_direct_map_type(faiss.DirectMap.Hashtable)  # remove_ids by slot
        else:
            raise JiyiError(f"--index {kind!r}: choose one of {', '.join(KINDS[1:])}.")
        return cls(kind, dim, index, params)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: np.ndarray, slots: np.ndarray | list[int]) -> None:
        vectors = fitting_vectors(vectors, self.dim)
        if len(vectors):
            self.index.add_with_ids(vectors, np.asarray(slots, dtype=np.int64))

    def remove(self, slots: list[int]) -> None:
        """Forget slots: deleted in place where FAISS can (flat, ivf), else excluded (hnsw)."""
        if not slots:
            return
        if self.kind == "hnsw":
            self.excluded.update(int(s) for s in slots)
            self._selector = None
        else:
            self.index.remove_ids(np.asarray(slots, dtype=np.int64))

    def exclude(self, slots: set[int]) -> None:
        self.excluded = set(slots)
        self._selector = None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, slots), each (Q, k), best first; slot -1 and score -inf where the
        index holds fewer than k live vectors."""
        faiss = faiss_module()
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise JiyiError(
                f"query vectors of shape {tuple(queries.shape)} do not fit this memory: it holds "
                f"{self.dim}-dimensional vectors."
            )
        if k < 1:
            raise JiyiError(f"-k {k}: must be at least 1.")
        if self.kind == "hnsw":
            search_params = faiss.SearchParametersHNSW()
            search_params.efSearch = max(int(self.params["ef_search"]), k)
        elif self.kind == "ivf":
            search_params = faiss.SearchParametersIVF()
            search_params.nprobe = _nprobe(self.params)
        else:
            search_params = faiss.SearchParameters()
        if self.excluded:
            if self._selector is None:
                batch = faiss.IDSelectorBatch(np.asarray(sorted(self.excluded), dtype=np.int64))
                self._selector = (batch, faiss.IDSelectorNot(batch))  # keep `batch` alive
            search_params.sel = self._selector[1]
        k_eff = min(k, max(self.ntotal, 1))
        threads = faiss.omp_get_max_threads()
        few = len(queries) < SMALL_BATCH and threads > 1
        if few:  # OpenMP start-up and spin-waits cost ~10 ms, 10x a single query's search
            faiss.omp_set_num_threads(1)
        try:
            scores, slots = self.index.search(queries, k_eff, params=search_params)
        finally:
            if few:
                faiss.omp_set_num_threads(threads)
        if k_eff < k:
            pad = ((0, 0), (0, k - k_eff))
            scores = np.pad(scores, pad, constant_values=-np.inf)
            slots = np.pad(slots, pad, constant_values=-1)
        scores = np.where(slots < 0, -np.inf, scores).astype(np.float32)
        return scores, slots

    def to_bytes(self) -> bytes:
        return bytes(faiss_module().serialize_index(self.index))

    @classmethod
    def from_bytes(cls, kind: str, dim: int, data: bytes, params: dict[str, Any]) -> VectorIndex:
        faiss = faiss_module()
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        params = {**DEFAULTS, **params}
        if kind == "ivf":
            params["nlist"] = int(index.nlist)
        return cls(kind, dim, index, params)


def _nprobe(params: dict[str, Any]) -> int:
    """Cells an IVF query visits: the setting, else nlist / 32 (at least 16), at most nlist."""
    nlist = int(params["nlist"])
    return max(1, min(int(params["nprobe"]) or max(16, nlist // 32), nlist))


def sample_rows(vectors: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n rows chosen at random, in file order (reads only those rows of a memmap), float32."""
    if len(vectors) <= n:
        return np.asarray(vectors, dtype=np.float32)
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), size=n, replace=False))
    return np.asarray(vectors[rows], dtype=np.float32)


def fitting_vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    """`vectors` as contiguous float32 rows of `dim` numbers, or a JiyiError saying the shapes."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise JiyiError(
            f"vectors of shape {tuple(vectors.shape)} do not fit this memory: it holds "
            f"{dim}-dimensional vectors."
        )
    return vectors
