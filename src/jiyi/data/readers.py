"""Read labelled examples from CSV, TSV, JSONL, Parquet or a folder saved by `datasets`.

Every problem a user can cause raises `JiyiError` with one message that names the file, the
line (or Parquet/datasets row) and what to do. Row-level problems (empty text, missing label,
malformed JSON, a CSV row with the wrong number of fields, bytes that are not UTF-8, NUL bytes)
can be skipped instead with ``on_bad_rows="skip"``; they are then recorded in
`ReadResult.skipped`. File-level problems (no such file, unknown type, missing column, no rows)
always raise.

The field delimiter of a CSV/TSV file is guessed (`jiyi.data.reading.guess_delimiter`: the
extension's own, else what `csv.Sniffer` finds among , ; tab |, checked against the header)
unless one is given, as a `delimiter=` argument or for every read of a command through
`jiyi.data.reading.reading(delimiter=...)`.

>>> result = read_examples("data/train.csv")  # columns text,label
>>> result.examples[0]
Example(text='a gripping film', label='fresh', text_pair=None, line=2)
"""

from __future__ import annotations

import json
import math
import random
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jiyi.data.reading import bad_row_advice, file_delimiter, parse_delimiter, reading_options
from jiyi.data.sources import (
    FORMATS,
    SURROGATE,
    UTF8_BOM,
    csv_rows,
    datasets_rows,
    json_kind,
    jsonl_rows,
    parquet_rows,
    physical_lines,
    text_rows,
)
from jiyi.errors import JiyiError

TASKS = ("classification", "multilabel")
MULTILABEL_DELIMITERS = ("|", ";", ",")
_WHOLE_NUMBER = re.compile(r"[+-]?\d+\.0*")  # "1.0" -> "1": pandas writes int labels as floats


@dataclass(frozen=True)
class Example:
    text: str
    label: str | tuple[str, ...] | None  # str: classification, tuple: multilabel, None: unlabelled
    text_pair: str | None = None
    line: int = 0  # 1-based physical line (CSV/TSV/JSONL/TXT) or 1-based row (Parquet/datasets)
    extra: dict[str, Any] | None = field(default=None, compare=False)  # `extra_columns` values


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
    extra_columns: dict[str, str] | None = None,
    delimiter: str | None = None,
) -> ReadResult:
    """Read one data file (or `datasets` folder) into examples; see the module docstring.

    `extra_columns` maps more columns to read (into `Example.extra`, values as stored) to the
    flag that named them, for the error when the file lacks one. `delimiter`: of a CSV/TSV file
    (default: `reading`'s, else guessed).
    """
    spec = _Spec(text_column, text_pair_column, label_column, task, require_labels, label_delimiter)
    spec = replace(
        spec,
        extra_columns=tuple((extra_columns or {}).items()),
        delimiter=parse_delimiter(delimiter) if delimiter else None,
    )
    return _read(Path(path), str(path), spec, on_bad_rows)


def read_inputs(
    path: str | Path,
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    on_bad_rows: str = "error",
    label_column: str | None = None,
    extra_columns: dict[str, str] | None = None,
    task: str = "classification",
    label_delimiter: str | None = None,
    delimiter: str | None = None,
) -> list[Example]:
    """Texts to predict: "-" is stdin, .txt one text per line, anything else a data file.

    Stdin holds one text per line, or JSON Lines when its first non-blank line starts with "{".
    Blank lines and rows with empty text are dropped (the others keep their `line` numbers);
    labels are read when the file has them, else None. `extra_columns`, `delimiter`: see
    `read_examples`.
    """
    spec = _Spec(text_column, text_pair_column, require_labels=False, skip_empty_text=True)
    spec = replace(
        spec,
        label_column=label_column or spec.label_column,
        extra_columns=tuple((extra_columns or {}).items()),
        task=task,
        label_delimiter=label_delimiter,
        delimiter=parse_delimiter(delimiter) if delimiter else None,
    )
    if str(path) == "-":
        raw = sys.stdin.buffer.read()
        lines = (b.strip() for _, _, b in physical_lines(raw.removeprefix(UTF8_BOM)))
        if next((b for b in lines if b), b"").startswith(b"{"):
            return _collect("stdin", "jsonl", jsonl_rows(raw), spec, on_bad_rows).examples
        return _collect("stdin", "txt", text_rows(raw, text_column), spec, on_bad_rows).examples
    p = Path(path)
    if p.suffix.lower() == ".txt" and p.is_file():
        rows = text_rows(_read_bytes(p, str(path)), text_column)
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
    return sorted(names, key=label_sort_key)


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
    more = sorted(unknown, key=label_sort_key)[:20]
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
    for key in sorted(groups, key=label_sort_key):
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
    delimiter: str | None = None  # CSV/TSV: None -> reading()'s, else guessed
    extra_columns: tuple[tuple[str, str], ...] = ()  # (column, flag that named it)


