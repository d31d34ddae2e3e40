"""jiyi.data.readers: every format reads the same examples; every bad input is a JiyiError that
names the file and the line."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jiyi.data.readers import (
    Example,
    ReadResult,
    check_split_labels,
    label_list,
    read_examples,
    read_inputs,
    stratified_split,
)
from jiyi.data.reading import guess_delimiter, parse_delimiter, reading
from jiyi.errors import JiyiError

ROWS = [
    ("a good film", "pos"),
    ('quotes "inside", a comma\nand a line break', "neg"),
    ("  leading and trailing spaces kept  ", "pos"),
    ("中文评论，很好", "neg"),
    ("tab\tinside", "pos"),
]


def write_csv(
    path: Path, header: list[str], rows: list[list[object]], delimiter: str = ","
) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


def error(path: Path | str, **kwargs) -> str:
    with pytest.raises(JiyiError) as info:
        read_examples(path, **kwargs)
    return str(info.value)


def triples(result: ReadResult) -> list[tuple]:
    return [(ex.text, ex.label, ex.text_pair) for ex in result.examples]


# ---------------------------------------------------------------------------------------------
# Formats


def write_all_formats(tmp_path: Path, columns: dict[str, list]) -> list[Path]:
    """The same table as CSV, TSV, JSONL, JSON, Parquet and a datasets folder."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = list(columns)
    records = [
        dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)
    ]

    def cell(v: object) -> object:
        return json.dumps(v) if isinstance(v, list) else v

    table = [[cell(r[n]) for n in names] for r in records]
    paths = [
        write_csv(tmp_path / "d.csv", names, table),
        write_csv(tmp_path / "d.tsv", names, table, delimiter="\t"),
        write_jsonl(tmp_path / "d.jsonl", records),
        write_jsonl(tmp_path / "d.json", records),
    ]
    pq.write_table(pa.table(columns), tmp_path / "d.parquet")
    datasets.Dataset.from_dict(columns).save_to_disk(str(tmp_path / "ds"))
    return [*paths, tmp_path / "d.parquet", tmp_path / "ds"]


def test_all_formats_read_the_same_examples(tmp_path: Path) -> None:
    columns = {"text": [t for t, _ in ROWS], "label": [lab for _, lab in ROWS]}
    expected = [(t, lab, None) for t, lab in ROWS]
    for path in write_all_formats(tmp_path, columns):
        result = read_examples(path)
        assert triples(result) == expected, path
        assert result.skipped == []
        assert result.path == path


def test_all_formats_read_pairs_and_multilabel_lists(tmp_path: Path) -> None:
    columns = {
        "premise": ["a", "b", "c"],
        "hypothesis": ["x", "y", "z"],
        "tags": [["sport", "news"], [], ["news"]],
    }
    expected = [("a", ("sport", "news"), "x"), ("b", (), "y"), ("c", ("news",), "z")]
    for path in write_all_formats(tmp_path, columns):
        result = read_examples(
            path, text_column="premise", text_pair_column="hypothesis", label_column="tags",
            task="multilabel",
        )  # fmt: skip
        assert triples(result) == expected, path


def test_line_numbers_are_physical_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b'text,label\r\n"two\r\nlines",a\r\n\r\nthird,b\r\n')
    assert [ex.line for ex in read_examples(path).examples] == [2, 5]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'\n{"text": "a", "label": 1}\n\n{"text": "b", "label": 2}')
    assert [ex.line for ex in read_examples(path).examples] == [2, 4]
    for path in write_all_formats(tmp_path, {"text": ["a", "b"], "label": ["x", "y"]})[-2:]:
        assert [ex.line for ex in read_examples(path).examples] == [1, 2]  # Parquet, datasets rows


def test_bom_and_header_spaces_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbftext, label\nhello,x\n")
    assert triples(read_examples(path)) == [("hello", "x", None)]
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "hello", "label": "x"}\n')
    assert triples(read_examples(path)) == [("hello", "x", None)]


def test_label_values_become_names(tmp_path: Path) -> None:
    labels = [1, 1.0, "1.0", " 2 ", True, "neg", 10]
    path = write_jsonl(tmp_path / "l.jsonl", [{"text": "t", "label": v} for v in labels])
    assert [ex.label for ex in read_examples(path).examples] == [
        "1",
        "1",
        "1",
        "2",
        "true",
        "neg",
        "10",
    ]


