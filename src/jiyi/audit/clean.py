"""`--write-clean FILE`: the input file's rows minus the suspected ones, with every column of the
input kept, in the input's format (CSV/TSV with its delimiter, JSONL, Parquet), written
atomically. Rows are matched by the line (or Parquet row) the reader gave them.

>>> write_clean("data/train.csv", "data/train.clean.csv", drop={3, 17})  # CSV lines 3 and 17
2
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from jiyi.data.sources import FORMATS, UTF8_BOM, csv_rows, jsonl_rows
from jiyi.errors import JiyiError
from jiyi.io import atomic_write_bytes, atomic_write_text, output_file

FLAG = "--write-clean"


def check_clean_target(data: str | Path, target: str | Path) -> str:
    """Refuse early (before any work) what `write_clean` cannot do: a datasets folder as input, a
    target of another format than the input's, a folder as target, or the input itself."""
    source = Path(data)
    fmt = FORMATS.get(source.suffix.lower()) if source.is_file() else None
    if fmt is None:
        raise JiyiError(
            f"{FLAG} {target}: writing a cleaned copy needs a .csv, .tsv, .jsonl or .parquet "
            f"--data file; {data} is not one. Export it to one of those first."
        )
    wanted = FORMATS.get(Path(target).suffix.lower())
    if wanted != fmt:
        raise JiyiError(
            f"{FLAG} {target}: the cleaned copy keeps the input's format ({fmt}); name a "
            f"{source.suffix} file, e.g. {source.with_name(source.stem + '.clean' + source.suffix)}."
        )
    if Path(target).resolve() == source.resolve():
        raise JiyiError(
            f"{FLAG} {target}: that is the --data file itself; write the cleaned copy elsewhere."
        )
    return output_file(target, FLAG)


def write_clean(data: str | Path, target: str | Path, drop: set[int]) -> int:
    """Write `data`'s rows whose line (CSV/TSV/JSONL) or 1-based row (Parquet) is not in `drop`
    to `target`; returns how many rows were written. Rows the reader could not read (skipped
    with --on-bad-rows skip) are left out too."""
    from jiyi.data.reading import file_delimiter

    source = Path(data)
    fmt = FORMATS[source.suffix.lower()]
    if fmt == "parquet":
        return _write_parquet(source, target, drop)
    raw = source.read_bytes()
    if fmt == "jsonl":
        kept = [r for line, r in jsonl_rows(raw) if isinstance(r, dict) and line not in drop]
        atomic_write_text(target, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
        return len(kept)
    delimiter = file_delimiter(raw.removeprefix(UTF8_BOM), fmt)
    columns, rows = csv_rows(raw, str(source), delimiter)
    out = io.StringIO(newline="")
    writer = csv.DictWriter(
        out, fieldnames=columns, delimiter=delimiter, extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    n = 0
    for line, record in rows:
        if isinstance(record, dict) and line not in drop:
            writer.writerow(record)
            n += 1
    atomic_write_text(target, out.getvalue())
    return n


def _write_parquet(source: Path, target: str | Path, drop: set[int]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    keep = [i for i in range(table.num_rows) if i + 1 not in drop]
    sink = pa.BufferOutputStream()
    pq.write_table(table.take(pa.array(keep, type=pa.int64())), sink)
    atomic_write_bytes(target, sink.getvalue().to_pybytes())
    return len(keep)