def _read(path: Path, where: str, spec: _Spec, on_bad_rows: str) -> ReadResult:
    _check_task(spec.task)
    if not path.exists():
        raise JiyiError(f"{where}: no such file.")
    wanted = [c for c in (spec.text_column, spec.text_pair_column, spec.label_column) if c]
    wanted += [c for c, _ in spec.extra_columns if c not in wanted]
    if path.is_dir():
        fmt = "datasets"
        columns, rows = datasets_rows(path, where, wanted)
    else:
        fmt = FORMATS.get(path.suffix.lower(), "")
        if not fmt:
            hint = " (a .txt file holds no labels)" if path.suffix.lower() == ".txt" else ""
            raise JiyiError(
                f"{where}: unknown file type {path.suffix or '(no extension)'!r}{hint}. jiyi reads "
                ".csv, .tsv/.tab, .jsonl/.json, .parquet, or a folder saved by datasets."
            )
        if fmt == "parquet":
            columns, rows = parquet_rows(path, where, wanted)
        else:
            raw = _read_bytes(path, where)
            if not raw.removeprefix(UTF8_BOM).strip():
                raise JiyiError(f"{where}: the file is empty.")
            if fmt == "jsonl":
                _reject_json_array(raw, where)
                parsed = list(jsonl_rows(raw))
                columns = list(
                    dict.fromkeys(k for _, r in parsed if isinstance(r, dict) for k in r)
                )
                rows = iter(parsed)
                if not columns:  # every line bad: report the rows, not a "missing column"
                    columns = wanted
            else:
                required = [c for c, _ in _needed_columns(spec) if c]
                delimiter = spec.delimiter or file_delimiter(raw, fmt, required)
                spec = replace(spec, delimiter=delimiter)
                columns, rows = csv_rows(raw, where, delimiter)
    for column, flag in _needed_columns(spec):
        if column and column not in columns:
            kind = "keys" if fmt == "jsonl" else "columns"
            header = ""
            if fmt in ("csv", "tsv"):
                header = (
                    " (jiyi reads the first line as the header, fields separated by "
                    f"{spec.delimiter!r}"
                    + (
                        "; pass --delimiter CHAR if they are not)"
                        if reading_options().offers("delimiter")
                        else ")"
                    )
                )
            raise JiyiError(
                f'{where}: no column "{column}"; the file has {kind}: '
                f"{', '.join(repr(c) for c in columns)}{header}. Pass {flag} NAME to use another."
            )
    if spec.label_column not in columns:
        spec = replace(spec, label_column="")  # unlabelled (labels optional): label None
    return _collect(where, fmt, rows, spec, on_bad_rows, path)


def _needed_columns(spec: _Spec) -> list[tuple[str | None, str]]:
    """The columns a file must have, each with the flag that names it."""
    needed = [(spec.text_column, "--text-column"), (spec.text_pair_column, "--text-pair-column")]
    if spec.require_labels:
        needed.append((spec.label_column, "--label-column"))
    return needed + list(spec.extra_columns)


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
                raise JiyiError(
                    f"{where} {unit} {line}: {bad.reason}. {bad_row_advice()}"
                ) from None
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
    extra = {c: _value(record.get(c)) for c, _ in spec.extra_columns} or None
    return Example(text=text, label=label, text_pair=pair, line=line, extra=extra)


def _value(value: Any) -> Any:
    """A cell as JSON can hold it: NaN (pandas' empty cell) becomes None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _text(record: dict[str, Any], column: str) -> str | None:
    """The text in `column`, or None when it is missing, null or only whitespace."""
    value = record.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not isinstance(value, str):
        raise _BadRow(f'text in column "{column}" is {json_kind(value)}, expected a string')
    if "\x00" in value:
        raise _BadRow(f'NUL bytes in column "{column}" (is this a binary file?)')
    if m := SURROGATE.search(value):
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
        if SURROGATE.search(name) or "\x00" in name:
            raise _BadRow(f'label in column "{column}" holds undecodable or NUL characters')
        return name or None
    raise _BadRow(
        f'label in column "{column}" is {json_kind(value)}, expected a string or a number'
    )


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
                raise _BadRow(f'label in column "{column}" nests {json_kind(item)} in its list')
            name = _label_name(item, column)
            if name and name not in names:
                names.append(name)
        return tuple(names)
    if isinstance(value, dict):
        raise _BadRow(f'label in column "{column}" is an object, expected a list')
    name = _label_name(value, column)
    return None if name is None else (name,)


# ---------------------------------------------------------------------------------------------
# Helpers.


def _read_bytes(path: Path, where: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise JiyiError(f"{where}: cannot read the file ({e.strerror}).") from None


def _reject_json_array(raw: bytes, where: str) -> None:
    if not raw.lstrip(UTF8_BOM + b" \t\r\n").startswith(b"["):
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


def label_sort_key(name: str) -> tuple[int, float, str]:
    """Sort key for label names: numbers first, by value, then the rest by name.

    >>> sorted(["neg", "10", "2", "pos"], key=label_sort_key)
    ['2', '10', 'neg', 'pos']
    """
    try:
        number = float(name)
    except ValueError:
        return (1, 0.0, name)
    return (0, number, name) if math.isfinite(number) else (1, 0.0, name)


def _unit(path: Path) -> str:
    return "row" if path.is_dir() or path.suffix.lower() == ".parquet" else "line"
