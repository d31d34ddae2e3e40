"""Read extractive question-answering data: SQuAD JSON or flat rows (JSONL, CSV, TSV, Parquet, a
`datasets` folder).

SQuAD JSON (the official nested file, v1.1 or v2.0):

    {"data": [{"title": ..., "paragraphs": [{"context": "...", "qas": [
        {"id": "q1", "question": "...", "answers": [{"text": "...", "answer_start": 12}],
         "is_impossible": false}]}]}]}

Flat rows, one question per row: `question`, `context`, `answers` (names set by
--question-column, --context-column, --answers-column) and an optional `id`. The answers are
`{"text": [...], "answer_start": [...]}` as Hugging Face `datasets` writes them, or a list of
`{"text", "answer_start"}` objects; a CSV cell holds either as JSON. An unanswerable question
has no answers (`[]`, empty lists, an empty CSV cell, or `"is_impossible": true`).

Every answer is checked against its context: `context[answer_start:answer_start + len(text)]`
must be `text`. A mismatch, like any other bad row, raises `JiyiError` naming the file, the line
(or row) and the question id, unless ``on_bad_rows="skip"`` skips the question and counts it.

>>> data = read_qa("data/squad-dev.json")
>>> data.examples[0]
QAExample(id='56be4db0', question='Which NFL team ...?', context='Super Bowl 50 was ...',
          answers=[Answer(text='Denver Broncos', start=177)], source='data/squad-dev.json line 9')
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jiyi.data.reading import bad_row_advice, file_delimiter
from jiyi.data.sources import (
    FORMATS,
    SURROGATE,
    UTF8_BOM,
    csv_rows,
    datasets_rows,
    json_kind,
    jsonl_rows,
    parquet_rows,
)
from jiyi.errors import JiyiError


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset into the context: context[start:start + len(text)] == text

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass
class QAExample:
    id: str
    question: str
    context: str
    answers: list[Answer] | None  # [] unanswerable; None unlabelled (prediction input)
    source: str  # "FILE line N" (or "row N"), where an error about it points

    @property
    def gold_texts(self) -> list[str]:
        return [a.text for a in self.answers or []]


@dataclass
class QAData:
    path: str
    examples: list[QAExample]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)


@dataclass(frozen=True)
class Columns:
    question: str = "question"
    context: str = "context"
    answers: str = "answers"
    id: str = "id"


class _Bad(Exception):
    """A problem with one question; the message without the "FILE line N" prefix."""


def read_qa(
    path: str | Path,
    *,
    columns: Columns = Columns(),
    labelled: bool = True,
    on_bad_rows: str = "error",
) -> QAData:
    """Read the questions of one file ("-": JSON Lines on stdin); see the module docstring.

    `labelled` requires the answers (training, evaluation); otherwise they are not read and each
    example's `answers` is None (prediction input).
    """
    if on_bad_rows not in ("error", "skip"):
        raise JiyiError(f"--on-bad-rows must be 'error' or 'skip', got {on_bad_rows!r}.")
    where = str(path)
    records = _records(Path(where), where, columns, labelled)
    examples: list[QAExample] = []
    skipped: list[tuple[str, str]] = []
    for at, record in records:
        qid = record.get(columns.id) if isinstance(record, dict) else None
        name = f"{at} (id {qid})" if qid not in (None, "") else at
        try:
            if isinstance(record, str):  # a row the source could not read
                raise _Bad(record)
            examples.append(_example(record, columns, labelled, at))
        except _Bad as bad:
            if on_bad_rows == "error":
                advice = bad_row_advice("Fix it", "the question")
                raise JiyiError(f"{name}: {bad}. {advice}") from None
            skipped.append((name, str(bad)))
    if not examples and skipped:
        first, reason = skipped[0]
        raise JiyiError(
            f"{where}: every question is bad ({len(skipped)} skipped); the first, {first}: "
            f"{reason}."
        )
    if not examples:
        raise JiyiError(f"{where}: no questions in the file.")
    return QAData(where, examples, skipped)


# ---------------------------------------------------------------------------------------------
# Sources: ("FILE line N", record) pairs, or ("FILE line N", reason) for an unreadable row.


def _records(
    path: Path, where: str, columns: Columns, labelled: bool
) -> Iterator[tuple[str, dict[str, Any] | str]]:
    if where == "-":
        return _located("stdin", "line", jsonl_rows(sys.stdin.buffer.read()))
    if not path.exists():
        raise JiyiError(f"{where}: no such file.")
    wanted = [columns.question, columns.context, columns.id]
    wanted += [columns.answers, "is_impossible"] if labelled else []
    if path.is_dir():
        names, rows = datasets_rows(path, where, wanted)
        _check_columns(where, names, columns, labelled, "columns")
        return _located(where, "row", rows)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise JiyiError(
            f"{where}: unknown file type {path.suffix or '(no extension)'!r}. jiyi reads SQuAD "
            ".json, .jsonl, .csv, .tsv, .parquet, or a folder saved by datasets."
        )
    if fmt == "parquet":
        names, rows = parquet_rows(path, where, wanted)
        _check_columns(where, names, columns, labelled, "columns")
        return _located(where, "row", rows)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise JiyiError(f"{where}: cannot read the file ({e.strerror}).") from None
    if not raw.removeprefix(UTF8_BOM).strip():
        raise JiyiError(f"{where}: the file is empty.")
    if fmt == "jsonl" and (squad := _squad_document(raw, where)) is not None:
        return _squad_records(squad, raw, where, columns)
    if fmt == "jsonl":
        parsed = list(jsonl_rows(raw))
        names = list(dict.fromkeys(k for _, r in parsed if isinstance(r, dict) for k in r))
        if names:
            _check_columns(where, names, columns, labelled, "keys")
        return _located(where, "line", iter(parsed))
    delimiter = file_delimiter(raw, fmt, [columns.question, columns.context])
    names, rows = csv_rows(raw, where, delimiter)
    _check_columns(where, names, columns, labelled, "columns")
    return _located(where, "line", rows)


def _located(
    where: str, unit: str, rows: Iterable[tuple[int, dict[str, Any] | str]]
) -> Iterator[tuple[str, dict[str, Any] | str]]:
    for n, record in rows:
        yield f"{where} {unit} {n}", record


def _check_columns(where: str, names: list[str], columns: Columns, labelled: bool, kind: str):
    needed = [(columns.question, "--question-column"), (columns.context, "--context-column")]
    if labelled:
        needed.append((columns.answers, "--answers-column"))
    for column, flag in needed:
        if column not in names:
            raise JiyiError(
                f'{where}: no column "{column}"; the file has {kind}: '
                f"{', '.join(repr(c) for c in names)}. Pass {flag} NAME to use another."
            )


def _squad_document(raw: bytes, where: str) -> dict[str, Any] | None:
    """The parsed file when it is one JSON object with a "data" list (SQuAD), else None."""
    text = raw.decode("utf-8-sig", errors="replace").strip()
    if not text.startswith("{"):
        return None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None  # not one document: JSON Lines (or broken, which the line reader names)
    if isinstance(doc, dict) and "data" in doc:
        if not isinstance(doc["data"], list):
            raise JiyiError(
                f'{where}: "data" is {json_kind(doc["data"])}; SQuAD JSON needs a list.'
            )
        return doc
    return None


def _squad_records(
    doc: dict[str, Any], raw: bytes, where: str, columns: Columns
) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """Flatten data[i].paragraphs[j].qas[k] into rows under the --*-column names (SQuAD's own
    keys are fixed); each row is located at the line of its id."""
    text = raw.decode("utf-8-sig", errors="replace")
    for i, article in enumerate(doc["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            yield f"{where} data[{i}]", 'no "paragraphs" list'
            continue
        for j, paragraph in enumerate(paragraphs):
            at = f"{where} data[{i}].paragraphs[{j}]"
            qas = paragraph.get("qas") if isinstance(paragraph, dict) else None
            if not isinstance(qas, list):
                yield at, 'no "qas" list'
                continue
            for k, qa in enumerate(qas):
                if not isinstance(qa, dict):
                    yield f"{at}.qas[{k}]", f"a question is {json_kind(qa)}, expected an object"
                    continue
                line = _line_of_id(text, qa.get("id"))
                here = f"{where} line {line}" if line else f"{at}.qas[{k}]"
                yield (
                    here,
                    {
                        columns.id: qa.get("id"),
                        columns.question: qa.get("question"),
                        columns.context: paragraph.get("context"),
                        columns.answers: qa.get("answers"),
                        "is_impossible": qa.get("is_impossible"),
                    },
                )


def _line_of_id(text: str, qid: Any) -> int | None:
    """The 1-based line holding `"id": <qid>` in the raw JSON, or None."""
    if qid is None:
        return None
    m = re.search(r'"id"\s*:\s*' + re.escape(json.dumps(qid)), text) or re.search(
        r'"id"\s*:\s*' + re.escape(json.dumps(qid, ensure_ascii=False)), text
    )
    return text.count("\n", 0, m.start()) + 1 if m else None


# ---------------------------------------------------------------------------------------------
# Records to examples.


def _example(record: dict[str, Any], columns: Columns, labelled: bool, at: str) -> QAExample:
    question = _text(record, columns.question)
    context = _text(record, columns.context)
    qid = record.get(columns.id)
    qid = at.rsplit(" ", 1)[-1] if qid is None or qid == "" else str(qid)
    answers = None
    if labelled:
        answers = _answers(record.get(columns.answers, _MISSING), columns.answers)
        impossible = record.get("is_impossible")
        if impossible is True and answers:
            raise _Bad(f'"is_impossible" is true, but it has {len(answers)} answer(s)')
        for i, answer in enumerate(answers):
            _check_offset(answer, context, i)
    return QAExample(qid, question, context, answers, at)


_MISSING = object()


def _text(record: dict[str, Any], column: str) -> str:
    value = record.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise _Bad(f'no "{column}"')
    if not isinstance(value, str):
        raise _Bad(f'"{column}" is {json_kind(value)}, expected a string')
    if "\x00" in value or SURROGATE.search(value):
        raise _Bad(f'"{column}" holds NUL or undecodable characters')
    if not value.strip():
        raise _Bad(f'"{column}" is empty')
    return value


def _answers(value: Any, column: str) -> list[Answer]:
    """A list of answers from the forms the module docstring lists; [] for unanswerable.

    >>> _answers({"text": ["Paris"], "answer_start": [7]}, "answers")
    [Answer(text='Paris', start=7)]
    """
    if value is _MISSING or value is None:
        raise _Bad(f'no "{column}" (give [] for a question without an answer)')
    if hasattr(value, "tolist"):  # numpy arrays from Parquet / datasets
        value = value.tolist()
    if isinstance(value, str):
        if not value.strip():
            return []  # an empty CSV cell
        try:
            value = json.loads(value)
        except ValueError:
            raise _Bad(
                f'"{column}" is not JSON: write {{"text": [...], "answer_start": [...]}} or '
                '[{"text": ..., "answer_start": ...}]'
            ) from None
        if isinstance(value, str):
            raise _Bad(f'"{column}" is a plain string; give the answer with its answer_start')
        return _answers(value, column)
    if isinstance(value, dict):
        texts, starts = value.get("text"), value.get("answer_start")
        texts = texts.tolist() if hasattr(texts, "tolist") else texts
        starts = starts.tolist() if hasattr(starts, "tolist") else starts
        if texts is None or starts is None:
            raise _Bad(f'"{column}" needs both "text" and "answer_start"')
        if not isinstance(texts, list):
            texts, starts = [texts], starts if isinstance(starts, list) else [starts]
        if not isinstance(starts, list) or len(starts) != len(texts):
            raise _Bad(
                f'"{column}" has {len(texts)} text(s) but '
                f"{len(starts) if isinstance(starts, list) else 1} answer_start(s)"
            )
        return [
            _answer(t, s, column, i) for i, (t, s) in enumerate(zip(texts, starts, strict=True))
        ]
    if isinstance(value, list | tuple):
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict) or "text" not in item or "answer_start" not in item:
                raise _Bad(f'{column}[{i}] is not an object with "text" and "answer_start"')
            out.append(_answer(item["text"], item["answer_start"], column, i))
        return out
    raise _Bad(f'"{column}" is {json_kind(value)}, expected answers with text and answer_start')


def _answer(text: Any, start: Any, column: str, i: int) -> Answer:
    if not isinstance(text, str) or not text:
        raise _Bad(f"{column} text {i + 1} is {json_kind(text) if text != '' else 'empty'}")
    if isinstance(start, float) and start.is_integer():
        start = int(start)
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise _Bad(f"{column} answer_start {i + 1} is {start!r}, expected an integer >= 0")
    return Answer(text, start)


def _check_offset(answer: Answer, context: str, i: int) -> None:
    there = context[answer.start : answer.end]
    if there == answer.text:
        return
    found = context.find(answer.text)
    hint = (
        f"; the text occurs at character {found}"
        if found >= 0
        else "; the text does not occur in the context"
    )
    raise _Bad(
        f"answer {i + 1} {answer.text!r} does not match the context at answer_start "
        f"{answer.start} (the context there reads {there!r}){hint}"
    )
