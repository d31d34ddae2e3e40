"""Extractive summarization: split a document into sentences, rank them, pick a few with MMR.

>>> [s.text for s in summarize("minilm", [open("news.txt").read()], sentences=2)[0].sentences]
['The council approved the budget on Monday.', 'Taxes will rise by 2.5% in May.']

1. `split_sentences` (`jiyi.sentences`) cuts the text into sentences with exact character offsets (English and
   Chinese/Japanese rules; a newline always ends a sentence).
2. Each sentence gets a relevance in [0, 1]. Unsupervised (an encoder, e.g. `minilm`): weighted
   TextRank, i.e. PageRank by power iteration on the graph of the sentences' mean-pooled context
   vectors, edge i-j weighted by their cosine similarity (negative ones dropped), the scores then
   rescaled so the most central sentence gets 1 and the least 0 (the rescaling also undoes the
   flattening an anisotropic encoder causes, where every pair looks alike). Supervised (a jiyi
   classification run trained on sentences labelled 1 = in the summary, 0 = not): the predicted
   probability of the positive label. `lead_bias` b mixes in the position: (1 - b) * relevance
   + b * (1 - i / n).
3. `mmr_select` picks greedily the sentence with the best λ·relevance − (1 − λ)·(its highest
   cosine similarity to a sentence already picked) until the budget is spent: N sentences, a
   ratio of them, or a word or character budget that is never exceeded. The picks are returned
   in document order, verbatim.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.errors import JiyiError

# the splitter lives in jiyi.sentences; `name as name` re-exports it from here
from jiyi.sentences import ABBREVIATIONS as ABBREVIATIONS
from jiyi.sentences import LANGUAGES as LANGUAGES
from jiyi.sentences import WORD_TOKEN, resolve_language
from jiyi.sentences import Sentence as Sentence
from jiyi.sentences import count_words as count_words
from jiyi.sentences import detect_language as detect_language
from jiyi.sentences import split_sentences as split_sentences

RANKINGS = ("auto", "centrality", "classifier")
POSITIVE_NAMES = ("1", "yes", "true", "summary")


@dataclass
class Picked:
    text: str
    start: int
    end: int
    score: float  # relevance after the lead bias: centrality in [0, 1] or P(positive label)
    index: int  # position among the document's sentences
    rank: int  # order in which MMR picked it (0 = first)


@dataclass
class Summary:
    sentences: list[Picked]  # in document order
    n_sentences: int  # sentences in the document
    summary: str
    language: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# 2. Relevance


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """(n, H) vectors -> (n, n) cosine similarities (a zero vector is similar to nothing)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1.0)
    return np.clip(unit @ unit.T, -1.0, 1.0)  # (n, n)


def _rescale(x: np.ndarray) -> np.ndarray:
    span = float(x.max() - x.min()) if len(x) else 0.0
    return (x - x.min()) / span if span > 1e-12 else np.ones_like(x)


def textrank(similarity: np.ndarray, damping: float = 0.85, max_iter: int = 200) -> np.ndarray:
    """Weighted TextRank centrality, rescaled to [0, 1] (all 1 when every sentence ties).

    PageRank on the graph whose edge i-j weighs max(similarity, 0) (no self-loops): iterate
    s <- (1 - d) / n + d * P^T s, P the row-normalised weights, until s moves less than 1e-10.

    >>> textrank(np.array([[1, .9, .8], [.9, 1, .1], [.8, .1, 1]])).round(2).tolist()
    [1.0, 0.12, 0.0]
    """
    n = len(similarity)
    weights = np.clip(np.asarray(similarity, dtype=np.float64), 0.0, None)
    np.fill_diagonal(weights, 0.0)
    out = weights.sum(axis=1, keepdims=True)  # (n, 1)
    transition = np.where(out > 0, weights / np.where(out > 0, out, 1.0), 1.0 / max(n, 1))
    scores = np.full(n, 1.0 / max(n, 1))
    for _ in range(max_iter):
        new = (1 - damping) / n + damping * transition.T @ scores
        done = np.abs(new - scores).sum() < 1e-10
        scores = new
        if done:
            break
    return _rescale(scores)


