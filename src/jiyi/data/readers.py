"""Read labelled examples from CSV, TSV, JSONL, Parquet or a folder saved by `datasets`.

Every problem a user can cause raises `JiyiError` with one message that names the file, the
line (or Parquet/datasets row) and what to do. Row-level problems (empty text, missing label,
malformed JSON, a CSV row with the wrong number of fields, bytes that are not UTF-8, NUL bytes)
can be skipped instead with ``on_bad_rows="skip"``; they are then recorded in
`ReadResult.skipped`. File-level problems (no such file, unknown type, missing column, no rows)
always raise.

>>> result = read_examples("data/train.csv")  # columns text,label
>>> result.examples[0]
Example(text='a gripping film', label='fresh', text_pair=None, line=2)
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError

TASKS = ("classification", "multilabel")
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
}
MULTILABEL_DELIMITERS = ("|", ";", ",")
_FIX = "Fix or remove the row, or pass --on-bad-rows skip to skip bad rows."
_EOL = re.compile(rb"\r\n|\r|\n")  # the line ends csv (newline="") and editors count
_WHOLE_NUMBER = re.compile(r"[+-]?\d+\.0*")  # "1.0" -> "1": pandas writes int labels as floats
_SURROGATE = re.compile("[\ud800-\udfff]")  # undecodable bytes (surrogateescape) or lone \udXXX
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Example:
    text: str
    label: str | tuple[str, ...] | None  # str: classification, tuple: multilabel, None: unlabelled
    text_pair: str | None = None
    line: int = 0  # 1-based physical line (CSV/TSV/JSONL/TXT) or 1-based row (Parquet/datasets)


@dataclass
class ReadResult:
    path: Path
    examples: list[Example]
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)


class _BadRow(Exception):
    """A row-level problem; `reason` is the message without the "FILE line N: " prefix."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# A source yields (line, record) or (line, reason) where the row could not be read at all.
Rows = Iterator[tuple[int, dict[str, Any] | str]]


def read_examples(
    path: str | Path,
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    task: str = "classification",
    require_labels: bool = True,
    on_bad_rows: str = "error",
    label_delimiter: str | None = None,
) -> ReadResult:
    """Read one data file (or `datasets` folder) into examples; see the module docstring."""
    spec = _Spec(text_column, text_pair_column, label_column, task, require_labels, label_delimiter)
    return _read(Path(path), str(path), spec, on_bad_rows)


def read_inputs(
    path: str | Path,
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    on_bad_rows: str = "error",
) -> list[Example]:
    """Texts to predict: "-" is stdin, .txt one text per line, anything else a data file.

    Stdin holds one text per line, or JSON Lines when its first non-blank line starts with "{".
    Blank lines and rows with empty text are dropped (the others keep their `line` numbers);
    labels are read when the file has them, else None.
    """
    spec = _Spec(text_column, text_pair_column, require_labels=False, skip_empty_text=True)
    if str(path) == "-":
        raw = sys.stdin.buffer.read()
        lines = (b.strip() for _, _, b in _physical_lines(raw.removeprefix(_BOM)))
        if next((b for b in lines if b), b"").startswith(b"{"):
            return _collect("stdin", "jsonl", _jsonl_rows(raw), spec, on_bad_rows).examples
        return _collect("stdin", "txt", _text_rows(raw, text_column), spec, on_bad_rows).examples
    p = Path(path)
    if p.suffix.lower() == ".txt" and p.is_file():
        rows = _text_rows(_read_bytes(p, str(path)), text_column)
        return _collect(str(path), "txt", rows, spec, on_bad_rows, p).examples
    return _read(p, str(path), spec, on_bad_rows).examples


def label_list(examples: Sequence[Example], task: str) -> list[str]:
    """Sorted label names; numbers sort numerically; multilabel: the union of all labels.

    >>> label_list([Example("a", "10"), Example("b", "2"), Example("c", "neg")], "classification")
    ['2', '10', 'neg']
    """
    _check_task(task)
    names: set[str] = set()
    for ex in examples:
        if isinstance(ex.label, tuple):
            names.update(ex.label)
        elif ex.label is not None:
            names.add(ex.label)
    return sorted(names, key=_label_sort_key)


