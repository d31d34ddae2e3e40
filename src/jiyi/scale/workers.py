"""What runs on a Ray worker: `ShardWorker`, the callable class `Dataset.map_batches` builds once
per actor (so the model loads once per worker), and the runners it holds.

`EncodeWorker` encodes the shards of an ivfpq index (`jiyi memory build --index ivfpq`).

A runner turns one shard's texts into its result columns with jiyi's own code, so the numbers are
those of `--engine local`: `EmbedRunner` calls `jiyi.inspect.embeddings.embed_texts` (batches
sorted by length inside the shard), `PredictRunner` calls `jiyi.predict.Classifier.predict`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np


def shard_report(names: list[str], rows: list[int], seconds: list[float]) -> dict[str, np.ndarray]:
    """What a worker returns for a batch of shards: each shard's name, rows and seconds."""
    return {
        "name": np.asarray(names, dtype=object),
        "rows": np.asarray(rows, dtype=np.int64),
        "seconds": np.asarray(seconds, dtype=np.float64),
    }


class EmbedRunner:
    """texts -> {"vector": (N, H) float32 as a fixed-size list column}."""

    def __init__(self, job: dict[str, Any]):
        from jiyi.inspect.embeddings import load_encoder

        self.settings = job["settings"]
        self.encoder = load_encoder(self.settings["model"])
        self.model = self.encoder.model  # `ShardWorker` moves it to the worker's GPU

    def __call__(self, texts: list[str]) -> dict[str, Any]:
        import pyarrow as pa

        from jiyi.inspect.embeddings import embed_texts

        s = self.settings
        vectors = embed_texts(
            self.encoder,
            texts,
            pooling=s["pooling"],
            layers=s["layers"],
            normalize=s["normalize"],
            batch_size=s["batch_size"],
            max_length=s["max_length"],
            prompt=s["prompt"],
        )  # (N, H)
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))  # (N * H,)
        return {"vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])}


class PredictRunner:
    """texts -> {"label", "score", "probabilities"}: `jiyi predict`'s fields, the probabilities
    as a list in the order of the manifest's "labels"."""

    def __init__(self, job: dict[str, Any]):
        from jiyi.predict import load

        self.settings = job["settings"]
        self.classifier = load(self.settings["model"], batch_size=self.settings["batch_size"])
        self.model = self.classifier.model

    def __call__(self, texts: list[str]) -> dict[str, Any]:
        import pyarrow as pa

        labels = self.classifier.labels
        rows = self.classifier.predict(texts) if texts else []
        return {
            "label": pa.array([r["label"] for r in rows]),
            "score": pa.array([r["score"] for r in rows], pa.float64()),
            "probabilities": pa.array(
                [[r["probabilities"][x] for x in labels] for r in rows], pa.list_(pa.float64())
            ),
        }


class SummarizeRunner:
    """documents -> {"summary", "sentences" (the picks as JSON text), "n_sentences",
    "language"}: `jiyi.summarize.summarize` on the shard's documents, the encoder loaded once
    (a classifier run, which `summarize` loads itself, once a shard)."""

    def __init__(self, job: dict[str, Any]):
        from jiyi.inspect.embeddings import load_encoder
        from jiyi.summarize import RANKINGS, is_classifier

        self.settings = dict(job["settings"])
        ranking = self.settings["ranking"]
        assert ranking in RANKINGS
        by_classifier = ranking == "classifier" or (
            ranking == "auto" and is_classifier(self.settings["model"])
        )
        self.source: Any = self.settings["model"]
        self.model = None
        if not by_classifier:
            self.source = load_encoder(self.settings["model"])
            self.model = self.source.model  # `ShardWorker` moves it to the worker's GPU

    def __call__(self, texts: list[str]) -> dict[str, Any]:
        import json

        import pyarrow as pa

        from jiyi.summarize import summarize

        s = self.settings
        keys = ("sentences", "ratio", "max_words", "max_chars", "language", "mmr_lambda",
                "lead_bias", "ranking", "positive_label", "batch_size")  # fmt: skip
        results = summarize(self.source, texts, **{k: s[k] for k in keys}) if texts else []
        return {
            "summary": pa.array([r.summary for r in results], pa.string()),
            "sentences": pa.array(
                [json.dumps(r.to_dict()["sentences"], ensure_ascii=False) for r in results],
                pa.string(),
            ),
            "n_sentences": pa.array([r.n_sentences for r in results], pa.int64()),
            "language": pa.array([r.language for r in results], pa.string()),
        }


RUNNERS = {"embed": EmbedRunner, "predict": PredictRunner, "summarize": SummarizeRunner}


class ShardWorker:
    """One Ray actor: loads the model once (onto its GPU when it was given one), then reads,
    runs and writes whole shards.

    `__call__` takes a batch of shard descriptors (the manifest's "shards" entries, plus the
    input path) and returns, per shard, its name, rows and seconds.
    """

    def __init__(self, job: dict[str, Any]):
        import torch

        torch.set_num_threads(max(1, round(job["threads"])))
        self.job = job
        self.out_dir = Path(job["output"])
        self.runner = RUNNERS[job["kind"]](job)
        has_model = getattr(self.runner, "model", None) is not None
        if job["gpus"] > 0 and has_model and torch.cuda.is_available():  # Ray set the device
            self.runner.model.to("cuda")  # the forward passes follow the model's device

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import pyarrow as pa

        from jiyi.scale.shards import read_shard, write_shard

        names, rows, seconds = [], [], []
        for i in range(len(batch["name"])):
            started = time.perf_counter()
            start, stop = int(batch["start"][i]), int(batch["stop"][i])
            first = int(batch["first_row"][i])
            chunk = read_shard(
                str(batch["path"][i]), self.job["text_column"], start, stop, self.job["shard_rows"]
            )
            columns = {"row": pa.array(np.arange(first, first + stop - start, dtype=np.int64))}
            if chunk.ids is not None:
                columns["id"] = pa.array(chunk.ids, pa.string())
            columns |= self.runner(chunk.texts)
            write_shard(self.out_dir, str(batch["name"][i]), pa.table(columns))
            names.append(str(batch["name"][i]))
            rows.append(stop - start)
            seconds.append(time.perf_counter() - started)
        return shard_report(names, rows, seconds)


class EncodeWorker:
    """One Ray actor of `jiyi memory build --index ivfpq --engine ray`: encodes whole shards of a
    snapshot folder's vectors with the trained codebooks, each into its own index file
    (`jiyi.memory.ondisk.encode_shard`, written whole or not at all), for the driver to merge.

    `__call__` takes a batch of {index, path, start, stop} and returns, per shard, its name,
    rows and seconds.
    """

    def __init__(self, job: dict[str, Any]):
        from jiyi.memory.index import faiss_module

        faiss_module().omp_set_num_threads(max(1, round(job["threads"])))
        self.trained: bytes = job["trained"]
        self.folder = Path(job["folder"])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from jiyi.memory.ondisk import encode_shard, snapshot_rows

        names, rows, seconds = [], [], []
        for i in range(len(batch["path"])):
            started = time.perf_counter()
            start, stop = int(batch["start"][i]), int(batch["stop"][i])
            vectors, slots = snapshot_rows(self.folder, start, stop)  # (n, D), (n,)
            encode_shard(self.trained, vectors, slots, Path(str(batch["path"][i])))
            names.append(Path(str(batch["path"][i])).name)
            rows.append(stop - start)
            seconds.append(time.perf_counter() - started)
        return shard_report(names, rows, seconds)
