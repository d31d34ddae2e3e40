"""jiyi.ner.tags: BIO and BIOES tags to spans and back, invalid sequences repaired and counted."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jiyi.ner.tags import (
    Span,
    convert,
    detect_scheme,
    entity_types,
    label_list,
    parse_tag,
    repair,
    spans_from_tags,
    tags_from_spans,
)

# (BIO, BIOES, spans): valid sequences, by hand
CASES = [
    ([], [], []),
    (["O", "O"], ["O", "O"], []),
    (["B-PER"], ["S-PER"], [Span(0, 1, "PER")]),
    (["B-PER", "I-PER", "I-PER"], ["B-PER", "I-PER", "E-PER"], [Span(0, 3, "PER")]),
    (["B-PER", "B-PER"], ["S-PER", "S-PER"], [Span(0, 1, "PER"), Span(1, 2, "PER")]),
    (
        ["O", "B-ORG", "I-ORG", "B-LOC", "O", "B-geo-loc", "I-geo-loc"],
        ["O", "B-ORG", "E-ORG", "S-LOC", "O", "B-geo-loc", "E-geo-loc"],
        [Span(1, 3, "ORG"), Span(3, 4, "LOC"), Span(5, 7, "geo-loc")],
    ),
]


@pytest.mark.parametrize(("bio", "bioes", "spans"), CASES)
def test_valid_sequences_round_trip(bio: list[str], bioes: list[str], spans: list[Span]) -> None:
    assert spans_from_tags(bio, "BIO") == (spans, 0)
    assert spans_from_tags(bioes, "BIOES") == (spans, 0)
    assert tags_from_spans(spans, len(bio), "BIO") == bio
    assert tags_from_spans(spans, len(bio), "BIOES") == bioes
    assert convert(bio, to="BIOES") == (bioes, 0)
    assert convert(bioes, to="BIO") == (bio, 0)
    assert convert(convert(bio, to="BIOES")[0], to="BIO") == (bio, 0)
    assert repair(bio, "BIO") == (bio, 0) and repair(bioes, "BIOES") == (bioes, 0)


@pytest.mark.parametrize(
    ("tags", "spans", "repairs", "repaired"),
    [
        (["O", "I-PER", "I-PER"], [Span(1, 3, "PER")], 1, ["O", "B-PER", "I-PER"]),
        (["I-PER"], [Span(0, 1, "PER")], 1, ["B-PER"]),
        (["B-PER", "I-LOC"], [Span(0, 1, "PER"), Span(1, 2, "LOC")], 1, ["B-PER", "B-LOC"]),
        (
            ["B-PER", "I-LOC", "I-PER"],  # each change of type starts an entity
            [Span(0, 1, "PER"), Span(1, 2, "LOC"), Span(2, 3, "PER")],
            2,
            ["B-PER", "B-LOC", "B-PER"],
        ),
        (
            ["I-a-b", "I-a-b", "I-a"],
            [Span(0, 2, "a-b"), Span(2, 3, "a")],
            2,
            ["B-a-b", "I-a-b", "B-a"],
        ),
    ],
)
def test_bio_repairs(tags: list[str], spans: list[Span], repairs: int, repaired: list[str]) -> None:
    assert spans_from_tags(tags, "BIO") == (spans, repairs)
    assert repair(tags) == (repaired, repairs)
    assert repair(repaired) == (repaired, 0)


@pytest.mark.parametrize(
    ("tags", "spans", "repaired"),
    [
        (["B-X"], [Span(0, 1, "X")], ["S-X"]),  # B-X never closed
        (["B-X", "I-X", "O"], [Span(0, 2, "X")], ["B-X", "E-X", "O"]),  # closed where it stops
        (["O", "E-X"], [Span(1, 2, "X")], ["O", "S-X"]),  # a lone E-X
        (["I-X", "E-X"], [Span(0, 2, "X")], ["B-X", "E-X"]),  # I-X with no B-X starts it
        (["B-X", "S-X"], [Span(0, 1, "X"), Span(1, 2, "X")], ["S-X", "S-X"]),
        (["B-X", "E-Y"], [Span(0, 1, "X"), Span(1, 2, "Y")], ["S-X", "S-Y"]),
        (["B-X", "I-X", "I-X"], [Span(0, 3, "X")], ["B-X", "I-X", "E-X"]),
    ],
)
def test_bioes_repairs(tags: list[str], spans: list[Span], repaired: list[str]) -> None:
    repairs = sum(a != b for a, b in zip(tags, repaired, strict=True))
    assert repairs >= 1
    assert spans_from_tags(tags, "BIOES") == (spans, repairs)
    assert repair(tags, "BIOES") == (repaired, repairs)
    assert convert(tags, to="BIO", source="BIOES") == (tags_from_spans(spans, len(tags)), repairs)


def test_s_tag_is_a_one_token_entity() -> None:
    assert spans_from_tags(["S-X", "S-X", "O", "S-Y"], "BIOES") == (
        [Span(0, 1, "X"), Span(1, 2, "X"), Span(3, 4, "Y")],
        0,
    )


def test_convert_detects_the_source_scheme() -> None:
    # as BIO this would be valid; the S- tag makes it BIOES, where B-X must be closed
    assert convert(["B-X", "I-X", "S-Y"], to="BIO") == (["B-X", "I-X", "B-Y"], 1)
    assert convert(["B-X", "I-X"], to="BIOES") == (["B-X", "E-X"], 0)
    assert convert(["B-X", "I-X"], to="BIOES", source="BIOES") == (["B-X", "E-X"], 1)


def test_parse_tag() -> None:
    assert parse_tag("O") == ("O", None)
    assert parse_tag("B-PER") == ("B", "PER")
    assert parse_tag("I-other-thing") == ("I", "other-thing")
    assert parse_tag("E-X") == ("E", "X") and parse_tag("S-X") == ("S", "X")


@pytest.mark.parametrize(
    ("tag", "hint"),
    [
        ("PER", "B-PER, I-PER or O"),
        ("B_PER", "B-PER, I-PER or O"),
        ("U-LOC", "B-LOC, I-LOC or O"),
        ("b-per", "B-per, I-per or O"),
        ("B-", "B-PER, I-PER or O"),
        ("", "B-PER, I-PER or O"),
        ("B-New York", "B-PER, I-PER or O"),
        ("o", "B-o, I-o or O"),
    ],
)
def test_bad_tags_say_what_was_expected(tag: str, hint: str) -> None:
    with pytest.raises(ValueError, match=f'bad tag "{tag}": expected {hint}'):
        parse_tag(tag)
    with pytest.raises(ValueError, match="bad tag"):
        spans_from_tags(["O", tag])


def test_bioes_tags_in_a_bio_sequence_are_rejected() -> None:
    with pytest.raises(ValueError, match='tag "S-X" is BIOES, but the sequence is read as BIO'):
        spans_from_tags(["O", "S-X"], "BIO")


def test_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="unknown tag scheme 'IOB'"):
        spans_from_tags(["O"], "IOB")  # type: ignore[arg-type]


def test_detect_scheme() -> None:
    assert detect_scheme([["O", "B-X", "I-X"], ["O"]]) == "BIO"
    assert detect_scheme([["O", "B-X", "I-X"], ["E-X"]]) == "BIOES"
    assert detect_scheme([["S-X"]]) == "BIOES"
    assert detect_scheme([]) == "BIO"


def test_entity_types_and_label_list() -> None:
    sequences = [["B-PER", "O", "I-geo-loc"], ["S-LOC"], ["O"]]
    assert entity_types(sequences) == ["LOC", "PER", "geo-loc"]
    assert label_list(["PER", "LOC"], "BIO") == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert label_list(["LOC", "PER", "LOC"], "BIO") == label_list(["PER", "LOC"], "BIO")
    assert label_list(["X"], "BIOES") == ["O", "B-X", "I-X", "E-X", "S-X"]
    assert label_list([], "BIOES") == ["O"]


@pytest.mark.parametrize(
    ("spans", "length", "message"),
    [
        ([Span(0, 2, "X"), Span(1, 3, "Y")], 3, "overlaps"),
        ([Span(2, 4, "X")], 3, "does not fit in 3 tokens"),
        ([Span(1, 1, "X")], 3, "does not fit"),
        ([Span(0, 1, "")], 3, "non-empty string without spaces"),
        ([Span(0, 1, "a b")], 3, "non-empty string without spaces"),
    ],
)
def test_tags_from_bad_spans(spans: list[Span], length: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tags_from_spans(spans, length)


def test_tags_from_spans_in_any_order() -> None:
    spans = [Span(3, 4, "B"), Span(0, 2, "A")]
    assert tags_from_spans(spans, 4) == ["B-A", "I-A", "O", "B-B"]


@st.composite
def span_sets(draw: st.DrawFn) -> tuple[list[Span], int]:
    """Non-overlapping spans over a sentence of up to 30 tokens, types with hyphens included."""
    length = draw(st.integers(0, 30))
    cuts = sorted(draw(st.sets(st.integers(0, length), max_size=12)))
    types = st.sampled_from(["PER", "LOC", "geo-loc", "a-b-c", "X"])
    spans = [Span(start, end, draw(types)) for start, end in pairwise(cuts) if draw(st.booleans())]
    return spans, length


@settings(max_examples=300, deadline=None)
@given(span_sets())
def test_spans_to_tags_to_spans_in_both_schemes(case: tuple[list[Span], int]) -> None:
    spans, length = case
    bio = tags_from_spans(spans, length, "BIO")
    bioes = tags_from_spans(spans, length, "BIOES")
    assert len(bio) == len(bioes) == length
    assert spans_from_tags(bio, "BIO") == (spans, 0)
    assert spans_from_tags(bioes, "BIOES") == (spans, 0)
    assert convert(bio, to="BIOES", source="BIO") == (bioes, 0)
    assert convert(bioes, to="BIO", source="BIOES") == (bio, 0)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["O", "B-X", "I-X", "E-X", "S-X", "B-Y", "I-Y", "E-Y"]), max_size=20)
)
def test_any_bioes_sequence_repairs_to_a_valid_one(tags: list[str]) -> None:
    fixed, repairs = repair(tags, "BIOES")
    assert repairs == sum(a != b for a, b in zip(tags, fixed, strict=True))
    assert (repairs == 0) == (fixed == tags)
    assert repair(fixed, "BIOES") == (fixed, 0)  # repairing is idempotent
    spans, _ = spans_from_tags(tags, "BIOES")
    assert spans_from_tags(fixed, "BIOES") == (spans, 0)  # the same entities