def check_split_labels(train: ReadResult, split: ReadResult, labels: list[str], flag: str) -> None:
    """Raise JiyiError when `split` (given with `flag`, e.g. --validation) has a label that the
    training data lacks: the model has no output for it."""
    known = set(labels)
    unknown: dict[str, int] = {}  # label -> first line it occurs on
    rows = 0
    for ex in split.examples:
        labs = ex.label if isinstance(ex.label, tuple) else (ex.label,)
        missing = [lab for lab in labs if lab is not None and lab not in known]
        rows += bool(missing)
        for lab in missing:
            unknown.setdefault(lab, ex.line)
    if not unknown:
        return
    label, line = next(iter(unknown.items()))
    shown = ", ".join(labels[:20]) + (", ..." if len(labels) > 20 else "")
    more = sorted(unknown, key=_label_sort_key)[:20]
    others = f" ({len(unknown)} unknown labels: {', '.join(more)})" if len(unknown) > 1 else ""
    raise JiyiError(
        f'{flag} {split.path} {_unit(split.path)} {line}: label "{label}" does not occur in the '
        f"training data {train.path} (its labels: {shown}); {rows} row(s) have labels the "
        f"training data lacks{others}. Add examples of these labels to the training data, or "
        f"remove those rows from {flag}."
    )


