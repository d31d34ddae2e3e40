"""The shards of a Ray job: its input files, their rows cut into shards, the manifest, and the
reading and writing of one shard.

The input is a file, a folder (its .txt/.csv/.tsv/.jsonl/.parquet files) or a glob, read in
sorted order with jiyi's own readers (`jiyi.inspect.vector_io.TextStream`), so the texts and ids
are exactly those `--engine local` reads. Each file's rows are cut into shards of `shard_rows`;
a shard never spans two files. Row numbers count from 0 over all the files in order:

>>> plan = plan_shards([Path("a.csv"), Path("b.parquet")], "text", 10)  # 25 rows, then 10
>>> [(s["name"], s["input"], s["start"], s["stop"], s["first_row"]) for s in plan["shards"]]
[('part-00000.parquet', 0, 0, 10, 0), ('part-00001.parquet', 0, 10, 20, 10),
 ('part-00002.parquet', 0, 20, 25, 20), ('part-00003.parquet', 1, 0, 10, 25)]

A shard is written whole (`jiyi.io.atomic_write_bytes`) or not at all, so a shard file with the
planned number of rows is finished, and a re-run skips it.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError
from jiyi.inspect.vector_io import INPUT_TYPES, TextChunk, TextStream

MANIFEST = "manifest.json"
FORMAT = 1
KINDS = ".txt, .csv, .tsv, .jsonl or .parquet"


def input_files(spec: str, flag: str = "--input") -> list[Path]:
    """A file, a folder (its data files, not its hidden ones) or a glob -> sorted files."""
    if spec == "-":
        raise JiyiError(
            f"{flag} -: --engine ray reads files (a file, a folder or a glob), not standard "
            "input; write the texts to a file first."
        )
    path = Path(spec).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and not p.name.startswith((".", "_")) and p.suffix.lower() in INPUT_TYPES
        )
        if not files:
            raise JiyiError(f"{flag} {spec}: the folder holds no {KINDS} file.")
    elif glob.has_magic(spec):
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(spec), recursive=True))
        files = [p for p in files if p.is_file()]
        if not files:
            raise JiyiError(f"{flag} {spec}: the pattern matches no file.")
    else:
        raise JiyiError(f"{flag} {spec}: no such file, folder or glob.")
    for file in files:
        if file.suffix.lower() not in INPUT_TYPES:
            raise JiyiError(f"{flag} {file}: unknown file type {file.suffix!r}; give {KINDS}.")
    return files


def count_rows(path: Path, text_column: str) -> tuple[int, bool]:
    """(rows, whether the file has an `id` column), with every error `--engine local` gives
    (a missing column, a bad line, an empty file) raised before any worker starts."""
    stream = TextStream(path, text_column=text_column, chunk_size=65536)
    if stream.kind == "parquet":
        import pyarrow.parquet as pq

        first = next(iter(TextStream(path, text_column=text_column, chunk_size=1)), None)
        return pq.ParquetFile(path).metadata.num_rows, first is not None and first.ids is not None
    rows, has_ids = 0, False
    for chunk in stream:
        rows += len(chunk.texts)
        has_ids = chunk.ids is not None
    return rows, has_ids


def shard_name(i: int) -> str:
    return f"part-{i:05d}.parquet"


def plan_shards(files: list[Path], text_column: str, shard_rows: int) -> dict[str, Any]:
    """{"inputs": [{path, rows, bytes, mtime_ns}], "shards": [{name, input, start, stop,
    first_row}], "rows": total, "ids": every file has an `id` column}."""
    inputs: list[dict[str, Any]] = []
    shards: list[dict[str, Any]] = []
    with_ids: list[bool] = []
    total = 0
    for i, file in enumerate(files):
        rows, has_ids = count_rows(file, text_column)
        stat = file.stat()
        inputs.append(
            {"path": str(file.resolve()), "rows": rows, "bytes": stat.st_size,
             "mtime_ns": stat.st_mtime_ns}
        )  # fmt: skip
        with_ids.append(has_ids)
        for start in range(0, rows, shard_rows):
            stop = min(start + shard_rows, rows)
            shards.append(
                {"name": shard_name(len(shards)), "input": i, "start": start, "stop": stop,
                 "first_row": total + start}
            )  # fmt: skip
        total += rows
    if any(with_ids) and not all(with_ids):
        which = files[with_ids.index(True)], files[with_ids.index(False)]
        raise JiyiError(
            f"--input: {which[0]} has an id column but {which[1]} has none; give every file "
            "one, or none."
        )
    return {"inputs": inputs, "shards": shards, "rows": total, "ids": all(with_ids)}


def read_shard(path: str, text_column: str, start: int, stop: int, shard_rows: int) -> TextChunk:
    """Rows [start, stop) of one input file: texts, and ids (as text) when it has an id column.

    Parquet seeks to the row groups that hold them; the text formats are read from the top,
    chunk by chunk (`shard_rows` at a time), up to the shard's chunk."""
    stream = TextStream(path, text_column=text_column, chunk_size=shard_rows)
    if stream.kind == "parquet":
        chunk = _parquet_rows(Path(path), text_column, start, stop)
    else:
        chunk = next(
            (c for i, c in enumerate(stream) if i == start // shard_rows), TextChunk([], None)
        )
    if len(chunk.texts) != stop - start:
        raise JiyiError(
            f"--input {path}: has changed since the job was planned (rows {start}..{stop} are "
            "not there); run the command again with another --output folder."
        )
    ids = None if chunk.ids is None else [None if i is None else str(i) for i in chunk.ids]
    return TextChunk(chunk.texts, ids)


def _parquet_rows(path: Path, text_column: str, start: int, stop: int) -> TextChunk:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    wanted = [text_column, *(["id"] if "id" in pf.schema_arrow.names else [])]
    groups, offset, seen = [], 0, 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if seen + n > start and seen < stop:
            if not groups:
                offset = start - seen
            groups.append(g)
        seen += n
    table = pf.read_row_groups(groups, columns=wanted).slice(offset, stop - start)
    texts = [t or "" for t in table.column(text_column).to_pylist()]
    ids = table.column("id").to_pylist() if "id" in wanted else None
    return TextChunk(texts, ids)


def write_shard(out_dir: Path, name: str, table: Any) -> None:
    """Write a pyarrow table as one Parquet shard, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jiyi.io import atomic_write_bytes

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(out_dir / name, sink.getvalue().to_pybytes())


def finished(out_dir: Path, shard: dict[str, Any]) -> bool:
    """Whether the shard's file is there with its planned number of rows."""
    import pyarrow.parquet as pq

    try:
        rows = pq.ParquetFile(out_dir / shard["name"]).metadata.num_rows
    except (OSError, ValueError):  # missing, or not Parquet (arrow's errors subclass these)
        return False
    return rows == shard["stop"] - shard["start"]


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise JiyiError(f"{path}: not valid JSON ({e}); remove the folder and run again.") from None


def same_job(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys that decide the results and differ between two manifests ([] = same job)."""
    keys = ("format", "kind", "settings", "text_column", "shard_rows", "inputs")
    return [k for k in keys if old.get(k) != new.get(k)]


def read_output(out_dir: str | os.PathLike) -> Any:
    """A finished job's shards as one pyarrow Table in row order (the input's order).

    >>> table = read_output("out/vectors")   # columns row, [id,] vector | label, score, ...
    >>> vectors = np.asarray(table.column("vector").to_pylist(), dtype=np.float32)
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    manifest = read_manifest(out)
    if manifest is None:
        raise JiyiError(f"{out}: no {MANIFEST}; not the output of an --engine ray job.")
    if not manifest.get("complete"):
        raise JiyiError(f"{out}: the job has not finished; run its command again to finish it.")
    tables = [pq.read_table(out / s["name"]) for s in manifest["shards"]]
    if not tables:
        return pa.table({"row": pa.array([], pa.int64())})
    return pa.concat_tables(tables)
