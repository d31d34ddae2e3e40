"""jiyi.ner.report: the NER report's numbers, its worst sentences span by span, the escaping
(Chinese and `<script>` tokens), BIOES tags, and the files write_ner_eval leaves behind."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pytest

from jiyi.ner.data import NerExample
from jiyi.ner.metrics import ner_metrics
from jiyi.ner.report import confusion_matrix, write_ner_report
from jiyi.ner.train import NerSplit, write_ner_eval

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# fmt: off
TOKENS = [
    ["Alice", "visited", "Paris"],                      # right
    ["<script>", "Bob", "&", "Acme", "Corp"],           # 3 wrong tags, 3 entity errors
    ["我", "在", "北", "京", "见", "了", "张", "三"],    # 2 wrong tags: 张三 (PER) missed
    ["Carol", "met", "Dan"],                            # 1 wrong tag: Dan (PER) missed
]
GOLD = [
    ["B-PER", "O", "B-LOC"],
    ["O", "B-PER", "O", "B-ORG", "I-ORG"],
    ["O", "O", "B-LOC", "I-LOC", "O", "O", "B-PER", "I-PER"],
    ["B-PER", "O", "B-PER"],
]
PREDICTED = [
    ["B-PER", "O", "B-LOC"],
    ["B-ORG", "B-PER", "O", "B-LOC", "I-LOC"],          # <script> spurious ORG, Acme Corp LOC
    ["O", "O", "B-LOC", "I-LOC", "O", "O", "O", "O"],
    ["B-PER", "O", "O"],
]
# fmt: on
SOURCES = ["t.conll:1", "t.conll:5", "t.conll:11", "t.conll:20"]
MARK = re.compile(
    r'<mark class="ent (\w+)" data-type="([^"]*)"[^>]*>(.*?)<span class="label">(.*?)</span>'
)


def cells(page: str, table: str) -> list[list[str]]:
    """The text of every body row of <table class="`table`">."""
    body = re.search(rf'<table class="{table}">.*?<tbody>(.*?)</tbody>', page, re.S)
    assert body, table
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S)
    return [
        [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td.*?</td>", r)]
        for r in rows
    ]


def marks(line: str) -> list[tuple[str, str, str]]:
    """(status, type, text) of each highlighted entity of one sentence line, in order."""
    return [(s, html.unescape(t), html.unescape(x)) for s, t, x, _ in MARK.findall(line)]


def lines(page: str) -> list[tuple[str, str]]:
    """(gold line, predicted line) of each worst sentence, in page order."""
    gold = re.findall(r'<div class="line gold">(.*?)</div>', page, re.S)
    predicted = re.findall(r'<div class="line predicted">(.*?)</div>', page, re.S)
    return list(zip(gold, predicted, strict=True))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict]:
    out = tmp_path_factory.mktemp("ner") / "eval"
    metrics = {**ner_metrics(GOLD, PREDICTED), "repaired": 2}
    paths = write_ner_report(
        out, metrics, TOKENS, GOLD, PREDICTED, sources=SOURCES, title="tiny <ner> run",
        extra={"data": "t.conll"},
    )  # fmt: skip
    assert set(paths) == {"confusion.png", "report.html"}
    return out, (out / "report.html").read_text("utf-8"), metrics


def test_headline_and_per_type_numbers(report: tuple[Path, str, dict]) -> None:
    _, page, _ = report
    cards = dict(re.findall(r'<div class="name">(.*?)</div><div class="value">(.*?)</div>', page))
    # gold: PER 5, LOC 2, ORG 1; predicted: PER 3 (all right), LOC 3 (2 right), ORG 1 (wrong)
    assert cards == {
        "precision (micro)": "0.7143",  # 5 / 7
        "recall (micro)": "0.6250",  # 5 / 8
        "F1 (micro)": "0.6667",
        "precision (macro)": "0.5556",  # (1 + 2/3 + 0) / 3
        "recall (macro)": "0.5333",  # (3/5 + 1 + 0) / 3
        "F1 (macro)": "0.5167",  # (0.75 + 0.8 + 0) / 3
        "token accuracy": "0.6842",  # 13 / 19
        "sentences": "4",
        "tokens": "19",
        "gold entities": "8",
        "repaired tags": "2",
    }
    assert cells(page, "per-type") == [
        ["LOC", "0.6667", "1.0000", "0.8000", "2"],
        ["ORG", "0.0000", "0.0000", "0.0000", "1"],
        ["PER", "1.0000", "0.6000", "0.7500", "5"],
        ["micro avg", "0.7143", "0.6250", "0.6667", "8"],
        ["macro avg", "0.5556", "0.5333", "0.5167", "8"],
    ]
    assert cells(page, "extra") == [["t.conll"]]


def test_worst_sentences_first_with_their_spans(report: tuple[Path, str, dict]) -> None:
    _, page, _ = report
    rows = cells(page, "worst")
    assert [r[:4] for r in rows] == [
        ["1", "t.conll:5", "3", "3"],
        ["2", "t.conll:11", "2", "1"],
        ["3", "t.conll:20", "1", "1"],
    ]  # the right sentence is not listed
    (gold, predicted), (zh_gold, zh_predicted), _ = lines(page)
    assert marks(gold) == [("ok", "PER", "Bob"), ("type", "ORG", "Acme Corp")]
    assert marks(predicted) == [
        ("spurious", "ORG", "<script>"),
        ("ok", "PER", "Bob"),
        ("type", "LOC", "Acme Corp"),
    ]
    assert "pred LOC" in gold and "gold ORG" in predicted  # the other side's type is named
    # Chinese: no spaces between characters, the missed person marked on the gold line
    assert marks(zh_gold) == [("ok", "LOC", "北京"), ("missed", "PER", "张三")]
    assert marks(zh_predicted) == [("ok", "LOC", "北京")]
    assert (
        "我在<mark" in zh_gold
        and "</mark>见了<mark" in zh_gold
        and zh_predicted.endswith("见了张三")
    )


def test_text_is_escaped_and_page_is_self_contained(report: tuple[Path, str, dict]) -> None:
    _, page, _ = report
    assert "<script>" not in page and "<ner>" not in page
    assert "&lt;script&gt;" in page and "&lt;ner&gt;" in page
    assert '<span class="side">gold</span>&lt;script&gt; <mark' in page  # plain, then Bob
    assert " &amp; <mark" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)


def test_confusion_png_is_saved_and_inlined(report: tuple[Path, str, dict]) -> None:
    out, page, metrics = report
    png = (out / "confusion.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    assert f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}" in page
    types, counts = confusion_matrix(metrics["confusion"])
    assert types == ["LOC", "ORG", "PER"]
    # rows gold LOC, ORG, PER, none (spurious); columns predicted LOC, ORG, PER, none (missed)
    assert counts.tolist() == [[2, 0, 0, 0], [1, 0, 0, 0], [0, 0, 3, 2], [0, 1, 0, 0]]


def test_bioes_tags_and_the_worst_n(tmp_path: Path) -> None:
    tokens = [["New", "York", "is", "big"], ["Tom", "Lee", "ran"], ["ok"]]
    gold = [["B-LOC", "E-LOC", "O", "S-MISC"], ["B-PER", "E-PER", "O"], ["O"]]
    predicted = [["S-LOC", "O", "O", "S-MISC"], ["B-PER", "I-PER", "O"], ["O"]]
    metrics = ner_metrics(gold, predicted, scheme="BIOES")
    write_ner_report(tmp_path, metrics, tokens, gold, predicted, n_worst=1)
    page = (tmp_path / "report.html").read_text("utf-8")
    assert [r[0] for r in cells(page, "per-type")] == [
        "LOC",
        "MISC",
        "PER",
        "micro avg",
        "macro avg",
    ]
    assert [r[:4] for r in cells(page, "worst")] == [["0", "", "2", "2"]]  # only the worst one
    assert "1 of the 2 sentences with wrong tags" in page
    ((gold_line, predicted_line),) = lines(page)
    assert marks(gold_line) == [("missed", "LOC", "New York"), ("ok", "MISC", "big")]
    assert marks(predicted_line) == [("spurious", "LOC", "New"), ("ok", "MISC", "big")]
    assert "</mark> York is <mark" in predicted_line


def test_write_ner_eval_writes_exactly_these_files(tmp_path: Path) -> None:
    examples = [
        NerExample(tokens, tags, source)
        for tokens, tags, source in zip(TOKENS, GOLD, SOURCES, strict=True)
    ]
    split = NerSplit("test", "t.conll", examples)
    write_ner_eval(tmp_path, ner_metrics(GOLD, PREDICTED), split, PREDICTED)
    assert {p.name for p in tmp_path.iterdir()} == {
        "metrics.json",
        "errors.jsonl",
        "confusion.png",
        "report.html",
    }
    page = (tmp_path / "report.html").read_text("utf-8")
    assert "jiyi NER evaluation: t.conll" in page
    assert cells(page, "extra") == [["t.conll"], ["lenient (conlleval)"]]
    assert len((tmp_path / "errors.jsonl").read_text("utf-8").splitlines()) == 3
