"""How a command reads its data files: the CSV/TSV field delimiter (guessed, or --delimiter) and
the advice a bad row gets (--on-bad-rows named only to a command that has it).

`jiyi.cli.main` runs every verb inside `reading(delimiter=args.delimiter, settings=vars(args))`;
the readers (`jiyi.data.readers`, the NER, QA and seq2seq readers) ask `reading_options()`.

>>> guess_delimiter("text;label\\ngood, fun;pos\\n", ",", ["text", "label"])
';'
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

from jiyi.errors import JiyiError

DELIMITERS = (",", ";", "\t", "|")  # what a CSV/TSV file's delimiter is guessed among
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


@dataclass(frozen=True)
class ReadingOptions:
    """How a command reads its data files (`reading` sets them for everything it reads)."""

    delimiter: str | None = None
    """The CSV/TSV field delimiter; None: guessed per file (`guess_delimiter`)."""
    settings: frozenset[str] | None = None
    """The settings (argparse dests) the running command has: a message suggests --on-bad-rows
    or --delimiter only to a command that has it. None (library use): all are suggested."""

    def offers(self, setting: str) -> bool:
        return self.settings is None or setting in self.settings


_OPTIONS: ContextVar[ReadingOptions | None] = ContextVar("jiyi_reading", default=None)


def reading_options() -> ReadingOptions:
    """The options `reading` set for the current command (the defaults outside one)."""
    return _OPTIONS.get() or ReadingOptions()


@contextlib.contextmanager
def reading(
    *, delimiter: str | None = None, settings: Iterable[str] | None = None
) -> Iterator[ReadingOptions]:
    """Read every data file inside the block with these options; a None keeps the outer value.

    >>> with reading(delimiter="semicolon"):  # doctest: +SKIP
    ...     read_examples("tickets.csv")  # read with ";", not guessed
    """
    outer = reading_options()
    options = ReadingOptions(
        delimiter=outer.delimiter if delimiter is None else parse_delimiter(delimiter),
        settings=outer.settings if settings is None else frozenset(settings),
    )
    token = _OPTIONS.set(options)
    try:
        yield options
    finally:
        _OPTIONS.reset(token)


def parse_delimiter(value: str) -> str:
    """A --delimiter value as one character: `;` `|` `,`, or a name (tab, \\t, comma, semicolon,
    pipe). A quote, a newline or several characters -> JiyiError naming the flag.

    >>> parse_delimiter("tab"), parse_delimiter(";")
    ('\\t', ';')
    """
    char = DELIMITER_NAMES.get(value.lower(), value) if len(value) > 1 else value
    if len(char) != 1 or char in '"\r\n' or char.isalnum():
        names = ", ".join(DELIMITER_NAMES)
        raise JiyiError(
            f"--delimiter {value!r}: give one character such as ; or | (or a name: {names})."
        )
    return char


def guess_delimiter(text: str, default: str, columns: Sequence[str] = ()) -> str:
    """The field delimiter of CSV/TSV text: the extension's `default` when its header holds the
    wanted `columns` (or, none wanted, more than one column), else `csv.Sniffer`'s guess among
    `DELIMITERS` on the header and the next lines, else the first that splits the header into
    the wanted columns, else `default`.

    >>> guess_delimiter("text;label\\ngood; fun;pos\\n", ",", ["text", "label"])
    ';'
    >>> guess_delimiter("text,label\\na; b,pos\\n", ",", ["text", "label"])
    ','
    """
    sample = "\n".join(text.lstrip("\ufeff").splitlines()[:6])

    def fits(delimiter: str) -> bool:
        try:
            header = next(csv.reader(io.StringIO(sample), delimiter=delimiter), [])
        except csv.Error:
            return False
        names = {c.strip() for c in header}
        return all(c in names for c in columns) if columns else len(names) > 1

    if fits(default):
        return default
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        sniffed = None
    for delimiter in (sniffed, *DELIMITERS):
        if delimiter and fits(delimiter):
            return delimiter
    return default


def file_delimiter(raw: bytes, fmt: str, columns: Sequence[str] = ()) -> str:
    """The delimiter to read a "csv" or "tsv" file's bytes with: `reading`'s, else guessed
    (`guess_delimiter`) with the columns the read needs."""
    given = reading_options().delimiter
    if given is not None:
        return given
    text = raw[:65536].decode("utf-8", errors="replace")
    return guess_delimiter(text, "," if fmt == "csv" else "\t", columns)


def bad_row_advice(fix: str = "Fix or remove the row", skipped: str = "bad rows") -> str:
    """What to do about a bad row; --on-bad-rows is named only to a command that has it.

    >>> bad_row_advice("Fix it", "the sentence")  # outside `reading`, or in a verb that has it
    'Fix it, or pass --on-bad-rows skip to skip the sentence.'
    """
    if reading_options().offers("on_bad_rows"):
        return f"{fix}, or pass --on-bad-rows skip to skip {skipped}."
    return f"{fix}."
