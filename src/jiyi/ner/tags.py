"""Tag schemes for named entities: BIO and BIOES tags to spans and back, invalid sequences repaired.

A tag is "O" (outside) or PREFIX-TYPE: B- begins an entity, I- continues it; BIOES adds E- (the
last token of an entity of two or more) and S- (a one-token entity). Types may hold "-"
("B-geo-loc" is type "geo-loc"). Spans are token indices, end exclusive:

>>> spans_from_tags(["B-PER", "I-PER", "O", "B-LOC"])
([Span(start=0, end=2, type='PER'), Span(start=3, end=4, type='LOC')], 0)
>>> convert(["B-PER", "I-PER", "O", "B-LOC"], to="BIOES")
(['B-PER', 'E-PER', 'O', 'S-LOC'], 0)

Invalid sequences are read the way conlleval and seqeval's default (lenient) mode read them, and
repaired: an I-X that does not continue an X starts an entity; in BIOES an entity that is not
closed by E-X ends where its tags stop, and a lone E-X is a one-token entity. The repair count is
the number of tags that differ from the valid sequence of the same spans:

>>> convert(["O", "I-PER", "I-PER", "B-PER", "I-LOC"], to="BIO")
(['O', 'B-PER', 'I-PER', 'B-PER', 'B-LOC'], 2)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Scheme = Literal["BIO", "BIOES"]
SCHEMES: tuple[Scheme, ...] = ("BIO", "BIOES")
PREFIXES: dict[str, tuple[str, ...]] = {"BIO": ("B", "I"), "BIOES": ("B", "I", "E", "S")}
_LOOKS_PREFIXED = re.compile(r"^[BIESOLU][-_]", re.IGNORECASE)  # "b_per", "U-PER": then a type


@dataclass(frozen=True, order=True)
class Span:
    """Tokens start..end-1 form an entity of `type`."""

    start: int
    end: int  # exclusive
    type: str


def parse_tag(tag: str) -> tuple[str, str | None]:
    """("B", "PER") for "B-PER", ("O", None) for "O"; ValueError (saying what was expected) else.

    >>> parse_tag("B-geo-loc"), parse_tag("O")
    (('B', 'geo-loc'), ('O', None))
    >>> parse_tag("PER")
    Traceback (most recent call last):
    ValueError: bad tag "PER": expected B-PER, I-PER or O (BIOES also E-PER, S-PER)
    """
    if tag == "O":
        return "O", None
    prefix, dash, type_ = tag.partition("-") if isinstance(tag, str) else ("", "", "")
    if dash and prefix in ("B", "I", "E", "S") and type_ and type_.split() == [type_]:
        return prefix, type_
    t = _guess_type(tag)
    raise ValueError(f"bad tag {_quote(tag)}: expected B-{t}, I-{t} or O (BIOES also E-{t}, S-{t})")


def detect_scheme(tag_sequences: Iterable[Iterable[str]]) -> Scheme:
    """The scheme of the tags: BIOES when any tag is E- or S-, else BIO."""
    for tags in tag_sequences:
        for tag in tags:
            if tag[:2] in ("E-", "S-"):
                return "BIOES"
    return "BIO"


def spans_from_tags(tags: Iterable[str], scheme: Scheme = "BIO") -> tuple[list[Span], int]:
    """The entities of a tag sequence, and how many tags a repair changes (0 when valid).

    An entity continues while I- (or E-) tags of its type follow; any other tag ends it. E- and
    S- tags close it. ValueError for a bad tag, or an E-/S- tag when `scheme` is "BIO".

    >>> spans_from_tags(["B-X", "I-X"], "BIOES")  # not closed by E-X: B-X E-X, 1 repair
    ([Span(start=0, end=2, type='X')], 1)
    >>> spans_from_tags(["O", "E-X", "S-Y"], "BIOES")  # lone E-X: S-X, 1 repair
    ([Span(start=1, end=2, type='X'), Span(start=2, end=3, type='Y')], 1)
    """
    _check_scheme(scheme)
    tags = list(tags)
    spans: list[Span] = []
    start, open_type = 0, None  # the entity being read, if any
    for i, tag in enumerate(tags):
        prefix, type_ = parse_tag(tag)
        if scheme == "BIO" and prefix in ("E", "S"):
            raise ValueError(f"tag {_quote(tag)} is BIOES, but the sequence is read as BIO")
        continues = open_type is not None and prefix in ("I", "E") and type_ == open_type
        if open_type is not None and not continues:
            spans.append(Span(start, i, open_type))
            open_type = None
        if prefix == "O":
            continue
        if not continues:
            start, open_type = i, type_
        if prefix in ("E", "S"):
            spans.append(Span(start, i + 1, type_))
            open_type = None
    if open_type is not None:
        spans.append(Span(start, len(tags), open_type))
    valid = tags_from_spans(spans, len(tags), scheme)
    return spans, sum(a != b for a, b in zip(tags, valid, strict=True))


def tags_from_spans(spans: Iterable[Span], length: int, scheme: Scheme = "BIO") -> list[str]:
    """The valid tag sequence of `length` tokens holding `spans` (any order, not overlapping).

    >>> tags_from_spans([Span(0, 3, "ORG"), Span(4, 5, "PER")], 5, "BIOES")
    ['B-ORG', 'I-ORG', 'E-ORG', 'O', 'S-PER']
    """
    _check_scheme(scheme)
    tags = ["O"] * length
    previous: Span | None = None
    for span in sorted(spans):
        if not 0 <= span.start < span.end <= length:
            raise ValueError(f"{span} does not fit in {length} tokens (0 <= start < end <= length)")
        if not isinstance(span.type, str) or span.type.split() != [span.type]:
            raise ValueError(f"{span}: the type must be a non-empty string without spaces")
        if previous is not None and span.start < previous.end:
            raise ValueError(f"{span} overlaps {previous}")
        previous = span
        tags[span.start] = f"B-{span.type}"
        for i in range(span.start + 1, span.end):
            tags[i] = f"I-{span.type}"
        if scheme == "BIOES":
            last = span.end - 1
            tags[last] = f"S-{span.type}" if last == span.start else f"E-{span.type}"
    return tags


def convert(tags: Iterable[str], to: Scheme, source: Scheme | None = None) -> tuple[list[str], int]:
    """Tags in scheme `to`, and the repair count; `source` is detected from `tags` when None.

    Converting to the source scheme repairs a sequence (see `repair`).
    >>> convert(["S-PER", "B-ORG", "E-ORG"], to="BIO")
    (['B-PER', 'B-ORG', 'I-ORG'], 0)
    """
    tags = list(tags)
    spans, repairs = spans_from_tags(tags, source or detect_scheme([tags]))
    return tags_from_spans(spans, len(tags), to), repairs


def repair(tags: Iterable[str], scheme: Scheme | None = None) -> tuple[list[str], int]:
    """The valid sequence of the same entities, in the same scheme, and the tags changed.

    >>> repair(["O", "I-PER", "I-PER"])
    (['O', 'B-PER', 'I-PER'], 1)
    """
    tags = list(tags)
    scheme = scheme or detect_scheme([tags])
    return convert(tags, to=scheme, source=scheme)


def entity_types(tag_sequences: Iterable[Iterable[str]]) -> list[str]:
    """The entity types in the tags, sorted: [["B-PER", "O"], ["S-LOC"]] -> ["LOC", "PER"]."""
    types = {parse_tag(tag)[1] for tags in tag_sequences for tag in tags}
    return sorted(t for t in types if t is not None)


def label_list(types: Iterable[str], scheme: Scheme = "BIO") -> list[str]:
    """Every tag of `scheme` over `types` (sorted, once each): "O" first, then per type B-, I-
    (and E-, S- for BIOES). The order a model's labels follow.

    >>> label_list(["PER", "LOC"], "BIO")
    ['O', 'B-LOC', 'I-LOC', 'B-PER', 'I-PER']
    """
    _check_scheme(scheme)
    return ["O"] + [f"{p}-{t}" for t in sorted(set(types)) for p in PREFIXES[scheme]]


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; expected BIO or BIOES")


def _guess_type(tag: object) -> str:
    """The type a bad tag probably meant, for the hint: "PER", "b_per" -> "per", "B-" -> "PER"."""
    if not isinstance(tag, str) or tag.split() != [tag]:
        return "PER"
    return _LOOKS_PREFIXED.sub("", tag, count=1) or "PER"


def _quote(tag: object) -> str:
    return f'"{tag}"' if isinstance(tag, str) else repr(tag)
