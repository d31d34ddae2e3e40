"""Read and write token-tagged sentences: CoNLL-style columns or JSON Lines.

CoNLL (any file that is not .json/.jsonl, unless its first line is a JSON object): a token per
line, the token in the first column and its tag in the last, columns split on tabs or spaces; a
blank line (or one holding only whitespace) between sentences; -DOCSTART- lines are ignored.

    EU      B-ORG
    rejects O

JSON Lines: an object per line with a list of tokens and a list of tags of the same length,
`{"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]}`. Files are read line by line as UTF-8
(a BOM is fine). Tags are checked, then repaired in the file's scheme (BIOES when any tag is E-
or S-, else BIO) and the repaired tags counted; every problem a user can cause raises
`JiyiError` naming the file and the line, unless ``on_bad_rows="skip"`` skips the sentence.

>>> data = read_ner("data/train.conll")
>>> data.examples[0], data.scheme, data.types, data.repaired
(NerExample(tokens=['EU', 'rejects'], tags=['B-ORG', 'O'], source='data/train.conll:1'), 'BIO',
 ['LOC', 'MISC', 'ORG', 'PER'], 0)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

from jiyi.data.reading import bad_row_advice
from jiyi.data.sources import SURROGATE, json_kind
from jiyi.errors import JiyiError
from jiyi.io import atomic_write_text
from jiyi.ner.tags import Scheme, detect_scheme, entity_types, parse_tag, repair

CONLL_SUFFIXES = (".conll", ".txt", ".tsv", ".bio", ".iob", ".iob2", ".bioes")
JSONL_SUFFIXES = (".jsonl", ".json")
DOCSTART = "-DOCSTART-"
_COLUMNS = re.compile(r"[ \t]+")


@dataclass
class NerExample:
    tokens: list[str]
    tags: list[str] | None  # None: unlabelled input
    source: str  # "FILE:LINE", the first line of the sentence


@dataclass
class NerData:
    path: Path
    examples: list[NerExample]
    scheme: Scheme | None  # None when the file has no tags
    types: list[str]  # entity types, sorted
    repaired: int = 0  # tags changed by repairs (e.g. I-PER after O became B-PER)
    repaired_at: list[str] = field(default_factory=list)  # sources of the repaired sentences
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, reason) when skipping


@dataclass
class _Sentence:
    line: int
    tokens: list[str]
    tags: list[str] | None


@dataclass
class _Bad:
    line: int
    reason: str


def read_ner(
    path: str | Path,
    *,
    tokens_column: str = "tokens",
    tags_column: str = "tags",
    labelled: bool | None = None,
    on_bad_rows: str = "error",
) -> NerData:
    """Read the sentences of a CoNLL or JSONL file; see the module docstring.

    `labelled`: True requires a tag for every token, False reads tokens only (extra columns and
    keys ignored), None decides by the first sentence (a second column, or a tags key) and then
    holds every sentence to it. `tokens_column` and `tags_column` are the JSONL keys.
    """
    if on_bad_rows not in ("error", "skip"):
        raise JiyiError(f"--on-bad-rows must be 'error' or 'skip', got {on_bad_rows!r}.")
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise JiyiError(f"{where}: no such file.")
    if path.is_dir():
        raise JiyiError(f"{where}: a directory; point at a CoNLL (.conll) or JSON Lines file.")
    examples: list[NerExample] = []
    skipped: list[tuple[int, str]] = []
    try:
        with open(path, encoding="utf-8-sig", errors="surrogateescape", newline=None) as f:
            lines = _numbered(f)
            jsonl, lines = _is_jsonl(path, lines)
            if jsonl:
                items = _jsonl_sentences(lines, where, tokens_column, tags_column, labelled)
            else:
                items = _conll_sentences(lines, labelled)
            for item in items:
                if isinstance(item, _Bad):
                    if on_bad_rows == "error":
                        advice = bad_row_advice("Fix it", "the sentence")
                        raise JiyiError(f"{where} line {item.line}: {item.reason}. {advice}")
                    skipped.append((item.line, item.reason))
                else:
                    examples.append(NerExample(item.tokens, item.tags, f"{where}:{item.line}"))
    except OSError as e:
        raise JiyiError(f"{where}: cannot read the file ({e.strerror or e}).") from None
    if not examples and skipped:
        line, reason = skipped[0]
        raise JiyiError(
            f"{where}: every sentence is bad ({len(skipped)} skipped); the first, line {line}: "
            f"{reason}."
        )
    if not examples:
        raise JiyiError(
            f"{where}: no sentences (the file holds only blank lines"
            + (" or empty token lists)." if jsonl else " or -DOCSTART- lines).")
        )
    data = NerData(path, examples, scheme=None, types=[], skipped=skipped)
    tagged = [ex for ex in examples if ex.tags is not None]
    if tagged:
        data.scheme = detect_scheme(ex.tags for ex in tagged if ex.tags)
        for ex in tagged:
            ex.tags, changed = repair(ex.tags or [], data.scheme)
            if changed:
                data.repaired += changed
                data.repaired_at.append(ex.source)
        data.types = entity_types(ex.tags for ex in tagged if ex.tags)
    return data


def write_conll(examples: Iterable[NerExample], path: str | Path) -> None:
    """Write `token<TAB>tag` lines (a token alone when untagged), a blank line after each
    sentence; atomically. A token holding a space, tab or line break cannot be written."""
    out: list[str] = []
    for ex in examples:
        for i, token in enumerate(ex.tokens):
            if not token.strip() or any(c in token for c in " \t\r\n"):
                raise JiyiError(
                    f"{ex.source}: token {i + 1} ({token!r}) is blank or holds a space, tab or "
                    "line break, which CoNLL columns cannot hold; write JSON Lines instead."
                )
            out.append(f"{token}\t{ex.tags[i]}\n" if ex.tags is not None else f"{token}\n")
        out.append("\n")
    atomic_write_text(path, "".join(out))


def write_jsonl(examples: Iterable[NerExample], path: str | Path) -> None:
    """Write `{"tokens": [...], "tags": [...]}` lines (no "tags" when untagged); atomically."""
    out = []
    for ex in examples:
        record: dict[str, Any] = {"tokens": ex.tokens}
        if ex.tags is not None:
            record["tags"] = ex.tags
        out.append(json.dumps(record, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(out))


# ---------------------------------------------------------------------------------------------
# Sources: numbered lines in, sentences (or the reason one is bad) out.

Lines = Iterator[tuple[int, str]]


def _numbered(f: Iterable[str]) -> Lines:
    """(1-based line, text without its line end); \\n, \\r\\n and \\r end a line."""
    for n, text in enumerate(f, start=1):
        yield n, text.rstrip("\n")


def _is_jsonl(path: Path, lines: Lines) -> tuple[bool, Lines]:
    """JSONL by extension; an unknown extension by its first non-blank line (a JSON object)."""
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES or suffix in CONLL_SUFFIXES:
        return suffix in JSONL_SUFFIXES, lines
    head: list[tuple[int, str]] = []
    for n, text in lines:
        head.append((n, text))
        if text.strip():
            break
    first = head[-1][1].strip() if head else ""
    try:
        jsonl = first.startswith("{") and isinstance(json.loads(first), dict)
    except ValueError:
        jsonl = False
    return jsonl, chain(head, lines)


def _line_problem(text: str) -> str | None:
    """Why a decoded line cannot be read (bytes that are not UTF-8, NUL bytes), or None."""
    if m := SURROGATE.search(text):
        byte = ord(m.group()) - 0xDC00  # surrogateescape maps byte b to U+DC00 + b
        return (
            f"not valid UTF-8 (byte 0x{byte:02x} at character {m.start() + 1}); save the file as "
            "UTF-8"
        )
    if "\x00" in text:
        return "NUL bytes in the line (is this a binary file?)"
    return None


def _conll_sentences(lines: Lines, labelled: bool | None) -> Iterator[_Sentence | _Bad]:
    tokens: list[str] = []
    tags: list[str] = []
    first = 0  # the line the sentence starts on; 0 between sentences
    bad: _Bad | None = None  # the first problem of the sentence: it is skipped whole
    decided_at = 0  # the line whose column count decided `labelled` (when it was None)
    for n, text in chain(lines, [(0, "")]):  # a final blank line ends the last sentence
        columns = _COLUMNS.split(text.strip(" \t")) if text.strip() else []
        if not columns or columns[0] == DOCSTART:
            if first:
                yield bad or _Sentence(first, tokens, tags if labelled else None)
            tokens, tags, first, bad = [], [], 0, None
            continue
        first = first or n
        if bad:
            continue
        if problem := _line_problem(text):
            bad = _Bad(n, problem)
            continue
        if labelled is None:
            labelled, decided_at = len(columns) > 1, n
        if labelled and len(columns) == 1:
            bad = _Bad(
                n,
                f'1 column ("{columns[0]}"): expected a token and its tag separated by a tab or '
                "spaces (the token first, the tag last)",
            )
        elif not labelled and len(columns) > 1 and decided_at:
            bad = _Bad(
                n,
                f"{len(columns)} columns, but line {decided_at} has 1, so the file was read as "
                "tokens without tags; give every token a tag, or none",
            )
        elif labelled:
            try:
                parse_tag(columns[-1])
            except ValueError as e:
                bad = _Bad(n, str(e))
        tokens.append(columns[0])
        tags.append(columns[-1])


def _jsonl_sentences(
    lines: Lines, where: str, tokens_column: str, tags_column: str, labelled: bool | None
) -> Iterator[_Sentence | _Bad]:
    decided_at = 0  # the first object's line, whose keys decided `labelled` (when it was None)
    for n, text in lines:
        if not text.strip():
            continue
        if problem := _line_problem(text):
            yield _Bad(n, problem)
            continue
        if not decided_at and text.lstrip().startswith("["):
            raise JiyiError(
                f"{where} line {n}: a JSON array; jiyi reads JSON Lines, one object per line: "
                f'{{"{tokens_column}": [...], "{tags_column}": [...]}}.'
            )
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            yield _Bad(n, f"not valid JSON ({e.msg} at column {e.colno})")
            continue
        except (ValueError, RecursionError) as e:
            yield _Bad(n, f"not valid JSON ({e})")
            continue
        if not isinstance(record, dict):
            yield _Bad(
                n,
                f'expected a JSON object like {{"{tokens_column}": [...], "{tags_column}": '
                f"[...]}}, got {json_kind(record)}",
            )
            continue
        if not decided_at:  # the first object: check its keys once for the whole file
            decided_at = n
            keys = ", ".join(f'"{k}"' for k in record) or "none"
            if tokens_column not in record:
                raise JiyiError(
                    f'{where} line {n}: no key "{tokens_column}"; the object has keys: {keys}. '
                    "Pass --tokens-column NAME to use another."
                )
            if labelled is None:
                labelled = tags_column in record
            elif labelled and tags_column not in record:
                raise JiyiError(
                    f'{where} line {n}: no key "{tags_column}"; the object has keys: {keys}. '
                    "Pass --tags-column NAME to use another."
                )
        try:
            sentence = _jsonl_sentence(n, record, tokens_column, tags_column, labelled, decided_at)
        except _BadRecord as e:
            yield _Bad(n, str(e))
            continue
        if sentence.tokens:  # an empty sentence is skipped
            yield sentence


class _BadRecord(Exception):
    pass


def _jsonl_sentence(
    n: int, record: dict[str, Any], tokens_key: str, tags_key: str, labelled: bool, first: int
) -> _Sentence:
    if tokens_key not in record:
        raise _BadRecord(f'no "{tokens_key}" key')
    tokens = _strings(record[tokens_key], tokens_key)
    for i, token in enumerate(tokens):
        if not token.strip():
            raise _BadRecord(f"{tokens_key}[{i}] is blank; remove it (and its tag)")
    if not labelled:
        if tags_key in record and first != n:
            raise _BadRecord(
                f'has "{tags_key}", but line {first} has none, so the file was read as tokens '
                "without tags; give every line tags, or none"
            )
        return _Sentence(n, tokens, None)
    if tags_key not in record:
        raise _BadRecord(f'no "{tags_key}" key; give every line tags')
    tags = _strings(record[tags_key], tags_key)
    if len(tags) != len(tokens):
        raise _BadRecord(
            f'{len(tokens)} tokens in "{tokens_key}" but {len(tags)} tags in "{tags_key}"; '
            "give each token one tag"
        )
    for i, tag in enumerate(tags):
        try:
            parse_tag(tag)
        except ValueError as e:
            raise _BadRecord(f"{tags_key}[{i}]: {e}") from None
    return _Sentence(n, tokens, tags)


def _strings(value: Any, key: str) -> list[str]:
    if not isinstance(value, list):
        hint = " (split the text into tokens)" if isinstance(value, str) else ""
        raise _BadRecord(f'"{key}" is {json_kind(value)}, expected a list of strings{hint}')
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _BadRecord(f"{key}[{i}] is {json_kind(item)}, expected a string")
        if "\x00" in item or SURROGATE.search(item):
            raise _BadRecord(f"{key}[{i}] holds NUL or undecodable characters")
    return value
