"""Synthetic NER and QA data the shared run fixtures (conftest.py) and the task tests build on.

NER: people and places (some multi-word, one split into several sub-words) among filler words.
QA: the answer to "what is the code?" is the word after "the code is" somewhere in a context of
filler words (some contexts longer than one window); a context without that phrase has no answer.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from conftest import FILLER

PEOPLE = ["alice", "bob", "carol", "dave"]
PLACES = [["paris"], ["london"], ["new", "york"], ["rio", "de", "janeiro"]]


def make_sentences(n: int, seed: int, long_every: int = 0) -> list[tuple[list[str], list[str]]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        tokens, tags = [], []
        for _ in range(rng.randint(3, 7) * (8 if long_every and i % long_every == 0 else 1)):
            r = rng.random()
            if r < 0.15:
                tokens.append(rng.choice(PEOPLE))
                tags.append("B-PER")
            elif r < 0.3:
                place = rng.choice(PLACES)
                tokens += place
                tags += ["B-LOC"] + ["I-LOC"] * (len(place) - 1)
            else:
                tokens.append(rng.choice(FILLER))
                tags.append("O")
        out.append((tokens, tags))
    return out


def write_conll(path: Path, sentences: list[tuple[list[str], list[str]]]) -> Path:
    blocks = [
        "\n".join(f"{t}\t{g}" for t, g in zip(tok, tags, strict=True)) for tok, tags in sentences
    ]
    path.write_text("-DOCSTART- -X- O O\n\n" + "\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def ner_vocab_corpus() -> list[str]:
    """The tiny BERT's vocabulary: "janeiro" stays out of it, so it splits into sub-words."""
    return [" ".join(FILLER), " ".join(PEOPLE), "paris london new york rio de"]


NER_FLAGS = ["--epochs", "8", "--batch-size", "16", "--lr", "5e-3", "--max-length", "24"]
NER_FLAGS += ["--stride", "6", "--seed", "0"]


CODES = ["alpha", "bravo", "delta", "echo", "kilo", "lima", "oscar", "tango"]
QUESTION = "what is the code?"


def make_rows(
    n: int, seed: int, long_every: int = 0, unanswerable_every: int = 8
) -> list[dict[str, Any]]:
    """HF-style rows: id, question, context, answers {"text": [...], "answer_start": [...]}."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        n_words = rng.randint(4, 12) * (5 if long_every and i % long_every == 0 else 1)
        words = [rng.choice(FILLER) for _ in range(n_words)]
        answerable = not (unanswerable_every and i % unanswerable_every == unanswerable_every - 1)
        answers: dict[str, list[Any]] = {"text": [], "answer_start": []}
        if answerable:
            code = rng.choice(CODES)
            at = rng.randint(0, len(words))
            before = " ".join(words[:at])
            prefix = (before + " " if before else "") + "the code is "
            context = prefix + code + (" " + " ".join(words[at:]) if words[at:] else "") + "."
            answers = {"text": [code], "answer_start": [len(prefix)]}
        else:
            context = " ".join(words) + "."
        rows.append(
            {"id": f"q{seed}-{i}", "question": QUESTION, "context": context, "answers": answers}
        )
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def qa_vocab_corpus() -> list[str]:
    return [" ".join(FILLER), " ".join(CODES), QUESTION, "the code is ."]


QA_FLAGS = ["--epochs", "4", "--batch-size", "16", "--lr", "3e-3", "--max-length", "48"]
QA_FLAGS += ["--seed", "0", "--threads", "1"]