def test_multilabel_forms(tmp_path: Path) -> None:
    cells = ['["a", "b"]', "a|b", "a;b", "a,b", "a,b|c", "a", "[]", '["a", "a", 3]']
    path = write_csv(tmp_path / "m.csv", ["text", "label"], [["t", c] for c in cells])
    labels = [ex.label for ex in read_examples(path, task="multilabel").examples]
    assert labels == [
        ("a", "b"), ("a", "b"), ("a", "b"), ("a", "b"), ("a,b", "c"), ("a",), (), ("a", "3"),
    ]  # fmt: skip
    path = write_csv(tmp_path / "d.csv", ["text", "label"], [["t", "a/b|c"]])
    assert read_examples(path, task="multilabel", label_delimiter="/").examples[0].label == (
        "a",
        "b|c",
    )


def test_datasets_folder_class_labels_and_splits(tmp_path: Path) -> None:
    import datasets

    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    ds = datasets.Dataset.from_dict({"text": ["bad", "good"], "label": [0, 1]}, features=features)
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "dd"))
    message = error(tmp_path / "dd")
    assert (
        "DatasetDict" in message
        and "train" in message
        and str(tmp_path / "dd" / "train") in message
    )
    assert triples(read_examples(tmp_path / "dd" / "train")) == [
        ("bad", "neg", None),
        ("good", "pos", None),
    ]


def test_unlabelled_reading(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "u.csv", ["text"], [["a"], ["b"]])
    assert "--label-column" in error(path)
    assert triples(read_examples(path, require_labels=False)) == [
        ("a", None, None),
        ("b", None, None),
    ]
    path = write_csv(tmp_path / "p.csv", ["text", "label"], [["a", ""], ["b", "x"]])
    assert [ex.label for ex in read_examples(path, require_labels=False).examples] == [None, "x"]


# ---------------------------------------------------------------------------------------------
# Bad input: file level (always an error)


def test_missing_file_directory_and_unknown_type(tmp_path: Path) -> None:
    assert error(tmp_path / "nope.csv") == f"{tmp_path / 'nope.csv'}: no such file."
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "train.csv").write_text("text,label\n")
    message = error(tmp_path / "dir")
    assert "not a folder saved by datasets" in message and "train.csv" in message
    (tmp_path / "x.xlsx").write_bytes(b"PK")
    assert ".xlsx" in error(tmp_path / "x.xlsx")
    (tmp_path / "x.txt").write_text("hello\n")
    assert "no labels" in error(tmp_path / "x.txt")


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xef\xbb\xbf", b"  \r\n"])
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_empty_file(tmp_path: Path, content: bytes, suffix: str) -> None:
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(content)
    assert error(path) == f"{path}: the file is empty."


def test_header_only_and_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("text,label\n\n")
    assert error(path) == f"{path}: the file has a header line but no rows."
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.string())}),
        tmp_path / "e.parquet",
    )
    assert "no rows" in error(tmp_path / "e.parquet")


def test_missing_columns_name_the_flag_and_list_the_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ["sentence", "label"], [["a", "b"]])
    message = error(path)
    assert str(path) in message and '"text"' in message and "'sentence'" in message
    assert "--text-column" in message
    message = error(path, text_column="sentence", label_column="y")
    assert '"y"' in message and "--label-column" in message
    message = error(path, text_column="sentence", text_pair_column="pair")
    assert '"pair"' in message and "--text-pair-column" in message
    jsonl = write_jsonl(tmp_path / "c.jsonl", [{"sentence": "a", "label": "x"}])
    assert "--text-column" in error(jsonl) and "'sentence'" in error(jsonl)


def test_json_array_file_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"text": "a", "label": "x"}], indent=2))
    message = error(path)
    assert "JSON array" in message and "jq -c" in message


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"definitely not parquet")
    assert str(path) in error(path) and "Parquet" in error(path)


def test_bad_utf8_header_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_bytes(b"t\xe9xt,label\nok,x\n")
    message = error(path, on_bad_rows="skip")
    assert f"{path} line 1" in message and "UTF-8" in message and "0xe9" in message


