"""Row sources for the data readers: one per file format, each yielding numbered records.

A source yields ``(line, record)`` for each row it could read and ``(line, reason)`` for each it
could not (invalid UTF-8, NUL bytes, malformed JSON, a CSV row with the wrong number of fields);
`jiyi.data.readers` turns the records into examples and decides whether a bad row raises or is
skipped. File-level problems (an unreadable header or Parquet file, a DatasetDict) raise
`JiyiError` here. Lines are physical lines (1-based, split at \\r\\n, \\r or \\n); Parquet
and `datasets` rows are numbered from 1.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
}
_EOL = re.compile(rb"\r\n|\r|\n")  # the line ends csv (newline="") and editors count
SURROGATE = re.compile("[\ud800-\udfff]")  # undecodable bytes (surrogateescape) or lone \udXXX
UTF8_BOM = b"\xef\xbb\xbf"


# A source yields (line, record) or (line, reason) where the row could not be read at all.
Rows = Iterator[tuple[int, dict[str, Any] | str]]


def csv_rows(raw: bytes, where: str, delimiter: str) -> tuple[list[str], Rows]:
    """Rows of a CSV/TSV file, numbered by the physical line each starts on (fields may span
    lines). Bytes that are not UTF-8 make their row bad, named with its byte offset."""
    text = raw.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    lines: list[tuple[int, int, bytes]] = []  # filled on the first undecodable row

    def utf8_problem(first: int, last: int) -> str:
        if not lines:
            lines.extend(physical_lines(raw))
        for n, offset, data in lines[first - 1 : last]:
            if problem := _utf8_problem(data, offset):
                return problem if n == first else f"{problem} (on line {n})"
        return "not valid UTF-8"

    header: list[str] | None = []
    try:
        while header == []:  # skip blank lines before the header
            header = next(reader, None)
    except csv.Error as e:
        raise JiyiError(f"{where} line {reader.line_num}: cannot read the header ({e}).") from None
    if not header:
        raise JiyiError(f"{where}: the file is empty (the first line must be the header).")
    if any("\x00" in c for c in header):
        raise JiyiError(
            f"{where} line {reader.line_num}: NUL bytes in the header; is this a text file?"
        )
    if any(SURROGATE.search(c) for c in header):
        problem = utf8_problem(1, reader.line_num)
        raise JiyiError(f"{where} line {reader.line_num}: the header is {problem}.")
    columns = [c.strip() for c in header]

    def rows() -> Rows:
        end = reader.line_num
        while True:
            start = end + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                end = max(reader.line_num, start)
                yield start, f"unreadable row ({e})"
                continue
            end = reader.line_num
            if not row:
                continue  # a blank line
            if any(SURROGATE.search(f) for f in row):
                yield start, utf8_problem(start, end)
            elif any("\x00" in f for f in row):
                yield start, "NUL bytes in the row (is this a binary file?)"
            elif len(row) != len(columns):
                span = (
                    f" (it spans lines {start}-{end}: is a quote unbalanced?)"
                    if end > start
                    else ""
                )
                sep = "comma" if delimiter == "," else "tab"
                yield (
                    start,
                    (
                        f"{len(row)} fields, but the header has {len(columns)}{span}; quote fields "
                        f'that contain a {sep}, a quote or a line break ("...", quotes doubled)'
                    ),
                )
            else:
                yield start, dict(zip(columns, row, strict=True))

    return columns, rows()


def _decoded_lines(raw: bytes) -> Iterator[tuple[int, str, bool]]:
    """Non-blank physical lines as (line, text, True), or (line, problem, False) for a line with
    NUL bytes or invalid UTF-8; a BOM at the start of the file is dropped."""
    for line, offset, data in physical_lines(raw):
        if line == 1 and data.startswith(UTF8_BOM):
            data, offset = data[3:], offset + 3
        if not data.strip():
            continue
        if b"\x00" in data:
            yield line, "NUL bytes in the line (is this a binary file?)", False
        elif problem := _utf8_problem(data, offset):
            yield line, problem, False
        else:
            yield line, data.decode("utf-8"), True


def jsonl_rows(raw: bytes) -> Rows:
    for line, text, ok in _decoded_lines(raw):
        if not ok:
            yield line, text
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            yield line, f"not valid JSON ({e.msg} at column {e.colno})"
            continue
        except (ValueError, RecursionError) as e:
            yield line, f"not valid JSON ({e})"
            continue
        if isinstance(obj, dict):
            yield line, obj
        else:
            yield (
                line,
                f'expected a JSON object like {{"text": ..., "label": ...}}, got {json_kind(obj)}',
            )


def text_rows(raw: bytes, text_column: str) -> Rows:
    """One text per line (a .txt file or stdin); blank lines are skipped."""
    for line, text, ok in _decoded_lines(raw):
        yield line, ({text_column: text} if ok else text)


def parquet_rows(path: Path, where: str, wanted: list[str]) -> tuple[list[str], Rows]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        columns = list(pf.schema_arrow.names)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise JiyiError(f"{where}: not a readable Parquet file ({e}).") from None

    def rows() -> Rows:
        n = 0
        try:
            for batch in pf.iter_batches(
                columns=[c for c in wanted if c in columns], batch_size=1024
            ):
                for record in batch.to_pylist():
                    n += 1
                    yield n, record
        except (pa.ArrowException, OSError, ValueError) as e:
            raise JiyiError(f"{where} row {n + 1}: cannot read the Parquet file ({e}).") from None

    return columns, rows()


def datasets_rows(path: Path, where: str, wanted: list[str]) -> tuple[list[str], Rows]:
    """Rows of a folder written by `Dataset.save_to_disk`; ClassLabel ids become their names."""
    if (path / "dataset_dict.json").exists():
        try:
            splits = json.loads((path / "dataset_dict.json").read_text("utf-8"))["splits"]
        except (OSError, ValueError, KeyError, TypeError):
            splits = sorted(p.name for p in path.iterdir() if (p / "state.json").exists())
        raise JiyiError(
            f"{where}: a datasets DatasetDict with splits {', '.join(map(str, splits))}; point at "
            f"one split, e.g. {path / str(splits[0] if splits else 'train')}."
        )
    if not (path / "state.json").exists():
        files = sorted(p.name for p in path.iterdir() if p.suffix.lower() in FORMATS)[:10]
        inside = f" (it holds {', '.join(files)})" if files else ""
        raise JiyiError(
            f"{where}: a directory, but not a folder saved by datasets (no state.json){inside}. "
            "Point at a .csv, .tsv, .jsonl or .parquet file, or a save_to_disk folder."
        )
    try:
        import datasets
    except ImportError:
        raise JiyiError(
            f"{where}: reading a datasets folder needs `pip install datasets`."
        ) from None
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # datasets raises many types for a damaged folder
        raise JiyiError(
            f"{where}: cannot load the datasets folder ({type(e).__name__}: {e})."
        ) from None
    if isinstance(ds, datasets.DatasetDict):  # pragma: no cover - caught above by dataset_dict.json
        raise JiyiError(f"{where}: a DatasetDict; point at one split, e.g. {path / 'train'}.")
    columns = list(ds.column_names)
    present = [c for c in wanted if c in columns]
    names = {}  # column -> ClassLabel names
    for c in present:
        feature = ds.features[c]
        feature = getattr(feature, "feature", feature)  # List(ClassLabel) for multilabel
        if getattr(feature, "names", None):
            names[c] = list(feature.names)

    def name(column: str, value: Any) -> Any:
        if column not in names or not isinstance(value, int | list):
            return value
        if isinstance(value, list):
            return [name(column, v) for v in value]
        return names[column][value] if 0 <= value < len(names[column]) else None  # -1: no label

    def rows() -> Rows:
        n = 0
        for batch in ds.select_columns(present).iter(batch_size=1024):
            for values in zip(*(batch[c] for c in present), strict=True):
                n += 1
                yield n, {c: name(c, v) for c, v in zip(present, values, strict=True)}

    return columns, rows()


def physical_lines(raw: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(1-based line, byte offset, bytes without the line end), splitting at \\r\\n, \\r, \\n.

    >>> list(physical_lines(b"a\\r\\nbc\\rd"))
    [(1, 0, b'a'), (2, 3, b'bc'), (3, 6, b'd')]
    """
    start, line = 0, 1
    for m in _EOL.finditer(raw):
        yield line, start, raw[start : m.start()]
        start, line = m.end(), line + 1
    if start < len(raw):
        yield line, start, raw[start:]


def _utf8_problem(data: bytes, offset: int) -> str | None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return (
            f"not valid UTF-8 (byte 0x{data[e.start]:02x} at byte offset {offset + e.start} of "
            "the file); save the file as UTF-8"
        )
    return None


def json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", tuple: "a list", bool: "a boolean", str: "a string"}
    if value is None:
        return "null"
    return kinds.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )
