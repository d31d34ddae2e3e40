"""jiyi.ner.data: CoNLL and JSONL sentences in and out; every user error names file and line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from jiyi.errors import JiyiError
from jiyi.ner.data import NerExample, read_ner, write_conll, write_jsonl


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def sentences(path: Path, **kwargs) -> list[tuple[list[str], list[str] | None, str]]:
    data = read_ner(path, **kwargs)
    return [(ex.tokens, ex.tags, ex.source.rsplit(":", 1)[1]) for ex in data.examples]


def test_conll_with_docstart_columns_and_odd_separators(tmp_path: Path) -> None:
    path = write(
        tmp_path / "train.conll",
        "\ufeff-DOCSTART- -X- -X- O\n"  # a BOM, then a CoNLL-2003 document marker
        "\n"
        "EU NNP B-NP B-ORG\n"  # four columns: the token first, the tag last
        "rejects VBZ B-VP O\r\n"  # a Windows line end
        "German JJ B-NP B-MISC\n"
        "\t\n"  # a line holding one tab ends a sentence (the twitter corpus does this)
        "Peter\tB-PER\n"
        "Blackburn  \t I-PER\n"  # tabs and spaces mixed
        "   \n"
        "\n"
        "-DOCSTART- -X- O\n"
        "\n"
        "BRUSSELS B-LOC\n"
        "\n\n\n",  # trailing blank lines
    )
    assert sentences(path) == [
        (["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"], "3"),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"], "7"),
        (["BRUSSELS"], ["B-LOC"], "13"),
    ]
    data = read_ner(path)
    assert (data.scheme, data.types, data.repaired, data.skipped) == (
        "BIO",
        ["LOC", "MISC", "ORG", "PER"],
        0,
        [],
    )
    assert data.examples[0].source == f"{path}:3"


def test_no_final_newline_and_a_docstart_inside_a_sentence(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "a O\nb B-X\n-DOCSTART- O\nc O\nd I-X")
    assert sentences(path) == [(["a", "b"], ["O", "B-X"], "1"), (["c", "d"], ["O", "B-X"], "4")]


def test_tags_are_repaired_and_counted(tmp_path: Path) -> None:
    path = write(tmp_path / "r.conll", "a O\nb I-PER\nc I-PER\n\nd B-PER\ne I-LOC\n\nf B-X\n")
    data = read_ner(path)
    assert [ex.tags for ex in data.examples] == [
        ["O", "B-PER", "I-PER"],
        ["B-PER", "B-LOC"],
        ["B-X"],
    ]
    assert data.repaired == 2
    assert data.repaired_at == [f"{path}:1", f"{path}:5"]


def test_bioes_file_is_read_and_repaired_as_bioes(tmp_path: Path) -> None:
    # one S- tag makes the file BIOES: the B-X I-X without E-X is then a repair
    path = write(tmp_path / "s.bio", "a S-PER\nb O\n\nc B-X\nd I-X\n\ne B-X\nf E-X\n")
    data = read_ner(path)
    assert data.scheme == "BIOES"
    assert [ex.tags for ex in data.examples] == [["S-PER", "O"], ["B-X", "E-X"], ["B-X", "E-X"]]
    assert (data.repaired, data.types) == (1, ["PER", "X"])


def test_unlabelled_conll(tmp_path: Path) -> None:
    path = write(tmp_path / "tokens.txt", "EU\nrejects\n\n\nPeter\n")
    data = read_ner(path)
    assert [(ex.tokens, ex.tags) for ex in data.examples] == [
        (["EU", "rejects"], None),
        (["Peter"], None),
    ]
    assert (data.scheme, data.types) == (None, [])
    # labelled=False ignores the columns after the token
    path = write(tmp_path / "tagged.conll", "EU B-ORG\nrejects O\n")
    assert sentences(path, labelled=False) == [(["EU", "rejects"], None, "1")]


def test_jsonl(tmp_path: Path) -> None:
    rows = [
        {"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"], "id": 1},
        {"tokens": [], "tags": []},  # an empty sentence is skipped
        {"tokens": ["北", "京"], "tags": ["I-LOC", "I-LOC"]},  # repaired: B-LOC I-LOC
    ]
    text = "\ufeff" + "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n"
    path = write(tmp_path / "train.jsonl", text)
    data = read_ner(path)
    assert sentences(path) == [
        (["EU", "rejects"], ["B-ORG", "O"], "1"),
        (["北", "京"], ["B-LOC", "I-LOC"], "3"),
    ]
    assert (data.scheme, data.types, data.repaired) == ("BIO", ["LOC", "ORG"], 1)


def test_jsonl_other_keys_and_unlabelled(tmp_path: Path) -> None:
    path = write(tmp_path / "x.json", '{"words": ["a", "b"], "ner": ["B-X", "O"]}\n')
    assert sentences(path, tokens_column="words", tags_column="ner") == [
        (["a", "b"], ["B-X", "O"], "1")
    ]
    path = write(tmp_path / "raw.jsonl", '{"tokens": ["a"]}\n{"tokens": ["b", "c"]}\n')
    assert sentences(path) == [(["a"], None, "1"), (["b", "c"], None, "2")]


def test_format_by_content_when_the_extension_says_nothing(tmp_path: Path) -> None:
    jsonl = write(tmp_path / "a.data", '\n{"tokens": ["a"], "tags": ["O"]}\n')
    conll = write(tmp_path / "b.data", "\n{ O\n} O\n")  # braces as tokens
    assert sentences(jsonl) == [(["a"], ["O"], "2")]
    assert sentences(conll) == [(["{", "}"], ["O", "O"], "2")]


def error(path: Path, **kwargs) -> str:
    with pytest.raises(JiyiError) as info:
        read_ner(path, **kwargs)
    return str(info.value)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "bad-tag.conll",
            "a O\nb PER\n",
            'bad-tag.conll line 2: bad tag "PER": expected B-PER, I-PER or O '
            "(BIOES also E-PER, S-PER). Fix it, or pass --on-bad-rows skip to skip the sentence.",
        ),
        (
            "one-column.conll",
            "a O\n\nb B-X\nc\n",
            'one-column.conll line 4: 1 column ("c"): expected a token and its tag separated by '
            "a tab or spaces (the token first, the tag last).",
        ),
        (
            "mixed.conll",
            "a\nb\n\nc O\n",
            "mixed.conll line 4: 2 columns, but line 1 has 1, so the file was read as tokens "
            "without tags; give every token a tag, or none.",
        ),
        (
            "latin1.conll",
            b"a O\n\ncaf\xe9 O\n",
            "latin1.conll line 3: not valid UTF-8 (byte 0xe9 at character 4); save the file as "
            "UTF-8.",
        ),
        ("nul.conll", b"a O\nb\x00 O\n", "nul.conll line 2: NUL bytes in the line"),
        (
            "mismatch.jsonl",
            '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["a", "b", "c"], "tags": ["O", "O"]}\n',
            'mismatch.jsonl line 2: 3 tokens in "tokens" but 2 tags in "tags"; give each token '
            "one tag.",
        ),
        (
            "bad-json.jsonl",
            '{"tokens": ["a"], "tags": ["O"]}\n\n{"tokens": ["a"], "tags": ["O"]\n',
            "bad-json.jsonl line 3: not valid JSON (Expecting ',' delimiter at column 32).",
        ),
        (
            "bad-tag.jsonl",
            '{"tokens": ["a", "b"], "tags": ["O", "B_LOC"]}\n',
            'bad-tag.jsonl line 1: tags[1]: bad tag "B_LOC": expected B-LOC, I-LOC or O',
        ),
        (
            "string.jsonl",
            '{"tokens": "EU rejects", "tags": ["B-ORG", "O"]}\n',
            'string.jsonl line 1: "tokens" is a string, expected a list of strings (split the '
            "text into tokens).",
        ),
        (
            "number.jsonl",
            '{"tokens": ["a", 7], "tags": ["O", "O"]}\n',
            "number.jsonl line 1: tokens[1] is a number, expected a string.",
        ),
        (
            "blank.jsonl",
            '{"tokens": ["a", " "], "tags": ["O", "O"]}\n',
            "blank.jsonl line 1: tokens[1] is blank; remove it (and its tag).",
        ),
        (
            "list.jsonl",
            '{"tokens": ["a"], "tags": ["O"]}\n["a"]\n',
            'list.jsonl line 2: expected a JSON object like {"tokens": [...], "tags": [...]}, '
            "got a list.",
        ),
        (
            "no-tags.jsonl",
            '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": ["b"]}\n',
            'no-tags.jsonl line 2: no "tags" key; give every line tags.',
        ),
        (
            "late-tags.jsonl",
            '{"tokens": ["a"]}\n{"tokens": ["b"], "tags": ["O"]}\n',
            'late-tags.jsonl line 2: has "tags", but line 1 has none',
        ),
    ],
)
def test_bad_rows_name_the_file_and_line(
    tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    path = write(tmp_path / name, content)
    assert error(path).startswith(f"{tmp_path}/{message}")


def test_file_level_errors(tmp_path: Path) -> None:
    assert error(tmp_path / "nope.conll") == f"{tmp_path}/nope.conll: no such file."
    assert "a directory" in error(tmp_path)
    empty = write(tmp_path / "empty.conll", "\n\t\n-DOCSTART- O\n\n")
    assert error(empty) == (
        f"{empty}: no sentences (the file holds only blank lines or -DOCSTART- lines)."
    )
    keys = write(tmp_path / "keys.jsonl", '{"words": ["a"], "tags": ["O"]}\n')
    assert error(keys) == (
        f'{keys} line 1: no key "tokens"; the object has keys: "words", "tags". '
        "Pass --tokens-column NAME to use another."
    )
    assert 'no key "tags"' in error(
        write(tmp_path / "k.jsonl", '{"tokens": ["a"]}\n'), labelled=True
    )
    array = write(tmp_path / "array.json", '[{"tokens": ["a"], "tags": ["O"]}]\n')
    assert "a JSON array; jiyi reads JSON Lines, one object per line" in error(array)
    one = write(tmp_path / "one.conll", "a\nb\n")
    assert "line 1: 1 column" in error(one, labelled=True)
    assert "--on-bad-rows must be 'error' or 'skip'" in error(one, on_bad_rows="warn")


def test_skipping_bad_sentences(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mixed.conll",
        b"a O\nb PER\nc O\n\nd B-X\n\ncaf\xe9 O\n\ne\n\nf I-Y\n",
    )
    data = read_ner(path, on_bad_rows="skip")
    assert [(ex.tokens, ex.source) for ex in data.examples] == [
        (["d"], f"{path}:5"),
        (["f"], f"{path}:11"),
    ]
    assert [line for line, _ in data.skipped] == [2, 7, 9]
    assert data.skipped[0][1].startswith('bad tag "PER"')
    assert data.repaired == 1  # I-Y
    bad = write(tmp_path / "bad.jsonl", '{"tokens": ["a"], "tags": ["X"]}\nnot json\n')
    message = error(bad, on_bad_rows="skip")
    assert message.startswith(
        f"{bad}: every sentence is bad (2 skipped); the first, line 1: tags[0]"
    )


def test_write_and_read_back(tmp_path: Path) -> None:
    examples = [
        NerExample(["EU", "rejects", "北京"], ["B-ORG", "O", "B-LOC"], "x:1"),
        NerExample(["{", "}"], ["O", "O"], "x:5"),
    ]
    write_conll(examples, tmp_path / "out.conll")
    assert (tmp_path / "out.conll").read_text("utf-8") == (
        "EU\tB-ORG\nrejects\tO\n北京\tB-LOC\n\n{\tO\n}\tO\n\n"
    )
    write_jsonl(examples, tmp_path / "out.jsonl")
    for name in ("out.conll", "out.jsonl"):
        back = read_ner(tmp_path / name).examples
        assert [(ex.tokens, ex.tags) for ex in back] == [(ex.tokens, ex.tags) for ex in examples]
    untagged = [NerExample(["a", "b"], None, "y:1")]
    write_conll(untagged, tmp_path / "raw.conll")
    write_jsonl(untagged, tmp_path / "raw.jsonl")
    assert (tmp_path / "raw.conll").read_text() == "a\nb\n\n"
    assert (tmp_path / "raw.jsonl").read_text() == '{"tokens": ["a", "b"]}\n'
    for name in ("raw.conll", "raw.jsonl"):
        assert sentences(tmp_path / name) == [(["a", "b"], None, "1")]


def test_write_conll_refuses_tokens_it_cannot_hold(tmp_path: Path) -> None:
    bad = [NerExample(["New York", "!"], ["B-LOC", "O"], "in.jsonl:3")]
    with pytest.raises(JiyiError, match=re.escape("in.jsonl:3: token 1 ('New York') is blank")):
        write_conll(bad, tmp_path / "out.conll")
    assert not (tmp_path / "out.conll").exists()
    write_jsonl(bad, tmp_path / "out.jsonl")  # JSON Lines can
    assert sentences(tmp_path / "out.jsonl") == [(["New York", "!"], ["B-LOC", "O"], "1")]
