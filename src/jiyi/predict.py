"""Inference: batched by length, input order preserved; the Python API `jiyi.load(run_dir)`.

>>> clf = jiyi.load("runs/sentiment")
>>> clf.predict(["a quietly moving film"])
[{'label': 'fresh', 'score': 0.97, 'probabilities': {'fresh': 0.97, 'rotten': 0.03}}]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch

from jiyi import runs
from jiyi.calibrate import Calibration, probabilities
from jiyi.compress.trim_hooks import warn_unknown_rate
from jiyi.data.collate import encode, pad_batch, sorted_batches
from jiyi.runs import read_meta
from jiyi.unpadded import enable as enable_unpadded
from jiyi.unpadded import unpadding


@torch.inference_mode()
def forward_logits(
    model: Any,
    enc: Any,
    *,
    pad_id: int,
    batch_size: int,
    indices: list[list[int]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw logits for the texts of `enc`, batched by length; returns (row indices, logits (n, C)).

    `indices` restricts the work to given batches (a process's share under distributed eval).
    """
    was_training = model.training
    model.eval()
    batches = indices if indices is not None else sorted_batches(enc.lengths, batch_size)
    device = next(model.parameters()).device
    rows: list[int] = []
    out: list[np.ndarray] = []
    try:
        for batch in batches:
            inputs = {k: v.to(device) for k, v in pad_batch(enc, batch, pad_id).items()}
            with unpadding():  # encoders `jiyi.unpadded.enable`d skip the padding
                out.append(model(**inputs).logits.float().cpu().numpy())  # (B, C)
            rows.extend(batch)
    finally:
        if was_training:
            model.train()
    n_labels = model.config.num_labels
    logits = np.concatenate(out) if out else np.zeros((0, n_labels), dtype=np.float32)
    return np.asarray(rows, dtype=np.int64), logits


def forward_probs(
    model: Any,
    enc: Any,
    *,
    pad_id: int,
    batch_size: int,
    multilabel: bool,
    indices: list[list[int]] | None = None,
    calibration: Calibration | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities for the texts of `enc`, batched by length; returns (row indices, probs (n, C)).

    `indices` restricts the work to given batches (a process's share under distributed eval);
    `calibration` (`jiyi.calibrate`) maps the logits first (None: the model's own probabilities).
    """
    rows, logits = forward_logits(model, enc, pad_id=pad_id, batch_size=batch_size, indices=indices)
    return rows, probabilities(logits, multilabel, calibration)


class Classifier:
    """A fine-tuned model folder (or run directory) ready to predict."""

    def __init__(
        self,
        path: str | Path,
        *,
        batch_size: int = 64,
        threads: int | None = None,
        max_batch_tokens: int | None = None,
    ):
        from jiyi.models import load_classifier

        model_dir = runs.model_dir(path)
        if threads:
            torch.set_num_threads(threads)
        self.model_dir = model_dir
        self.model, self.tokenizer = load_classifier(model_dir)
        # forward passes on real tokens only, where the encoder is BERT-shaped (jiyi.unpadded)
        self.unpadded = enable_unpadded(self.model)
        self.meta = read_meta(model_dir)
        self.multilabel = self.model.config.problem_type == "multi_label_classification"
        id2label = self.model.config.id2label
        self.labels = [str(id2label[i]) for i in range(len(id2label))]
        self.thresholds = np.asarray(self.meta.get("thresholds", [0.5] * len(self.labels)))
        # jiyi.json's "calibration" (fitted by `jiyi train` / `jiyi calibrate`); None: none
        self.calibration = Calibration.from_meta(self.meta, len(self.labels))
        self.max_length = int(
            self.meta.get("max_length", min(self.tokenizer.model_max_length, 512))
        )
        self.truncation = self.meta.get("truncation", "head+tail")
        self.batch_size = batch_size
        # None: forward passes of batch_size texts; N: also at most N padded tokens a pass
        self.max_batch_tokens = max_batch_tokens

    def predict_proba(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        """(N, C) probabilities in input order, calibrated when the run stores a calibration."""
        enc = self._encode(texts, pairs)
        rows, probs = forward_probs(
            self.model,
            enc,
            pad_id=self.tokenizer.pad_token_id or 0,
            batch_size=self.batch_size,
            multilabel=self.multilabel,
            indices=sorted_batches(enc.lengths, self.batch_size, self.max_batch_tokens),
            calibration=self.calibration,
        )
        ordered = np.empty_like(probs)
        ordered[rows] = probs
        return ordered

    def logits(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        """(N, C) raw logits (before any calibration) in input order."""
        enc = self._encode(texts, pairs)
        rows, logits = forward_logits(
            self.model,
            enc,
            pad_id=self.tokenizer.pad_token_id or 0,
            batch_size=self.batch_size,
            indices=sorted_batches(enc.lengths, self.batch_size, self.max_batch_tokens),
        )
        ordered = np.empty_like(logits)
        ordered[rows] = logits
        return ordered

    def probabilities(self, logits: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """`logits` (from `logits`) -> (N, C) probabilities, with or without the calibration."""
        cal = self.calibration if calibrated else None
        return probabilities(logits, self.multilabel, cal)

    def _encode(self, texts: list[str], pairs: list[str] | None) -> Any:
        enc = encode(self.tokenizer, list(texts), pairs, self.max_length, self.truncation)
        warn_unknown_rate(self.tokenizer, enc, self.model_dir)  # a trimmed vocabulary's [UNK]s
        return enc

    @overload
    def predict(self, texts: str, pairs: str | None = None) -> dict[str, Any]: ...
    @overload
    def predict(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None
    ) -> list[dict[str, Any]]: ...
    def predict(
        self, texts: str | Sequence[str], pairs: str | Sequence[str] | None = None
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """One dict per text: `label` (a list for multilabel), `score`, `probabilities`; a single
        string (and pair) gives its one dict: `predict("a fun film")` -> {"label": ...}."""
        if isinstance(texts, str):
            if pairs is not None and not isinstance(pairs, str):
                raise TypeError("predict(text, pair): with one text, the pair is one string too")
            return self.predict([texts], None if pairs is None else [pairs])[0]
        if isinstance(pairs, str):
            raise TypeError("predict(texts, pairs): with a list of texts, pairs is a list too")
        probs = self.predict_proba(list(texts), None if pairs is None else list(pairs))
        return [self._row(p) for p in probs]

    def _row(self, p: np.ndarray) -> dict[str, Any]:
        probabilities = {label: round(float(x), 6) for label, x in zip(self.labels, p, strict=True)}
        if self.multilabel:
            chosen = [
                label for label, x, t in zip(self.labels, p, self.thresholds, strict=True) if x >= t
            ]
            return {
                "label": chosen,
                "score": float(max(p)) if len(p) else 0.0,
                "probabilities": probabilities,
            }
        best = int(np.argmax(p))
        return {
            "label": self.labels[best],
            "score": round(float(p[best]), 6),
            "probabilities": probabilities,
        }


def load(path: str | Path, **kwargs: Any) -> Classifier:
    """Load a run directory or a model folder for prediction: `jiyi.load("runs/x").predict([...])`."""
    return Classifier(path, **kwargs)
