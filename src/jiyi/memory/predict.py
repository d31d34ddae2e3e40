"""Predict with a memory: memory-only (`MemoryPredictor`) or kNN-augmented (`AugmentedPredictor`),
and the tuning both keep in memory.json.

The validation rows a memory was built (or tuned) with are kept in MEM_DIR/validation/ with their
vectors, so the settings can be re-chosen after rows are added, or for another fine-tuned run,
without the user passing the file again.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.errors import JiyiError
from jiyi.io import atomic_directory
from jiyi.memory.classify import (
    MemoryClassifier,
    extend_labels,
    knn_distribution,
    tune_augment,
)
from jiyi.memory.knn import Memory, label_names, warn

KMAX = 64
DEFAULT_AUGMENT = {"k": 16, "temperature": 0.05, "lambda": 0.5}
NEW_LABEL_ROWS = 50  # per label the model lacks, left out in turn when λ is tuned


# ---- validation rows kept in the memory ----------------------------------------------------


def save_validation(memory: Memory, texts: Sequence[str], labels: Sequence[Any]) -> None:
    """Keep validation texts, their labels (or expected ids for an FAQ) and vectors."""
    vectors = memory.embed(texts)
    with memory.store.writer_lock(), atomic_directory(memory.path / "validation") as tmp:
        rows = [{"text": t, "label": lab} for t, lab in zip(texts, labels, strict=True)]
        (tmp / "rows.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )
        np.save(tmp / "vectors.npy", vectors)


def load_validation(memory: Memory) -> tuple[list[str], list[Any], np.ndarray] | None:
    folder = memory.path / "validation"
    if not (folder / "vectors.npy").is_file():
        return None
    rows = [json.loads(line) for line in (folder / "rows.jsonl").read_text("utf-8").splitlines()]
    return [r["text"] for r in rows], [r["label"] for r in rows], np.load(folder / "vectors.npy")


def targets_for(labels: Sequence[Any], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(rows kept, (n, C) 0/1 targets) for labels that are in `names` (others are dropped)."""
    column = {n: j for j, n in enumerate(names)}
    keep, out = [], []
    for i, label in enumerate(labels):
        names_i = label if isinstance(label, list) else [label]
        if label is None or not all(n in column for n in names_i):
            continue
        row = np.zeros(len(names), dtype=np.float32)
        row[[column[n] for n in names_i]] = 1.0
        keep.append(i)
        out.append(row)
    return np.asarray(keep, dtype=np.int64), np.asarray(out).reshape(-1, len(names))


# ---- memory-only ---------------------------------------------------------------------------


def memory_classifier(
    memory: Memory, method: str = "auto", *, save: bool = True
) -> MemoryClassifier:
    """The memory's classifier: settings chosen once per memory version (they are re-chosen
    after rows are added or forgotten) and kept in memory.json; the head is refitted here."""
    memory.refresh()
    vectors, targets, names = memory.labelled()
    version = memory.state.seq
    saved = memory.manifest.get("classifier")
    if saved and saved.get("version") == version and method in ("auto", saved["method"]):
        clf = MemoryClassifier(
            saved["method"],
            float(saved["param"]),
            float(saved["temperature"]),
            names,
            saved.get("scores", {}),
            saved.get("evaluated_on", ""),
        )
        return clf.fit(vectors, targets)
    validation = None
    kept = load_validation(memory)
    if kept is not None:
        _, labels, val_vectors = kept
        rows, val_targets = targets_for(labels, names)
        if len(rows):
            validation = (val_vectors[rows], val_targets)
    clf = MemoryClassifier.select(vectors, targets, names, validation=validation, method=method)
    if save:
        record = {
            "version": version,
            "method": clf.method,
            "param": clf.param,
            "temperature": clf.temperature,
            "scores": clf.scores,
            "evaluated_on": clf.evaluated_on,
        }
        with contextlib.suppress(OSError):  # a read-only memory: choose again next time
            memory.update_manifest(classifier=record)
    return clf


class MemoryPredictor:
    """Classify texts from a memory's labelled rows alone."""

    def __init__(self, memory: Memory, method: str = "auto"):
        self.memory = memory
        self.classifier = memory_classifier(memory, method)
        self.labels = self.classifier.names
        self.multilabel = memory.manifest["task"] == "multilabel"

    def predict(self, texts: Sequence[str], *, neighbours: int = 0) -> list[dict[str, Any]]:
        mem, clf = self.memory, self.classifier
        query = mem.embed(texts)
        k = max(int(clf.param) if clf.method == "knn" else 0, neighbours, 1)
        scores, positions = mem.search(query, min(k, max(len(mem), 1)))
        y = mem.label_matrix(self.labels)[np.maximum(positions, 0)]
        y[positions < 0] = 0
        probs = clf.predict_proba(query, scores, y)
        return [
            _row(p, self.labels, self.multilabel, None) | _neighbours(mem, s, pos, neighbours, clf)
            for p, s, pos in zip(probs, scores, positions, strict=True)
        ]


