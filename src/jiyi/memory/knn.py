"""A non-parametric memory: texts embedded by an encoder, kept in a FAISS index and a durable
row store, that a classifier can consult and learn into without a gradient step.

>>> mem = Memory.build("runs/faq", "minilm", questions, payload=[{"answer": a} for a in answers])
>>> mem = Memory.open("runs/faq")
>>> mem.add(["do you ship to Canada?"], payload=[{"answer": "Yes, in 5-8 days."}])
['45']
>>> mem.query(["shipping to canada"], k=1)[0][0]["payload"]["answer"]
'Yes, in 5-8 days.'
>>> mem.forget(["45"])

The memory records the fingerprint of the model that made its vectors (weights, vocabulary,
pooling, layers, max length) and refuses to embed queries with any other. Files and durability:
see `jiyi.memory.store`.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.data.readers import label_sort_key
from jiyi.errors import JiyiError
from jiyi.io import atomic_directory
from jiyi.memory.index import VectorIndex, unit_rows
from jiyi.memory.ondisk import describe
from jiyi.memory.rowstore import row_store_layout
from jiyi.memory.sharded import FORMAT, normal_label, prepare
from jiyi.memory.store import MANIFEST, State, Store

COMPACT_MIN_ROWS = 10_000  # the log is folded into a new snapshot past max(this, 25% of rows)
HNSW_REBUILD_DEAD = 0.10  # an HNSW graph is rebuilt when this share of its slots is forgotten


class Memory:
    """An open memory directory. Reads never lock; `add` and `forget` take the writer lock, catch
    up with other writers, append one fsync'ed log record, and return only once it is durable."""

    def __init__(self, path: str | os.PathLike, *, model: str | None = None):
        self.path = Path(path)
        self.store = Store(self.path)
        self.manifest = self.store.manifest()
        if self.manifest.get("format") != FORMAT:
            raise JiyiError(f"{self.path}: memory format {self.manifest.get('format')} is unknown.")
        self.model_override = model
        self._encoder: Any = None
        self.state: State = self.store.load()
        self.index: VectorIndex | None = None
        self._index_generation = -1

    # ---- construction ----------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike, *, model: str | None = None) -> Memory:
        """Open an existing memory; `model` overrides where its encoder is loaded from (it must
        still have the recorded fingerprint)."""
        if not Path(path).is_dir():
            raise JiyiError(f"{path}: no such memory directory.")
        return cls(path, model=model)

    @classmethod
    def build(
        cls,
        path: str | os.PathLike,
        model: str,
        texts: Sequence[str],
        *,
        labels: Sequence[Any] | None = None,
        payload: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        vectors: np.ndarray | None = None,
        task: str = "classification",
        pooling: str = "mean",
        layers: str = "-1",
        max_length: int = 512,
        batch_size: int = 64,
        index: str = "auto",
        index_params: dict[str, Any] | None = None,
        overwrite: bool = False,
        on_progress: Any = None,
        prompts: dict[str, str | None] | None = None,
    ) -> Memory:
        """Embed `texts` (or take `vectors`) into a new memory at `path`, written whole into a
        temporary folder and renamed into place, so a killed build leaves nothing half-made.

        Rows are embedded with the model's passage prompt and queries will be with its query
        prompt (`jiyi.prompts`; "passage: " / "query: " for e5); `prompts` overrides either
        ({"passage": "", "query": None} turns the row prompt off, keeps the model's query one).
        The prompts are recorded in memory.json and in the fingerprint."""
        path = Path(path)
        encoder, manifest = prepare(
            path, model, n_rows=len(texts), payload=payload, task=task, pooling=pooling,
            layers=layers, max_length=max_length, batch_size=batch_size, index=index,
            index_params=index_params, overwrite=overwrite, prompts=prompts,
        )  # fmt: skip
        with atomic_directory(path) as tmp:
            Store(tmp).create(manifest)
            mem = cls(tmp)
            mem._encoder = encoder
            chunk = 10_000
            for start in range(0, len(texts), chunk):
                part = slice(start, start + chunk)
                mem._add_rows(
                    mem.state,
                    texts[part],
                    labels[part] if labels is not None else None,
                    payload[part] if payload is not None else None,
                    ids[part] if ids is not None else None,
                    vectors[part] if vectors is not None else None,
                    durable=False,  # the folder appears whole or not at all
                )
                if on_progress is not None:
                    on_progress(min(start + chunk, len(texts)))
            state = mem.state
            index_bytes, tuned = None, {}
            if manifest["index"] not in ("flat", "ivfpq") and len(state.rows):
                index_bytes = mem._new_index(
                    state.rows.vectors(), np.asarray(state.rows.slots)
                ).to_bytes()
            files = None
            if manifest["index"] == "ivfpq":  # written shard by shard from the snapshot's files
                files = mem._ivfpq_files(build=True, out=tuned, on_progress=on_progress)
            mem.store.write_snapshot(
                state, index_bytes=index_bytes, keep_dead=False, index_files=files
            )
            if tuned:
                mem.store.update_manifest(index_params=tuned)
        opened = cls(path)
        opened._encoder = encoder
        return opened

    # ---- the encoder -----------------------------------------------------------------------

    @property
    def encoder(self) -> Any:
        """The encoder that made the vectors, loaded on first use and checked by fingerprint."""
        if self._encoder is None:
            from jiyi.inspect.embeddings import load_encoder, model_fingerprint

            m = self.manifest
            name = self.model_override or m["model"]
            encoder = load_encoder(name, "--model")
            found = model_fingerprint(
                encoder.path,
                m["pooling"],
                m["layers"],
                True,
                max_length=m["max_length"],
                prompts=m.get("prompts"),
            )
            if found != m["fingerprint"]:
                raise JiyiError(
                    f"{self.path}: the memory was built with another model (fingerprint "
                    f"{m['fingerprint'][:12]}, {name} has {found[:12]}); its vectors would not "
                    "be comparable. Query it with the model it was built with, or rebuild it with "
                    "`jiyi memory build`."
                )
            self._encoder = encoder
        return self._encoder

    def embed(
        self, texts: Sequence[str], role: str = "query", prompt: str | None = None
    ) -> np.ndarray:
        """(N, D) unit vectors of `texts`, made the way the memory's vectors were: as queries
        (the default) or as rows (`role="passage"`), each with the memory's prompt for that role
        unless `prompt` overrides it."""
        from jiyi.inspect.embeddings import embed_texts

        m = self.manifest
        if prompt is None:
            prompt = m.get("prompts", {}).get(role, "")
        return embed_texts(
            self.encoder,
            list(texts),
            pooling=m["pooling"],
            layers=m["layers"],
            normalize=True,
            batch_size=int(m.get("batch_size", 64)),
            max_length=int(m["max_length"]),
            prompt=prompt,
        )

    # ---- writing ---------------------------------------------------------------------------

    def add(
        self,
        texts: Sequence[str],
        *,
        labels: Sequence[Any] | None = None,
        payload: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        vectors: np.ndarray | None = None,
    ) -> list[str]:
        """Add rows (all or none: one log record); returns their ids once durable."""
        with self.store.writer_lock():
            self._catch_up()
            new_ids = self._add_rows(self.state, texts, labels, payload, ids, vectors)
            self._maybe_compact()
        return new_ids

    def forget(self, ids: Sequence[str], *, compact: bool = True) -> int:
        """Remove rows by id; with `compact` (the default) their texts, labels, payloads and
        vectors are erased from disk at once (a new snapshot), not only hidden."""
        ids = [str(i) for i in ids]
        if not ids:
            raise JiyiError("memory forget: name at least one id.")
        with self.store.writer_lock():
            self._catch_up()
            unknown = [i for i in ids if i not in self.state.rows.position]
            if unknown:
                shown = ", ".join(map(repr, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
                raise JiyiError(
                    f"{self.path}: no row with id {shown}; `jiyi memory query` shows ids. "
                    "Nothing was forgotten."
                )
            ids = list(dict.fromkeys(ids))
            self.store.append(self.state, {"op": "forget", "ids": ids}, None)
            slots = self.state.rows.forget(ids)
            if self.index is not None:
                self.index.remove(slots)
            if compact:
                self._compact()
        return len(ids)

    def compact(self) -> None:
        """Fold the log into a new snapshot and drop forgotten rows from disk."""
        with self.store.writer_lock():
            self._catch_up()
            self._compact()

    def _add_rows(
        self,
        state: State,
        texts: Sequence[str],
        labels: Sequence[Any] | None,
        payload: Sequence[dict[str, Any] | None] | None,
        ids: Sequence[str] | None,
        vectors: np.ndarray | None,
        *,
        durable: bool = True,
    ) -> list[str]:
        n = len(texts)
        if n == 0:
            raise JiyiError("memory add: no rows to add.")
        for name, seq in (("labels", labels), ("payload", payload), ("ids", ids)):
            if seq is not None and len(seq) != n:
                raise JiyiError(f"memory add: {len(seq)} {name} for {n} texts; give one each.")
        task = self.manifest["task"]
        labels = [normal_label(task, x) for x in labels] if labels is not None else [None] * n
        payload = list(payload) if payload is not None else [None] * n
        rows = state.rows
        if ids is None:
            new_ids = [str(state.next_auto_id + i) for i in range(n)]
            while any(i in rows.position for i in new_ids):  # user ids may look like numbers
                state.next_auto_id += n
                new_ids = [str(state.next_auto_id + i) for i in range(n)]
            next_auto = state.next_auto_id + n
        else:
            new_ids = [str(i) for i in ids]
            next_auto = state.next_auto_id
            if any(not i.strip() for i in new_ids):
                raise JiyiError("memory add: an id is empty; give every row an id, or none.")
            dupes = [i for i, c in Counter(new_ids).items() if c > 1]
            taken = [i for i in new_ids if i in rows.position]
            if dupes or taken:
                which = (dupes or taken)[0]
                why = "twice in the input" if dupes else "already in the memory"
                raise JiyiError(
                    f"memory add: id {which!r} is {why}; ids must be unique (forget the old "
                    "row first to replace it). Nothing was added."
                )
        if vectors is None:
            vectors = self.embed(texts, role="passage")
        vectors = np.asarray(vectors, dtype=np.float32)
        dim = int(self.manifest["dim"])
        if vectors.ndim != 2 or vectors.shape != (n, dim):
            raise JiyiError(
                f"memory add: vectors of shape {tuple(vectors.shape)}; this memory holds "
                f"{dim}-dimensional vectors, one per text ({n}, {dim})."
            )
        vectors = unit_rows(vectors, "memory add")
        slots = list(range(state.next_slot, state.next_slot + n))
        header = {
            "op": "add",
            "slots": slots,
            "ids": new_ids,
            "texts": list(texts),
            "labels": labels,
            "payloads": payload,
            "dim": dim,
            "next_auto_id": next_auto,
        }
        if durable:
            self.store.append(state, header, vectors)
        rows.append(header, vectors)
        state.next_slot += n
        state.next_auto_id = next_auto
        if self.index is not None and self._index_generation == state.generation:
            self.index.add(vectors, slots)
        return new_ids

    def _maybe_compact(self) -> None:
        state = self.state
        logged = len(state.rows.slots) - state.rows.snapshot_rows
        if logged > max(COMPACT_MIN_ROWS, state.rows.snapshot_rows // 4):
            self._compact()

    def _compact(self) -> None:
        state = self.state
        kind = self.manifest["index"]
        keep_dead = False
        index_bytes = None
        if kind == "ivfpq":  # re-encoded from the new snapshot's live vectors, shard by shard
            tuned: dict[str, Any] = {}  # trained (and tuned) here when no snapshot was yet
            build = not (self._snapshot() / "trained.faiss").is_file()
            files = self._ivfpq_files(build=build, out=tuned)
            self.state = self.store.write_snapshot(
                state, index_bytes=None, keep_dead=False, index_files=files
            )
            if build and tuned:
                self.manifest = self.store.update_manifest(index_params=tuned)
            self.index, self._index_generation = None, -1
            return
        if kind != "flat" and len(state.rows):
            index = self._ensure_index()
            dead = state.snapshot_dead | state.rows.dead
            if kind == "hnsw" and dead:
                if len(dead) > HNSW_REBUILD_DEAD * max(index.ntotal, 1):
                    live = state.rows.live()  # a graph cannot delete: rebuild it without them
                    index = self._new_index(
                        state.rows.vectors()[live], np.asarray(state.rows.slots)[live]
                    )
                    state.snapshot_dead = set()
                else:
                    keep_dead = True
            index_bytes = index.to_bytes() if index.ntotal else None
            self.index = index
        self.state = self.store.write_snapshot(state, index_bytes=index_bytes, keep_dead=keep_dead)
        self._index_generation = self.state.generation
        if self.index is not None:
            self.index.exclude(self.state.snapshot_dead)

    # ---- reading ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Catch up with what other processes have written (cheap when nothing changed)."""
        if self.store.changed(self.state):
            self._catch_up()

    def _catch_up(self) -> None:
        state = self.state
        if self.store.generation() != state.generation:
            self.state = self.store.load()
            self.index, self._index_generation = None, -1
            return
        for header, vectors in self.store.replay(state):
            if self.index is None or self._index_generation != state.generation:
                continue
            if header["op"] == "add":
                self.index.add(vectors, header["slots"])
            else:
                self.index.remove(header["slots"])

    def _snapshot(self) -> Path:
        return self.store.snapshot_dir(self.state.generation)

    def _ivfpq_files(self, *, build: bool, out: dict | None = None, on_progress: Any = None) -> Any:
        """index_files for write_snapshot: train and tune (`build`, settings into `out`) or
        re-encode with this snapshot's codebooks."""
        from jiyi.memory.ondisk import build_index

        dim, params = int(self.manifest["dim"]), self.manifest.get("index_params", {})
        trained = None if build else (self._snapshot() / "trained.faiss").read_bytes()
        say = (lambda m: print(m, file=sys.stderr)) if on_progress is not None else None

        def write(folder: Path, final: Path) -> None:
            tuned = build_index(folder, final, dim, params, trained=trained, on_progress=say)
            if out is not None:
                out.update(tuned)

        return write

    def _vectors_of(self, slots: np.ndarray) -> np.ndarray:
        """The stored vectors of these slots (read from disk for an ivfpq memory)."""
        rows = self.state.rows
        return rows.vectors_at(np.searchsorted(rows.slots, slots))

    def _new_index(self, vectors: np.ndarray, slots: np.ndarray) -> Any:
        kind = self.manifest["index"]
        params = self.manifest.get("index_params", {})
        if kind == "ivfpq":
            from jiyi.memory.ondisk import OnDiskIndex

            dim = int(self.manifest["dim"])
            return OnDiskIndex.in_memory(vectors, slots, dim, params)
        index = VectorIndex.create(kind, int(self.manifest["dim"]), train=vectors, params=params)
        index.add(vectors, slots)
        return index

    def _ensure_index(self) -> Any:
        state = self.state
        if self.index is not None and self._index_generation == state.generation:
            return self.index
        kind = self.manifest["index"]
        rows = state.rows
        saved = self.store.snapshot_dir(state.generation) / "index.faiss"
        dim, params, index = int(self.manifest["dim"]), self.manifest["index_params"], None
        if kind == "ivfpq" and (saved.parent / "trained.faiss").is_file():
            from jiyi.memory.ondisk import OnDiskIndex

            index = OnDiskIndex.open(saved.parent, dim, params)
        elif kind not in ("flat", "ivfpq") and saved.is_file():
            index = VectorIndex.from_bytes(kind, dim, saved.read_bytes(), params)
        if index is not None:
            index.exclude(state.snapshot_dead)
            tail = np.arange(rows.snapshot_rows, len(rows.slots))  # rows replayed from the log
            if len(tail):
                index.add(rows.vectors_at(tail), rows.slots[tail])
            index.remove([s for s in rows.dead if s not in state.snapshot_dead])
        else:
            live = rows.live()
            if kind in ("ivf", "ivfpq") and len(live) == 0:
                raise JiyiError(f"{self.path}: the memory is empty; add rows first.")
            index = self._new_index(rows.vectors()[live], np.asarray(rows.slots, np.int64)[live])
        if kind == "ivfpq":
            index.vectors_of = self._vectors_of  # candidates re-scored with the stored vectors
        self.index, self._index_generation = index, state.generation
        return index

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores (Q, k), row positions (Q, k)) for unit query vectors; -1 where fewer."""
        self.refresh()
        index = self._ensure_index()
        scores, slots = index.search(vectors, k)
        all_slots = self.state.rows.slots
        positions = np.searchsorted(all_slots, slots)
        positions = np.where(slots < 0, -1, np.minimum(positions, len(all_slots) - 1))
        return scores, positions

    def query(
        self, texts: Sequence[str], k: int = 5, *, prompt: str | None = None
    ) -> list[list[dict[str, Any]]]:
        """For each text, its k nearest rows best first: id, score (cosine), text, label,
        payload. `prompt` overrides the memory's query prompt."""
        texts = list(texts)
        if not texts or any(not str(t).strip() for t in texts):
            raise JiyiError("memory query: a query is empty; give some text.")
        if len(self) == 0:
            raise JiyiError(f"{self.path}: the memory is empty; add rows first.")
        vectors = self.embed(texts) if prompt is None else self.embed(texts, prompt=prompt)
        scores, positions = self.search(vectors, k)
        return [self.hits(s, p) for s, p in zip(scores, positions, strict=True)]

    def hits(self, scores: np.ndarray, positions: np.ndarray) -> list[dict[str, Any]]:
        rows = self.state.rows
        return [
            {
                "id": rows.ids[p],
                "score": round(float(s), 6),
                "text": rows.texts[p],
                "label": rows.labels[p],
                "payload": rows.payloads[p],
            }
            for s, p in zip(scores, positions, strict=True)
            if p >= 0
        ]

    def __len__(self) -> int:
        return len(self.state.rows)

    def label_counts(self) -> Counter[str]:
        """How many live rows carry each label (a multilabel row counts for each of its own)."""
        rows = self.state.rows
        labels = list(rows.labels)  # the column whole: a snapshot's is read once, not by row
        return Counter(name for i in rows.live() for name in label_names(labels[i]))

    def labels(self) -> list[str]:
        """Label names of the live rows, sorted as training sorts them."""
        return sorted(self.label_counts(), key=label_sort_key)

    def labelled(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(vectors (N, D), targets (N, C) 0/1, label names) of the live labelled rows."""
        rows = self.state.rows
        names = self.labels()
        column = {n: j for j, n in enumerate(names)}
        labels = list(rows.labels)
        keep = [i for i in rows.live() if labels[i] is not None]
        targets = np.zeros((len(keep), len(names)), dtype=np.float32)
        for r, i in enumerate(keep):
            for name in label_names(labels[i]):
                targets[r, column[name]] = 1.0
        return rows.vectors_at(np.asarray(keep, dtype=np.int64)), targets, names

    def label_matrix(self, names: Sequence[str]) -> np.ndarray:
        """(rows incl. dead, C) 0/1 targets aligned with row positions (unlabelled: zeros)."""
        rows = self.state.rows
        column = {n: j for j, n in enumerate(names)}
        out = np.zeros((len(rows.slots), len(names)), dtype=np.float32)
        for i, label in enumerate(rows.labels):
            for name in label_names(label):
                if name in column:
                    out[i, column[name]] = 1.0
        return out

    def stats(self) -> dict[str, Any]:
        rows = self.state.rows
        live = rows.live()
        labels = list(rows.labels)
        disk = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        m = self.manifest
        log = self.store.log_path(self.state.generation)
        return {
            "path": str(self.path),
            "rows": len(live),
            "labels": dict(sorted(self.label_counts().items())),
            "unlabelled": int(sum(labels[i] is None for i in live)),
            "dim": m["dim"],
            "index": m["index"],
            "index_settings": describe(m, self._snapshot()),
            "row_store": row_store_layout(self._snapshot(), m["index"]),
            "model": m["model"],
            "fingerprint": m["fingerprint"][:16],
            "pooling": m["pooling"],
            "layers": m["layers"],
            "prompts": m.get("prompts", {}),
            "task": m["task"],
            "payload_columns": m.get("payload_columns", []),
            "generation": self.state.generation,
            "log_bytes": log.stat().st_size if log.exists() else 0,
            "disk_bytes": disk,
            "tuned": {k: m[k] for k in ("knn", "classifier", "ask") if k in m},
        }

    def update_manifest(self, **changes: Any) -> None:
        """Save tuned settings into memory.json (under the writer lock)."""
        with self.store.writer_lock():
            self.manifest = self.store.update_manifest(**changes)


def label_names(label: Any) -> list[str]:
    """A stored label as a list of names: "pos" -> ["pos"], ["a", "b"] as is, None -> []."""
    if label is None:
        return []
    return label if isinstance(label, list) else [label]


def warn(message: str) -> None:
    if os.environ.get("JIYI_QUIET") != "1":
        print(message, file=sys.stderr)


__all__ = ["MANIFEST", "Memory"]