def mmr_select(
    relevance: np.ndarray,
    similarity: np.ndarray,
    *,
    lam: float = 0.7,
    k: int | None = None,
    costs: Sequence[float] | None = None,
    max_cost: float | None = None,
) -> list[int]:
    """Indices in the order Maximal Marginal Relevance picks them.

    Each step takes, among the sentences whose cost still fits in `max_cost`, the one with the
    best lam * relevance[i] - (1 - lam) * max(similarity[i, j] for j already picked); ties go to
    the earlier sentence. Stops after `k` picks or when nothing fits.

    >>> sim = np.array([[1, .95, .1], [.95, 1, .2], [.1, .2, 1]])  # 0 and 1 near-duplicates
    >>> mmr_select(np.array([1.0, .8, .5]), sim, lam=.7, k=2)
    [0, 2]
    """
    if not 0.0 <= lam <= 1.0:
        raise JiyiError(f"--mmr-lambda {lam}: must lie in [0, 1] (1 = relevance only).")
    n = len(relevance)
    k = n if k is None else min(k, n)
    spent, picked = 0.0, []
    redundancy = np.full(n, -np.inf) if n else np.zeros(0)
    available = np.ones(n, dtype=bool)
    while len(picked) < k:
        if costs is not None and max_cost is not None:
            available &= spent + np.asarray(costs, dtype=np.float64) <= max_cost + 1e-9
        if not available.any():
            break
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        gain = np.where(available, lam * relevance - (1 - lam) * penalty, -np.inf)
        best = int(np.argmax(gain))
        picked.append(best)
        available[best] = False
        spent += float(costs[best]) if costs is not None else 0.0
        redundancy = np.maximum(redundancy, similarity[:, best])
    return picked


# ---------------------------------------------------------------------------------------------
# 3. The budget and the API


