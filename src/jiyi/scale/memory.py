"""`jiyi memory build --engine ray`: the rows' vectors made on Ray workers, and for
`--index ivfpq` the index shards encoded on Ray workers too, so the driver never holds all the
vectors.

    jiyi memory build minilm --data tickets.parquet --output mem --index ivfpq \\
        --engine ray --workers 4

1. embed: the texts go to a hidden folder beside --output (`.NAME.ray-vectors/`) and run as a
   `jiyi embed` job there (`jiyi.scale.jobs.run_job`): passage prompt, unit vectors, Parquet
   shards of 10,000 rows; a failed build run again skips the shards already written.
2. not ivfpq: the vectors are read back whole and `Memory.build` builds the memory as usual.
3. ivfpq (`jiyi.memory.sharded.build_from_shards`): the driver streams the shards into the new
   snapshot's vectors.npy (one shard in RAM), trains the coarse quantizer and PQ on a sample of
   it, then `EncodeWorker` actors encode each --shard-rows range of it into its own index file
   (`jiyi.memory.ondisk.encode_shard`), and the driver merges them into the on-disk lists
   (`IvfpqWriter.merge`) and tunes nprobe. The same vectors give the same files as a local
   build: same sample, same codebooks, same codes, same order.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.errors import JiyiError
from jiyi.scale.jobs import (
    MEMORY_SHARD_ROWS,
    actor_results,
    embed_job,
    output_vectors,
    ray_session,
    report_job,
    run_job,
)
from jiyi.scale.shards import read_manifest


def stage_texts(args: argparse.Namespace, texts: Sequence[str]) -> tuple[Path, Path]:
    """(the work folder beside --output, the Parquet file of the texts in it). The file is named
    by the texts' digest, so the same texts find the shards of an earlier, failed run."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jiyi.io import atomic_write_bytes

    out = Path(args.output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise JiyiError(
            f"--output {out}: exists and is not an empty folder; choose another or pass "
            "--overwrite to replace it."
        )
    work = out.parent / f".{out.name}.ray-vectors"
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    texts_file = work / "input" / f"texts-{digest}.parquet"
    if not texts_file.is_file():
        shutil.rmtree(work, ignore_errors=True)
        texts_file.parent.mkdir(parents=True)
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table({"text": pa.array(list(texts), pa.string())}), sink)
        atomic_write_bytes(texts_file, sink.getvalue().to_pybytes())
    return work, texts_file


def embed_rows(args: argparse.Namespace, work: Path, texts_file: Path) -> dict[str, Any]:
    """Run (or resume) the embed job of a memory's rows; returns its summary."""
    job = embed_job(args, str(work / "vectors"), role="passage", normalize=True)
    job |= {"text_column": "text", "shard_rows": MEMORY_SHARD_ROWS}
    summary = run_job(job, str(texts_file), args, restart_other=True)
    report_job(summary, "vectors")
    return summary


def memory_vectors_on_ray(args: argparse.Namespace, texts: Sequence[str]) -> np.ndarray:
    """(N, H) passage vectors of a memory's rows, made on Ray as `Memory.build` makes them
    (unit length, the model's passage prompt); the work folder is removed once done."""
    work, texts_file = stage_texts(args, texts)
    vectors = output_vectors(embed_rows(args, work, texts_file)["output"])
    shutil.rmtree(work)
    return vectors


def vector_shards(out_dir: str | Path) -> Iterator[np.ndarray]:
    """The (n_i, H) float32 vectors of a finished embed job, shard by shard in row order."""
    import pyarrow.parquet as pq

    out = Path(out_dir)
    manifest = read_manifest(out)
    if manifest is None or not manifest.get("complete"):
        raise JiyiError(f"{out}: not a finished --engine ray embed job.")
    for shard in manifest["shards"]:
        column = pq.read_table(out / shard["name"], columns=["vector"]).column("vector")
        column = column.combine_chunks()
        yield column.flatten().to_numpy().reshape(len(column), column.type.list_size)


def encode_on_ray(args: argparse.Namespace) -> Callable[..., None]:
    """A `jiyi.memory.ondisk.ShardEncoder` that encodes the shards on --workers `EncodeWorker`
    actors (in the Ray session already open), then hands the files to the writer in order."""

    def encode(writer: Any, folder: Path, ranges: list[tuple[int, int]], say: Any) -> None:
        from jiyi.scale.workers import EncodeWorker

        if not ranges:
            return
        paths = [writer.shard_path(i).resolve() for i in range(len(ranges))]
        items = [
            {"path": str(path), "start": start, "stop": stop}
            for path, (start, stop) in zip(paths, ranges, strict=True)
        ]
        job = {
            "trained": writer.trained,
            "folder": str(Path(folder).resolve()),
            "threads": args.cpus_per_worker,
        }
        for row in actor_results(EncodeWorker, job, items, args, gpus=0):
            say(
                f"ivfpq: encoded {row['name']} ({row['rows']} rows) on a Ray worker in "
                f"{row['seconds']:.1f} s"
            )
        for path in paths:
            writer.add_shard_file(path)

    return encode


def build_memory_on_ray(
    args: argparse.Namespace, texts: Sequence[str], settings: dict[str, Any]
) -> Any:
    """`jiyi memory build --engine ray`: the new `Memory` at --output. `settings` are
    `Memory.build`'s keyword arguments (labels, payload, ids, task, pooling, ..., prompts)."""
    from jiyi.memory.knn import Memory

    cpus = args.workers * args.cpus_per_worker
    work, texts_file = stage_texts(args, texts)
    if args.index != "ivfpq":
        vectors = output_vectors(embed_rows(args, work, texts_file)["output"])
        shutil.rmtree(work)
        return Memory.build(
            args.output, args.model, texts, vectors=vectors, index=args.index, **settings
        )
    from jiyi.memory.sharded import build_from_shards

    with ray_session(args.address, cpus) as startup:  # one Ray for embedding and encoding
        print(f"Ray ready in {startup:.1f} s", file=sys.stderr)
        summary = embed_rows(args, work, texts_file)
        started = time.perf_counter()
        build_from_shards(
            args.output,
            args.model,
            texts,
            shards=lambda: vector_shards(summary["output"]),
            encode=encode_on_ray(args),
            **settings,
        )
    print(f"ivfpq index built in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    shutil.rmtree(work)
    return Memory.open(args.output)