def stratified_split(
    examples: list[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Carve a validation set off `examples`: (train, validation), both in input order.

    Stratified by label (multilabel: by the first label); each class with n >= 2 examples gives
    max(1, round(n * fraction)) of them, and at most n - 1. Deterministic under `seed`.

    >>> exs = [Example(str(i), "a") for i in range(10)] + [Example("x", "b"), Example("y", "b")]
    >>> train, val = stratified_split(exs, 0.2, seed=0)
    >>> len(train), sorted(e.label for e in val)
    (9, ['a', 'a', 'b'])
    """
    if not 0 < fraction < 1:
        raise JiyiError(f"the validation fraction must be between 0 and 1, got {fraction}.")
    groups: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        key = ex.label if isinstance(ex.label, str) else (ex.label[0] if ex.label else "")
        groups.setdefault(key, []).append(i)
    rng = random.Random(seed)
    chosen: set[int] = set()
    for key in sorted(groups, key=_label_sort_key):
        idx = groups[key]
        if len(idx) < 2:
            continue
        n_val = min(len(idx) - 1, max(1, round(len(idx) * fraction)))
        chosen.update(rng.sample(idx, n_val))
    if not chosen:
        raise JiyiError(
            f"cannot carve a validation set from {len(examples)} examples: no label has 2 or "
            "more examples. Pass a validation file instead."
        )
    train = [ex for i, ex in enumerate(examples) if i not in chosen]
    return train, [ex for i, ex in enumerate(examples) if i in chosen]


# ---------------------------------------------------------------------------------------------
# Reading: pick the source by file type, check columns, turn records into examples.


@dataclass(frozen=True)
class _Spec:
    """What to read from each record."""

    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"  # "" when the file has none and labels are optional
    task: str = "classification"
    require_labels: bool = True
    label_delimiter: str | None = None
    skip_empty_text: bool = False  # read_inputs: drop rows without text instead of failing


def _read(path: Path, where: str, spec: _Spec, on_bad_rows: str) -> ReadResult:
    _check_task(spec.task)
    if not path.exists():
        raise JiyiError(f"{where}: no such file.")
    wanted = [c for c in (spec.text_column, spec.text_pair_column, spec.label_column) if c]
    if path.is_dir():
        fmt = "datasets"
        columns, rows = _datasets_rows(path, where, wanted)
    else:
        fmt = FORMATS.get(path.suffix.lower(), "")
        if not fmt:
            hint = " (a .txt file holds no labels)" if path.suffix.lower() == ".txt" else ""
            raise JiyiError(
                f"{where}: unknown file type {path.suffix or '(no extension)'!r}{hint}. jiyi reads "
                ".csv, .tsv/.tab, .jsonl/.json, .parquet, or a folder saved by datasets."
            )
        if fmt == "parquet":
            columns, rows = _parquet_rows(path, where, wanted)
        else:
            raw = _read_bytes(path, where)
            if not raw.removeprefix(_BOM).strip():
                raise JiyiError(f"{where}: the file is empty.")
            if fmt == "jsonl":
                _reject_json_array(raw, where)
                parsed = list(_jsonl_rows(raw))
                columns = list(
                    dict.fromkeys(k for _, r in parsed if isinstance(r, dict) for k in r)
                )
                rows = iter(parsed)
                if not columns:  # every line bad: report the rows, not a "missing column"
                    columns = wanted
            else:
                columns, rows = _csv_rows(raw, where, "," if fmt == "csv" else "\t")
    needed = [(spec.text_column, "--text-column"), (spec.text_pair_column, "--text-pair-column")]
    if spec.require_labels:
        needed.append((spec.label_column, "--label-column"))
    for column, flag in needed:
        if column and column not in columns:
            kind = "keys" if fmt == "jsonl" else "columns"
            header = " (jiyi reads the first line as the header)" if fmt in ("csv", "tsv") else ""
            raise JiyiError(
                f'{where}: no column "{column}"; the file has {kind}: '
                f"{', '.join(repr(c) for c in columns)}{header}. Pass {flag} NAME to use another."
            )
    if spec.label_column not in columns:
        spec = replace(spec, label_column="")  # unlabelled (labels optional): label None
    return _collect(where, fmt, rows, spec, on_bad_rows, path)


def _collect(
    where: str,
    fmt: str,
    rows: Iterable[tuple[int, dict[str, Any] | str]],
    spec: _Spec,
    on_bad_rows: str,
    path: Path | None = None,
) -> ReadResult:
    if on_bad_rows not in ("error", "skip"):
        raise JiyiError(f"--on-bad-rows must be 'error' or 'skip', got {on_bad_rows!r}.")
    unit = "row" if fmt in ("parquet", "datasets") else "line"
    examples: list[Example] = []
    skipped: list[tuple[int, str]] = []
    for line, record in rows:
        try:
            if isinstance(record, str):
                raise _BadRow(record)
            ex = _to_example(record, line, spec)
        except _BadRow as bad:
            if on_bad_rows == "error":
                raise JiyiError(f"{where} {unit} {line}: {bad.reason}. {_FIX}") from None
            skipped.append((line, bad.reason))
            continue
        if ex is not None:
            examples.append(ex)
    if not examples and skipped:
        line, reason = skipped[0]
        utf8 = all("UTF-8" in r for _, r in skipped)
        raise JiyiError(
            f"{where}: every row is bad ({len(skipped)} skipped); the first, {unit} {line}: "
            f"{reason}." + (" Is the file UTF-8? Save it as UTF-8." if utf8 else "")
        )
    if not examples:
        what = "a header line but no rows" if fmt in ("csv", "tsv") else "no rows"
        with_text = " with text" if spec.skip_empty_text else ""
        raise JiyiError(f"{where}: the file has {what}{with_text}.")
    return ReadResult(path or Path(where), examples, skipped)


def _to_example(record: dict[str, Any], line: int, spec: _Spec) -> Example | None:
    text = _text(record, spec.text_column)
    if text is None:
        if spec.skip_empty_text:
            return None
        raise _BadRow(f'empty text in column "{spec.text_column}"')
    pair = None
    if spec.text_pair_column:
        pair = _text(record, spec.text_pair_column)
        if pair is None:
            raise _BadRow(f'empty text in column "{spec.text_pair_column}"')
    column = spec.label_column
    label: str | tuple[str, ...] | None = None
    if column:
        try:
            value = record.get(column)
            if spec.task == "multilabel":
                label = _multilabel(value, column, spec.label_delimiter)
            elif isinstance(value, dict):
                raise _BadRow(f'label in column "{column}" is an object')
            elif isinstance(value, list | tuple):
                raise _BadRow(
                    f'label in column "{column}" is a list; for several labels per text pass '
                    "--task multilabel"
                )
            else:
                label = _label_name(value, column)
        except _BadRow:
            if spec.require_labels:
                raise
            label = None  # labels optional (prediction): a bad one counts as none
    if label is None and spec.require_labels:
        raise _BadRow(f'empty label in column "{column}"')
    return Example(text=text, label=label, text_pair=pair, line=line)


def _text(record: dict[str, Any], column: str) -> str | None:
    """The text in `column`, or None when it is missing, null or only whitespace."""
    value = record.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not isinstance(value, str):
        raise _BadRow(f'text in column "{column}" is {_kind(value)}, expected a string')
    if "\x00" in value:
        raise _BadRow(f'NUL bytes in column "{column}" (is this a binary file?)')
    if m := _SURROGATE.search(value):
        raise _BadRow(f'column "{column}" holds an undecodable character {m.group()!a}')
    return value if value.strip() else None


def _label_name(value: Any, column: str) -> str | None:
    """A label as its name, None when empty: 1 -> "1", 1.0 -> "1", "1.0" -> "1", " pos " -> "pos"."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        name = value.strip()
        if _WHOLE_NUMBER.fullmatch(name):
            name = str(int(name.split(".")[0]))
        if _SURROGATE.search(name) or "\x00" in name:
            raise _BadRow(f'label in column "{column}" holds undecodable or NUL characters')
        return name or None
    raise _BadRow(f'label in column "{column}" is {_kind(value)}, expected a string or a number')


def _multilabel(value: Any, column: str, delimiter: str | None) -> tuple[str, ...] | None:
    """Multilabel labels, None when missing. A JSON list (also JSON text in a CSV cell) or a
    delimited string: with no delimiter given, the first of "|", ";", "," present, in that order.

    >>> _multilabel('["a", "b"]', "label", None), _multilabel("a,b|c", "label", None)
    (('a', 'b'), ('a,b', 'c'))
    >>> _multilabel("[]", "label", None), _multilabel("", "label", None)
    ((), None)
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.startswith("["):
            try:
                value = json.loads(text)
            except (ValueError, RecursionError):
                raise _BadRow(
                    f'label in column "{column}" starts with "[" but is not a JSON list'
                ) from None
            if not isinstance(value, list):
                raise _BadRow(f'label in column "{column}" is not a JSON list')
        else:
            sep = delimiter or next((d for d in MULTILABEL_DELIMITERS if d in text), None)
            value = text.split(sep) if sep else [text]
    if isinstance(value, list | tuple):
        names: list[str] = []
        for item in value:
            if isinstance(item, list | tuple | dict):
                raise _BadRow(f'label in column "{column}" nests {_kind(item)} in its list')
            name = _label_name(item, column)
            if name and name not in names:
                names.append(name)
        return tuple(names)
    if isinstance(value, dict):
        raise _BadRow(f'label in column "{column}" is an object, expected a list')
    name = _label_name(value, column)
    return None if name is None else (name,)


# ---------------------------------------------------------------------------------------------
# Sources: each yields (line, record) or (line, reason).


def _csv_rows(raw: bytes, where: str, delimiter: str) -> tuple[list[str], Rows]:
    """Rows of a CSV/TSV file, numbered by the physical line each starts on (fields may span
    lines). Bytes that are not UTF-8 make their row bad, named with its byte offset."""
    text = raw.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    lines: list[tuple[int, int, bytes]] = []  # filled on the first undecodable row

    def utf8_problem(first: int, last: int) -> str:
        if not lines:
            lines.extend(_physical_lines(raw))
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
    if any(_SURROGATE.search(c) for c in header):
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
            if any(_SURROGATE.search(f) for f in row):
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
    for line, offset, data in _physical_lines(raw):
        if line == 1 and data.startswith(_BOM):
            data, offset = data[3:], offset + 3
        if not data.strip():
            continue
        if b"\x00" in data:
            yield line, "NUL bytes in the line (is this a binary file?)", False
        elif problem := _utf8_problem(data, offset):
            yield line, problem, False
        else:
            yield line, data.decode("utf-8"), True


def _jsonl_rows(raw: bytes) -> Rows:
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
                f'expected a JSON object like {{"text": ..., "label": ...}}, got {_kind(obj)}',
            )


def _text_rows(raw: bytes, text_column: str) -> Rows:
    """One text per line (a .txt file or stdin); blank lines are skipped."""
    for line, text, ok in _decoded_lines(raw):
        yield line, ({text_column: text} if ok else text)


def _parquet_rows(path: Path, where: str, wanted: list[str]) -> tuple[list[str], Rows]:
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


def _datasets_rows(path: Path, where: str, wanted: list[str]) -> tuple[list[str], Rows]:
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


# ---------------------------------------------------------------------------------------------
# Helpers.


def _physical_lines(raw: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(1-based line, byte offset, bytes without the line end), splitting at \\r\\n, \\r, \\n.

    >>> list(_physical_lines(b"a\\r\\nbc\\rd"))
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


def _read_bytes(path: Path, where: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise JiyiError(f"{where}: cannot read the file ({e.strerror}).") from None


def _reject_json_array(raw: bytes, where: str) -> None:
    if not raw.lstrip(_BOM + b" \t\r\n").startswith(b"["):
        return
    try:
        is_array = isinstance(json.loads(raw.decode("utf-8-sig")), list)
    except (ValueError, RecursionError):
        return  # not one JSON document: the line reader names the bad lines
    if is_array:
        raise JiyiError(
            f"{where}: a JSON array; jiyi reads JSON Lines (one object per line). Convert it "
            f"with: jq -c '.[]' {where} > {Path(where).with_suffix('.jsonl')}"
        )


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise JiyiError(f"--task {task!r}: the data readers handle {' or '.join(TASKS)}.")


def _label_sort_key(name: str) -> tuple[int, float, str]:
    try:
        number = float(name)
    except ValueError:
        return (1, 0.0, name)
    return (0, number, name) if math.isfinite(number) else (1, 0.0, name)


def _kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", tuple: "a list", bool: "a boolean", str: "a string"}
    if value is None:
        return "null"
    return kinds.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


def _unit(path: Path) -> str:
    return "row" if path.is_dir() or path.suffix.lower() == ".parquet" else "line"