def test_every_row_bad(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\ncafé,x\nnaïve,y\n".encode("latin-1"))
    message = error(path, on_bad_rows="skip")
    assert message.startswith(f"{path}: every row is bad (2 skipped)")
    assert "line 2" in message and "Is the file UTF-8?" in message


# ---------------------------------------------------------------------------------------------
# Bad input: row level (an error naming the line, or skipped)


BAD_CSV_ROWS = [  # (row as written, reason fragment)
    (b",x", 'empty text in column "text"'),
    (b"   ,x", 'empty text in column "text"'),
    (b"hello,", 'empty label in column "label"'),
    (b"hello,  ", 'empty label in column "label"'),
    (b"a,b,c", "3 fields, but the header has 2"),
    (b"lonely", "1 fields, but the header has 2"),
    (b"caf\xe9,x", "not valid UTF-8 (byte 0xe9 at byte offset 35"),
    (b"nul\x00here,x", "NUL bytes"),
]


@pytest.mark.parametrize(("row", "reason"), BAD_CSV_ROWS)
def test_bad_csv_row_names_file_and_line(tmp_path: Path, row: bytes, reason: str) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(b'text,label\ngood,x\n"two\nlines",y\n' + row + b"\nlast,z\n")
    message = error(path)
    assert message.startswith(f"{path} line 5: ")
    assert reason in message
    assert message.endswith("Fix or remove the row, or pass --on-bad-rows skip to skip bad rows.")
    result = read_examples(path, on_bad_rows="skip")
    assert [ex.text for ex in result.examples] == ["good", "two\nlines", "last"]
    assert len(result.skipped) == 1 and result.skipped[0][0] == 5 and reason in result.skipped[0][1]


BAD_JSONL_LINES = [
    (b'{"text": "a", "label": }', "not valid JSON (Expecting value at column 24)"),
    (b'{"text": "a"', "not valid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'"just a string"', "expected a JSON object"),
    (b'{"text": "", "label": "x"}', 'empty text in column "text"'),
    (b'{"text": null, "label": "x"}', 'empty text in column "text"'),
    (b'{"label": "x"}', 'empty text in column "text"'),
    (b'{"text": 5, "label": "x"}', "is a number, expected a string"),
    (b'{"text": "a"}', 'empty label in column "label"'),
    (b'{"text": "a", "label": null}', 'empty label in column "label"'),
    (b'{"text": "a", "label": ["x"]}', "--task multilabel"),
    (b'{"text": "a", "label": {"x": 1}}', "is an object"),
    (b'{"text": "caf\xe9", "label": "x"}', "not valid UTF-8"),
    (b'{"text": "a\x00", "label": "x"}', "NUL bytes"),
    (b'{"text": "a\\u0000", "label": "x"}', "NUL bytes"),
    (b'{"text": "a\\ud800", "label": "x"}', "undecodable character"),
    (b"[" * 100_000, "not valid JSON"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_JSONL_LINES)
def test_bad_jsonl_line_names_file_and_line(tmp_path: Path, line: bytes, reason: str) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(
        b'{"text": "good", "label": "x"}\n\n' + line + b'\n{"text": "last", "label": "y"}\n'
    )
    message = error(path)
    assert message.startswith(f"{path} line 3: ") and reason in message
    result = read_examples(path, on_bad_rows="skip")
    assert [ex.line for ex in result.examples] == [1, 4]
    assert [line for line, _ in result.skipped] == [3]


def test_bad_multilabel_cells(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", ["text", "label"], [["t", "a"], ["t", '["a",'], ["t", ""]])
    result = read_examples(path, task="multilabel", on_bad_rows="skip")
    assert [ex.label for ex in result.examples] == [("a",)]
    assert [(line, "JSON list" in r or "empty label" in r) for line, r in result.skipped] == [
        (3, True),
        (4, True),
    ]


def test_parquet_rows_are_named_rows(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"text": ["a", None, "c"], "label": ["x", "y", None]}), path)
    assert error(path).startswith(f"{path} row 2: empty text")
    result = read_examples(path, on_bad_rows="skip")
    assert [ex.line for ex in result.examples] == [1] and [n for n, _ in result.skipped] == [2, 3]


def test_skip_counts(tmp_path: Path) -> None:
    body = b"text,label\n" + b"".join(row + b"\n" for row, _ in BAD_CSV_ROWS) + b"ok,x\n"
    path = tmp_path / "many.csv"
    path.write_bytes(body)
    result = read_examples(path, on_bad_rows="skip")
    assert len(result.examples) == 1 and len(result.skipped) == len(BAD_CSV_ROWS)
    assert [line for line, _ in result.skipped] == list(range(2, 2 + len(BAD_CSV_ROWS)))


def test_bad_arguments_name_their_flags(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", ["text", "label"], [["a", "b"]])
    assert "--on-bad-rows" in error(path, on_bad_rows="ignore")
    assert "--task" in error(path, task="regression")


# ---------------------------------------------------------------------------------------------
# Property: whatever the bytes, the only exception is JiyiError


def _check(path: Path) -> None:
    for mode in ("error", "skip"):
        for task in ("classification", "multilabel"):
            try:
                result = read_examples(path, on_bad_rows=mode, task=task)
            except JiyiError as e:
                assert str(e)
                continue
            assert result.examples and all(ex.text.strip() for ex in result.examples)
            lines = [ex.line for ex in result.examples] + [n for n, _ in result.skipped]
            assert all(n >= 1 for n in lines) and len(set(lines)) == len(lines)


PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CSV_ALPHABET = st.sampled_from(
    [
        b"a",
        b"b",
        b" ",
        b",",
        b"\t",
        b'"',
        b"\n",
        b"\r",
        b"\x00",
        b"\xff",
        b"\xc3",
        b"\xa9",
        "中".encode(),
        b"[",
    ]
)


@PROPERTY
@given(
    data=st.binary(max_size=300),
    suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".parquet"]),
)
def test_random_bytes_raise_only_jiyi_errors(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"random{suffix}"
    path.write_bytes(data)
    _check(path)


@PROPERTY
@given(
    body=st.lists(CSV_ALPHABET, max_size=80).map(b"".join), suffix=st.sampled_from([".csv", ".tsv"])
)
def test_malformed_csv_raises_only_jiyi_errors(tmp_path: Path, body: bytes, suffix: str) -> None:
    path = tmp_path / f"malformed{suffix}"
    path.write_bytes(b"text,label\n".replace(b",", b"\t" if suffix == ".tsv" else b",") + body)
    _check(path)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
JSON_LINES = st.one_of(
    st.fixed_dictionaries({"text": JSON_VALUES, "label": JSON_VALUES}).map(
        lambda d: json.dumps(d).encode()
    ),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=20),
    st.text(max_size=20).map(lambda s: s.encode("utf-8", "surrogatepass")),
)


@PROPERTY
@given(lines=st.lists(JSON_LINES, max_size=8))
def test_malformed_jsonl_raises_only_jiyi_errors(tmp_path: Path, lines: list[bytes]) -> None:
    path = tmp_path / "malformed.jsonl"
    path.write_bytes(b"\n".join(lines))
    _check(path)


# ---------------------------------------------------------------------------------------------
# read_inputs


def test_read_inputs_txt_and_csv(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"first text\n\n   \nsecond, with comma\r\n")
    assert [(ex.text, ex.line, ex.label) for ex in read_inputs(path)] == [
        ("first text", 1, None), ("second, with comma", 4, None),
    ]  # fmt: skip
    path = write_csv(tmp_path / "in.csv", ["text", "label"], [["a", "x"], ["", "y"], ["c", ""]])
    assert [(ex.text, ex.label, ex.line) for ex in read_inputs(path)] == [
        ("a", "x", 2),
        ("c", None, 4),
    ]
    path.write_text("text\n\n")
    with pytest.raises(JiyiError, match="no rows"):
        read_inputs(path)


@pytest.mark.parametrize(
    ("stdin", "expected"),
    [
        (b"one\ntwo {x}\n\n", [("one", 1), ("two {x}", 2)]),
        (b'\n{"text": "one"}\n{"text": "two", "label": 1}\n', [("one", 2), ("two", 3)]),
    ],
)
def test_read_inputs_stdin(monkeypatch: pytest.MonkeyPatch, stdin: bytes, expected: list) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    assert [(ex.text, ex.line) for ex in read_inputs("-")] == expected


def test_read_inputs_stdin_bad_json_names_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"text": "a"}\n{"text": \n')))
    with pytest.raises(JiyiError, match=r"^stdin line 2: not valid JSON"):
        read_inputs("-")


# ---------------------------------------------------------------------------------------------
# Labels and splits


def test_label_list() -> None:
    exs = [Example("t", lab) for lab in ["10", "2", "neg", "1", "2", "-1"]] + [Example("u", None)]
    assert label_list(exs, "classification") == ["-1", "1", "2", "10", "neg"]
    multi = [Example("t", ("b", "a")), Example("t", ()), Example("t", ("c",))]
    assert label_list(multi, "multilabel") == ["a", "b", "c"]


def test_check_split_labels(tmp_path: Path) -> None:
    train = read_examples(
        write_csv(tmp_path / "train.csv", ["text", "label"], [["a", "pos"], ["b", "neg"]])
    )
    val_path = write_csv(
        tmp_path / "val.csv", ["text", "label"], [["a", "pos"], ["b", "neutral"], ["c", "meh"]]
    )
    labels = label_list(train.examples, "classification")
    check_split_labels(train, train, labels, "--train")
    with pytest.raises(JiyiError) as info:
        check_split_labels(train, read_examples(val_path), labels, "--validation")
    message = str(info.value)
    assert message.startswith(f'--validation {val_path} line 3: label "neutral"')
    assert (
        str(tmp_path / "train.csv") in message and "neg, pos" in message and "2 row(s)" in message
    )


def test_stratified_split_is_stratified_and_deterministic() -> None:
    exs = [Example(f"a{i}", "a", line=i) for i in range(50)]
    exs += [Example(f"b{i}", "b") for i in range(10)] + [Example("c0", "c"), Example("c1", "c")]
    exs += [Example("d0", "d"), Example("m", ("b", "a"))]
    train, val = stratified_split(exs, 0.2, seed=3)
    assert (train, val) == stratified_split(exs, 0.2, seed=3)
    assert val != stratified_split(exs, 0.2, seed=4)[1]
    first = [ex.label if isinstance(ex.label, str) else ex.label[0] for ex in val]
    count = {lab: first.count(lab) for lab in "abcd"}
    assert count == {"a": 10, "b": 2, "c": 1, "d": 0}
    assert len(train) + len(val) == len(exs) and not set(train) & set(val)
    assert [ex.text for ex in val] == sorted(
        (ex.text for ex in val), key=[e.text for e in exs].index
    )
    with pytest.raises(JiyiError):
        stratified_split(exs, 1.0, seed=0)
    with pytest.raises(JiyiError, match="no label has 2"):
        stratified_split([Example("a", "x"), Example("b", "y")], 0.5, seed=0)


# ---------------------------------------------------------------------------------------------
# The field delimiter: guessed, or given (--delimiter).


@pytest.mark.parametrize(
    ("text", "suffix", "expected"),
    [
        ("text;label\ngood, fun film;pos\nbad;neg\n", ".csv", ";"),
        ("text|label\na, b; c|pos\nd|neg\n", ".csv", "|"),
        ("text\tlabel\na, b; c\tpos\n", ".csv", "\t"),
        ('text,label\n"a; b; c",pos\nd;e,neg\n', ".csv", ","),  # ; inside texts only
        ("text,label\na,pos\n", ".tsv", ","),  # a comma .tsv
        ("text\tlabel\na;b,c\tpos\n", ".tsv", "\t"),
    ],
)
def test_delimiter_is_guessed(text: str, suffix: str, expected: str, tmp_path: Path) -> None:
    path = tmp_path / f"data{suffix}"
    path.write_text(text, encoding="utf-8")
    examples = read_examples(path).examples
    assert examples[0].label == "pos"
    assert guess_delimiter(text, "," if suffix == ".csv" else "\t", ["text", "label"]) == expected


def test_given_delimiter_wins_over_the_guess(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text;label\na,b;pos\nc;neg\n", encoding="utf-8")
    assert [e.text for e in read_examples(path).examples] == ["a,b", "c"]
    with pytest.raises(JiyiError, match=r"separated by ','; pass --delimiter CHAR"):
        read_examples(path, delimiter=",")
    with reading(delimiter="semicolon"):  # what --delimiter sets for a whole command
        assert read_inputs(path)[1].text == "c"
    with reading(delimiter=","), pytest.raises(JiyiError, match="no column"):
        read_inputs(path)


@pytest.mark.parametrize(
    ("value", "char"), [(";", ";"), ("tab", "\t"), ("\\t", "\t"), ("\t", "\t"), ("PIPE", "|")]
)
def test_parse_delimiter(value: str, char: str) -> None:
    assert parse_delimiter(value) == char


@pytest.mark.parametrize("value", ['"', "ab", "x", "\n", ""])
def test_bad_delimiter_names_the_flag(value: str) -> None:
    with pytest.raises(JiyiError, match="--delimiter"):
        parse_delimiter(value)


def test_bad_row_advice_names_on_bad_rows_only_to_commands_that_have_it(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\na,pos\n,neg\n", encoding="utf-8")
    with pytest.raises(JiyiError, match="or pass --on-bad-rows skip"):
        read_examples(path)
    with reading(settings={"text_column"}), pytest.raises(JiyiError) as e:
        read_examples(path)
    assert "--on-bad-rows" not in str(e.value) and "Fix or remove the row." in str(e.value)