@dataclass(frozen=True)
class Budget:
    """At most one of: sentences (N), ratio (of the document's sentences, rounded up), max_words,
    max_chars (of the joined summary); none given means 3 sentences."""

    sentences: int | None = None
    ratio: float | None = None
    max_words: int | None = None
    max_chars: int | None = None

    def __post_init__(self) -> None:
        given = [f"--{k.replace('_', '-')}" for k, v in asdict(self).items() if v is not None]
        if len(given) > 1:
            raise JiyiError(f"Can't give both {given[0]} and {given[1]}: choose one budget.")
        for name in ("sentences", "max_words", "max_chars"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise JiyiError(f"--{name.replace('_', '-')} {value}: must be a whole number >= 1.")
        if self.ratio is not None and not 0 < self.ratio <= 1:
            raise JiyiError(f"--ratio {self.ratio}: must lie in (0, 1], e.g. 0.2 for a fifth.")

    def select(
        self, relevance: np.ndarray, similarity: np.ndarray, sentences: list[Sentence], sep: str,
        lam: float,
    ) -> list[int]:  # fmt: skip
        n = len(sentences)
        if self.max_words is not None:
            costs = [count_words(s.text) for s in sentences]
            return mmr_select(relevance, similarity, lam=lam, costs=costs, max_cost=self.max_words)
        if self.max_chars is not None:  # each sentence pays for one separator; the budget too
            costs = [len(s.text) + len(sep) for s in sentences]
            max_cost = self.max_chars + len(sep)
            return mmr_select(relevance, similarity, lam=lam, costs=costs, max_cost=max_cost)
        k = max(1, math.ceil(self.ratio * n)) if self.ratio is not None else self.sentences or 3
        return mmr_select(relevance, similarity, lam=lam, k=k)


def is_classifier(model_or_run: str) -> bool:
    from jiyi.models import resolve_model

    config = Path(resolve_model(str(model_or_run), "MODEL_OR_RUN")) / "config.json"
    if not config.is_file():
        return False
    archs = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    return any(a.endswith("ForSequenceClassification") for a in archs)


def positive_index(labels: Sequence[str], positive_label: str | None) -> int:
    """Index of the label that marks a summary sentence: `positive_label`, else the first of
    1 / yes / true / summary (any case) among `labels`."""
    if positive_label is not None:
        if positive_label in labels:
            return list(labels).index(positive_label)
        raise JiyiError(
            f"--positive-label {positive_label!r}: the run's labels are {list(labels)}."
        )
    lower = [label.lower() for label in labels]
    for name in POSITIVE_NAMES:
        if name in lower:
            return lower.index(name)
    raise JiyiError(
        f"the run's labels are {list(labels)}, none of them {' / '.join(POSITIVE_NAMES)}: name "
        "the one that marks a summary sentence with --positive-label."
    )


def summarize(
    model_or_run: Any,
    documents: str | Sequence[str],
    *,
    sentences: int | None = None,
    ratio: float | None = None,
    max_words: int | None = None,
    max_chars: int | None = None,
    language: str = "auto",
    mmr_lambda: float = 0.7,
    lead_bias: float = 0.0,
    ranking: str = "auto",
    positive_label: str | None = None,
    batch_size: int = 32,
) -> list[Summary]:
    """One `Summary` per document (a single string is one document).

    `model_or_run`: an alias (`minilm`), a model folder, a jiyi run directory or a loaded
    `Encoder`. `ranking`: "centrality" (TextRank on the encoder's vectors), "classifier" (a
    classification run's probability of `positive_label`), or "auto" (classifier for a
    classification run, else centrality).
    """
    from jiyi.inspect.embeddings import Encoder, embed_texts, load_encoder

    budget = Budget(sentences, ratio, max_words, max_chars)
    if ranking not in RANKINGS:
        raise JiyiError(f"--ranking {ranking!r}: choose one of {', '.join(RANKINGS)}.")
    if not 0.0 <= lead_bias <= 1.0:
        raise JiyiError(f"--lead-bias {lead_bias}: must lie in [0, 1] (0 = position ignored).")
    if not 0.0 <= mmr_lambda <= 1.0:
        raise JiyiError(f"--mmr-lambda {mmr_lambda}: must lie in [0, 1] (1 = relevance only).")
    docs = [documents] if isinstance(documents, str) else list(documents)
    languages = [resolve_language(language, d) for d in docs]
    split = [split_sentences(d, lang) for d, lang in zip(docs, languages, strict=True)]
    texts = [s.text for doc in split for s in doc]

    # 1. the encoder (and the classifier, when it ranks)
    clf = None
    if isinstance(model_or_run, Encoder):
        encoder = model_or_run
    elif ranking == "classifier" or (ranking == "auto" and is_classifier(model_or_run)):
        from jiyi.predict import Classifier

        if not is_classifier(model_or_run):
            raise JiyiError(
                f"--ranking classifier: {model_or_run} is not a jiyi classification run; use "
                "--ranking centrality, or train one on sentences labelled 1 (in the summary) / 0."
            )
        clf = Classifier(model_or_run, batch_size=batch_size)
        encoder = Encoder(clf.model.base_model, clf.tokenizer, str(clf.model_dir))
    else:
        encoder = load_encoder(model_or_run)

    # 2. vectors (and probabilities) for every sentence of every document at once
    passage = encoder.prompt("passage")  # e5's "passage: "; "" for most models
    vectors = embed_texts(encoder, texts, pooling="mean", batch_size=batch_size, prompt=passage)
    if clf is not None:
        positive = positive_index(clf.labels, positive_label)
        probs = clf.predict_proba(texts)[:, positive] if texts else np.zeros(0)

    # 3. per document: relevance, MMR under the budget, picks in document order
    out, offset = [], 0
    for sents, lang in zip(split, languages, strict=True):
        n = len(sents)
        rows = slice(offset, offset + n)
        offset += n
        if not n:
            out.append(Summary([], 0, "", lang))
            continue
        similarity = cosine_matrix(vectors[rows])  # (n, n)
        relevance = probs[rows].astype(np.float64) if clf is not None else textrank(similarity)
        lead = 1.0 - np.arange(n) / max(n, 1)
        relevance = (1 - lead_bias) * relevance + lead_bias * lead
        sep = "" if lang == "zh" else " "
        order = budget.select(relevance, similarity, sents, sep, mmr_lambda)
        rank = {i: r for r, i in enumerate(order)}
        picked = [
            Picked(sents[i].text, sents[i].start, sents[i].end, round(float(relevance[i]), 6), i,
                   rank[i])
            for i in sorted(order)
        ]  # fmt: skip
        out.append(Summary(picked, n, sep.join(p.text for p in picked), lang))
    return out


# ---------------------------------------------------------------------------------------------
# Training data for the supervised variant


def _unigram_f1(tokens: Counter[str], reference: Counter[str]) -> float:
    overlap = sum((tokens & reference).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / sum(tokens.values()), overlap / sum(reference.values())
    return 2 * precision * recall / (precision + recall)


def oracle_labels(sentences: Sequence[str], reference: str) -> list[int]:
    """1 for the sentences a greedy oracle picks, else 0: it adds, one at a time, the sentence
    that most raises the unigram F1 (ROUGE-1, lowercased words and CJK characters) of the picks
    against `reference`, and stops when no sentence raises it.

    >>> oracle_labels(["Rain fell.", "Markets rose sharply.", "Cats slept."], "Markets rose.")
    [0, 1, 0]
    """
    ref = Counter(t.lower() for t in WORD_TOKEN.findall(reference))
    bags = [Counter(t.lower() for t in WORD_TOKEN.findall(s)) for s in sentences]
    chosen: set[int] = set()
    picked: Counter[str] = Counter()
    best = 0.0
    while len(chosen) < len(bags):
        # the best gain; ties to the earlier sentence
        f1, i = max(
            (_unigram_f1(picked + bag, ref), -i) for i, bag in enumerate(bags) if i not in chosen
        )
        if f1 <= best:
            break
        best = f1
        chosen.add(-i)
        picked += bags[-i]
    return [int(i in chosen) for i in range(len(sentences))]


def sentence_rows(
    documents: Sequence[str],
    summaries: Sequence[str],
    *,
    output: str | Path | None = None,
    language: str = "auto",
) -> list[dict[str, Any]]:
    """Training rows for `jiyi train`: every sentence of every document, `label` "1" when the
    oracle (`oracle_labels`) puts it in the reference summary, else "0". With `output`, written
    (atomically) as a CSV with columns text, label, document, sentence.

    >>> [(r["text"], r["label"]) for r in sentence_rows(["Rain fell. Markets rose."], ["Markets up."])]
    [('Rain fell.', '0'), ('Markets rose.', '1')]
    """
    if len(documents) != len(summaries):
        raise JiyiError(f"{len(documents)} documents but {len(summaries)} reference summaries.")
    rows = []
    for d, (doc, reference) in enumerate(zip(documents, summaries, strict=True)):
        sents = [s.text for s in split_sentences(doc, language)]
        for i, (text, label) in enumerate(zip(sents, oracle_labels(sents, reference), strict=True)):
            rows.append({"text": text, "label": str(label), "document": d, "sentence": i})
    if output is not None:
        from jiyi.io import atomic_write_text

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["text", "label", "document", "sentence"])
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(output, buf.getvalue())
    return rows


# ---------------------------------------------------------------------------------------------
# The verb