# ---- kNN-augmented --------------------------------------------------------------------------


class AugmentedPredictor:
    """A fine-tuned classifier whose probabilities are mixed with its memory's neighbours'."""

    def __init__(self, classifier: Any, memory: Memory):
        self.clf, self.memory = classifier, memory
        self.labels = extend_labels(classifier.labels, memory.labels())
        self.multilabel = classifier.multilabel
        self.settings = augment_settings(classifier, memory)
        n_new = len(self.labels) - len(classifier.labels)
        self.thresholds = np.concatenate([classifier.thresholds, np.full(n_new, 0.5)])

    def model_probs(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        p = self.clf.predict_proba(list(texts), list(pairs) if pairs else None)
        return np.pad(p, ((0, 0), (0, len(self.labels) - p.shape[1])))

    def predict_proba(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None, *, neighbours: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probs (N, C), neighbour scores (N, K), neighbour positions (N, K)), K = the larger
        of the tuned k and `neighbours`."""
        s = self.settings
        mem = self.memory
        k = max(int(s["k"]), neighbours)
        scores, positions = mem.search(mem.embed(texts), min(k, max(len(mem), 1)))
        y = mem.label_matrix(self.labels)[np.maximum(positions, 0)]
        y[positions < 0] = 0
        knn = knn_distribution(scores, y, int(s["k"]), float(s["temperature"]))
        lam = float(s["lambda"])
        return lam * knn + (1 - lam) * self.model_probs(texts, pairs), scores, positions

    def predict(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None, *, neighbours: int = 0
    ) -> list[dict[str, Any]]:
        probs, scores, positions = self.predict_proba(texts, pairs, neighbours=neighbours)
        thresholds = self.thresholds if self.multilabel else None
        return [
            _row(p, self.labels, self.multilabel, thresholds)
            | _neighbours(self.memory, s, pos, neighbours, None, self.settings)
            for p, s, pos in zip(probs, scores, positions, strict=True)
        ]


def run_key(classifier: Any) -> str:
    from jiyi.inspect.embeddings import model_fingerprint

    return model_fingerprint(classifier.model_dir)[:16]


def augment_settings(classifier: Any, memory: Memory, *, retune: bool = False) -> dict[str, Any]:
    """k, temperature and λ for this run and memory: the saved ones while the memory is
    unchanged, else tuned again on the memory's validation rows (and saved), else the
    defaults with a warning.

    Validation rows often hold only labels the model knows, and a model that is right on all of
    them would tune λ to 0, which silences the labels only the memory has. So the memory's rows
    of such labels that no validation row has (up to NEW_LABEL_ROWS each) join the tuning too,
    each searched with itself left out."""
    key = run_key(classifier)
    saved = memory.manifest.get("knn", {}).get(key)
    kept = load_validation(memory)
    if saved and not retune and (saved.get("version") == memory.state.seq or kept is None):
        return saved  # tuned for this version of the memory (or nothing to tune on)
    labels = extend_labels(classifier.labels, memory.labels())
    rows = np.zeros(0, dtype=np.int64)
    if kept is not None:
        texts, val_labels, val_vectors = kept
        rows, targets = targets_for(val_labels, labels)
    if not len(rows):
        if saved:
            return saved
        warn(
            f"{memory.path}: no validation rows to tune k, temperature and λ for this run; using "
            f"k={DEFAULT_AUGMENT['k']}, temperature={DEFAULT_AUGMENT['temperature']}, "
            f"λ={DEFAULT_AUGMENT['lambda']}. Tune with `jiyi memory tune MEM --run RUN "
            "--validation FILE`."
        )
        return dict(DEFAULT_AUGMENT)
    k = min(KMAX, max(len(memory), 1))
    scores, positions = memory.search(val_vectors[rows], k)
    texts = [texts[i] for i in rows]
    shown = targets.sum(axis=0) > 0
    new_labels = [n for j, n in enumerate(labels) if j >= len(classifier.labels) and not shown[j]]
    extra = np.zeros(0, dtype=np.int64)
    if new_labels:  # validation rows cannot show these: add the memory's own rows, left out
        extra = new_label_rows(memory, new_labels)
        extra_scores, extra_positions = search_left_out(memory, extra, k)
        scores = np.concatenate([scores, extra_scores])
        positions = np.concatenate([positions, extra_positions])
        targets = np.concatenate([targets, memory.label_matrix(labels)[extra]])
        texts += [memory.state.rows.texts[p] for p in extra]
    y = memory.label_matrix(labels)[np.maximum(positions, 0)]
    y[positions < 0] = 0
    model = classifier.predict_proba(texts)
    model = np.pad(model, ((0, 0), (0, len(labels) - model.shape[1])))
    settings = tune_augment(model, scores, y, targets)
    settings |= {
        "memory_rows_left_out": len(extra),
        "run": str(classifier.model_dir),
        "version": memory.state.seq,
    }
    with contextlib.suppress(OSError):
        memory.update_manifest(knn={**memory.manifest.get("knn", {}), key: settings})
    return settings


def new_label_rows(memory: Memory, names: Sequence[str]) -> np.ndarray:
    """Positions of up to NEW_LABEL_ROWS live rows of each label in `names`, spread evenly
    over the rows of that label."""
    rows = memory.state.rows
    wanted: dict[str, list[int]] = {n: [] for n in names}
    for p in rows.live():
        for name in label_names(rows.labels[p]):
            if name in wanted:
                wanted[name].append(int(p))
    picked: set[int] = set()
    for found in wanted.values():
        spread = np.linspace(0, len(found) - 1, min(len(found), NEW_LABEL_ROWS)).round()
        picked.update(found[i] for i in spread.astype(np.int64))
    return np.asarray(sorted(picked), dtype=np.int64)


def search_left_out(memory: Memory, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top-k neighbours of the memory's rows at `positions`, each searched as a query and
    with itself left out: (scores (n, k), positions (n, k)), -1 where fewer."""
    texts = [memory.state.rows.texts[p] for p in positions]
    scores, found = memory.search(memory.embed(texts), min(k + 1, max(len(memory), 1)))
    out_s = np.zeros((len(positions), k), dtype=scores.dtype)
    out_p = np.full((len(positions), k), -1, dtype=found.dtype)
    for i, own in enumerate(positions):
        keep = found[i] != own
        s, f = scores[i][keep][:k], found[i][keep][:k]
        out_s[i, : len(s)], out_p[i, : len(f)] = s, f
    return out_s, out_p


# ---- output rows ---------------------------------------------------------------------------


def _row(
    p: np.ndarray, labels: Sequence[str], multilabel: bool, thresholds: np.ndarray | None
) -> dict[str, Any]:
    probabilities = {n: round(float(x), 6) for n, x in zip(labels, p, strict=True)}
    if multilabel:
        t = thresholds if thresholds is not None else np.full(len(labels), 0.5)
        chosen = [n for n, x, ti in zip(labels, p, t, strict=True) if x >= ti]
        return {"label": chosen, "score": round(float(p.max()), 6), "probabilities": probabilities}
    best = int(np.argmax(p))
    return {
        "label": labels[best],
        "score": round(float(p[best]), 6),
        "probabilities": probabilities,
    }


def _neighbours(
    memory: Memory,
    scores: np.ndarray,
    positions: np.ndarray,
    n: int,
    clf: MemoryClassifier | None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The neighbours that voted, with their softmax weights, when asked for."""
    if n <= 0:
        return {}
    temperature = settings["temperature"] if settings else clf.temperature if clf else 0.0
    temperature = temperature if temperature > 0 else DEFAULT_AUGMENT["temperature"]
    hits = memory.hits(scores[:n], positions[:n])
    s = np.array([h["score"] for h in hits], dtype=np.float64)
    w = np.exp((s - s.max()) / temperature) if len(s) else s
    w = w / w.sum() if len(s) else w
    return {
        "neighbours": [
            {"id": h["id"], "score": h["score"], "label": h["label"], "weight": round(float(x), 6)}
            for h, x in zip(hits, w, strict=True)
        ]
    }


def check_model_flag(memory: Memory, model: str | None) -> None:
    """`--model` given with a memory: it must be the model the memory was built with."""
    if model is None:
        return
    memory.model_override = model
    _ = memory.encoder  # loads and compares fingerprints


def is_classifier_run(path: str | Path) -> bool:
    """Whether `path` is a fine-tuned classification run (or its model folder)."""
    from jiyi.runs import model_dir, read_meta

    try:
        config = model_dir(path) / "config.json"
    except JiyiError:
        return False
    try:
        archs = json.loads(config.read_text("utf-8")).get("architectures") or []
    except ValueError:
        raise JiyiError(f"{config}: not valid JSON.") from None
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return True
    return isinstance(read_meta(config.parent).get("head"), dict)  # a pooled head (jiyi.pooled)
