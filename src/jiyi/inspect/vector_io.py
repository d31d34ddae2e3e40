"""Streaming file I/O for `embed_file`: texts in, vectors out, one chunk at a time.

`TextStream` reads the texts (and an optional `id` column) of a .txt, .csv, .tsv, .jsonl or
.parquet file lazily in chunks of `chunk_size`, so memory never holds the whole input.
`VectorWriter` appends each chunk's vectors to a temporary `.npy` (its header rewritten with the
final row count) or Parquet file beside the output and renames it into place only when
complete; `abort()` removes it.
"""

from __future__ import annotations

import csv
import json
import os
import struct
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.errors import JiyiError

INPUT_TYPES = {".txt": "txt", ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl"}
INPUT_TYPES |= {".json": "jsonl", ".parquet": "parquet"}


@dataclass
class TextChunk:
    texts: list[str]
    ids: list[Any] | None  # the input's `id` column, None when it has none


class TextStream:
    """Texts of a .txt/.csv/.tsv/.jsonl/.parquet file in chunks of `chunk_size`, read lazily.

    .txt is one text per line (blank lines are skipped and counted in `blank_lines`); in the
    tables an empty or null text is embedded as "" so rows stay aligned with the input's rows.
    """

    def __init__(
        self, path: str | os.PathLike, *, text_column: str = "text", chunk_size: int = 10000
    ):
        self.path = Path(path)
        self.kind = INPUT_TYPES.get(self.path.suffix.lower(), "")
        if not self.kind:
            raise JiyiError(
                f"--input {path}: unknown file type {self.path.suffix or '(none)'!r}; embed reads "
                ".txt (one text per line), .csv, .tsv, .jsonl or .parquet."
            )
        if not self.path.is_file():
            raise JiyiError(f"--input {path}: no such file.")
        if chunk_size < 1:
            raise JiyiError(f"--chunk-size {chunk_size}: must be at least 1.")
        self.text_column, self.chunk_size = text_column, chunk_size
        self.blank_lines = 0
        self.rows = 0

    def __iter__(self) -> Iterator[TextChunk]:
        records = {"txt": self._txt, "csv": self._csv, "tsv": self._csv, "jsonl": self._jsonl}
        if self.kind == "parquet":
            yield from self._parquet()
        else:
            texts: list[str] = []
            ids: list[Any] = []
            for text, rid in records[self.kind]():
                texts.append(text)
                if rid is not _NO_ID:  # a file has an id column on every row or on none
                    ids.append(rid)
                if len(texts) == self.chunk_size:
                    yield TextChunk(texts, ids or None)
                    texts, ids = [], []
            if texts:
                yield TextChunk(texts, ids or None)
        if self.rows == 0:
            raise JiyiError(f"--input {self.path}: the file holds no texts.")

    def _missing(self, columns: Sequence[str]) -> JiyiError:
        return JiyiError(
            f'--input {self.path}: no column "{self.text_column}"; the file has '
            f"{', '.join(map(repr, columns))}. Pass --text-column NAME to use another."
        )

    def _lines(self, newline: str | None) -> Iterator[tuple[int, str]]:
        n = 0
        try:
            with open(self.path, encoding="utf-8-sig", newline=newline) as f:
                for n, line in enumerate(f, start=1):
                    yield n, line
        except UnicodeDecodeError as e:
            raise JiyiError(
                f"--input {self.path} after line {n}: not valid UTF-8 ({e.reason}); save the "
                "file as UTF-8."
            ) from None

    def _txt(self) -> Iterator[tuple[str, Any]]:
        for _, line in self._lines(None):
            text = line.rstrip("\n")
            if not text.strip():
                self.blank_lines += 1
                continue
            self.rows += 1
            yield text, _NO_ID

    def _csv(self) -> Iterator[tuple[str, Any]]:
        csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
        lines = (line for _, line in self._lines(""))
        reader = csv.reader(lines, delimiter="\t" if self.kind == "tsv" else ",")
        try:
            header = next(reader, None)
            if not header:
                raise JiyiError(f"--input {self.path}: the file is empty (no header line).")
            columns = [c.strip() for c in header]
            if self.text_column not in columns:
                raise self._missing(columns)
            col, id_col = columns.index(self.text_column), _index(columns, "id")
            for row in reader:
                if not row:
                    continue  # a blank line
                if len(row) != len(columns):
                    raise JiyiError(
                        f"--input {self.path} line {reader.line_num}: {len(row)} fields, but the "
                        f"header has {len(columns)}; quote fields that hold the delimiter."
                    )
                self.rows += 1
                yield row[col], (row[id_col] if id_col is not None else _NO_ID)
        except csv.Error as e:
            raise JiyiError(f"--input {self.path} line {reader.line_num}: {e}.") from None

    def _jsonl(self) -> Iterator[tuple[str, Any]]:
        has_id: bool | None = None  # decided by the first record: every row has an id, or none
        for n, line in self._lines(None):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise JiyiError(f"--input {self.path} line {n}: not valid JSON ({e}).") from None
            if not isinstance(record, dict):
                raise JiyiError(f"--input {self.path} line {n}: expected a JSON object.")
            if self.text_column not in record:
                raise JiyiError(
                    f'--input {self.path} line {n}: no key "{self.text_column}"; it has '
                    f"{', '.join(map(repr, record))}. Pass --text-column NAME to use another."
                )
            text = record[self.text_column]
            if text is not None and not isinstance(text, str):
                raise JiyiError(f'--input {self.path} line {n}: "{self.text_column}" is no string.')
            if has_id is None:
                has_id = "id" in record
            if has_id and "id" not in record:
                raise JiyiError(
                    f'--input {self.path} line {n}: no "id", but the first row has one.'
                )
            self.rows += 1
            yield text or "", (str(record["id"]) if has_id else _NO_ID)

    def _parquet(self) -> Iterator[TextChunk]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(self.path)
            columns = list(pf.schema_arrow.names)
            if self.text_column not in columns:
                raise self._missing(columns)
            text_type = pf.schema_arrow.field(self.text_column).type
            if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
                raise JiyiError(
                    f'--input {self.path}: column "{self.text_column}" holds {text_type}, not '
                    "text. Pass --text-column NAME to use another."
                )
            wanted = [self.text_column, *(["id"] if "id" in columns else [])]
            for batch in pf.iter_batches(batch_size=self.chunk_size, columns=wanted):
                texts = [t or "" for t in batch.column(self.text_column).to_pylist()]
                ids = batch.column("id").to_pylist() if "id" in columns else None
                self.rows += len(texts)
                yield TextChunk(texts, ids)
        except (pa.ArrowException, OSError) as e:
            raise JiyiError(f"--input {self.path}: cannot read the Parquet file ({e}).") from None


_NO_ID = object()


def _index(columns: list[str], name: str) -> int | None:
    return columns.index(name) if name in columns else None


_NPY_HEADER = 128  # bytes: room for any (N, H) shape, so the final N can be written in place


def _npy_header(n: int, dim: int) -> bytes:
    """A .npy v1.0 header for an (n, dim) float32 array, always 128 bytes long (magic, version,
    header length, the dict padded with spaces, a newline), as the format allows."""
    d = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {dim}), }}"
    body = d.ljust(_NPY_HEADER - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


class VectorWriter:
    """Append (ids, (n, H) vectors) chunks to a temporary file beside `path`; `close()` finishes
    it (the .npy header gets the final N) and renames it over `path`; `abort()` removes it."""

    def __init__(self, path: str | os.PathLike, dim: int):
        self.path, self.dim, self.rows = Path(path), dim, 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        os.close(fd)
        self.tmp = Path(tmp)
        self._parquet: Any = None
        self._npy = None
        if self.path.suffix.lower() == ".npy":
            self._npy = open(self.tmp, "wb")  # noqa: SIM115 - closed in close()/abort()
            self._npy.write(_npy_header(0, dim))

    def write(self, ids: list[Any] | None, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype="<f4")  # (n, H)
        if self._npy is not None:
            self._npy.write(vectors.tobytes())
        else:
            self._write_parquet(ids, vectors)
        self.rows += len(vectors)

    def _write_parquet(self, ids: list[Any] | None, vectors: np.ndarray) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if ids is None:
            ids = list(range(self.rows, self.rows + len(vectors)))
        flat = pa.array(vectors.reshape(-1))  # (n * H,)
        if self._parquet is None:
            schema = pa.schema(
                [("id", pa.array(ids).type), ("vector", pa.list_(pa.float32(), self.dim))]
            )
            self._parquet = pq.ParquetWriter(self.tmp, schema)
        id_type = self._parquet.schema.field("id").type
        table = pa.table(
            [pa.array(ids, type=id_type), pa.FixedSizeListArray.from_arrays(flat, self.dim)],
            schema=self._parquet.schema,
        )
        self._parquet.write_table(table)

    def close(self) -> None:
        if self._npy is not None:
            self._npy.seek(0)
            self._npy.write(_npy_header(self.rows, self.dim))
            self._npy.flush()
            os.fsync(self._npy.fileno())
            self._npy.close()
        elif self._parquet is not None:
            self._parquet.close()
            with open(self.tmp, "rb") as f:
                os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        self.tmp.chmod(0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self._npy is not None:
            self._npy.close()
        elif self._parquet is not None:
            self._parquet.close()
        self.tmp.unlink(missing_ok=True)
