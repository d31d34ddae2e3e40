"""A linear-chain CRF baseline for character-level NER (Chinese: a character a token), the
classical system a fine-tuned encoder has to beat on the same split.

Features are a window of characters around each position: the characters at offsets -2..+2, the
bigrams and the trigram through it, and the kind of each nearby character (Han, digit, numeral,
letter, other), as in the character CRFs of Chinese word segmentation and NER. Training is
sklearn-crfsuite's L-BFGS with L1 + L2 penalties (`pip install 'jiyi[bench]'`); scores are
entity-level (seqeval, `jiyi.ner.metrics.ner_metrics`).

    python -m jiyi.ner.crf --train data/zh-ner/train.jsonl --test data/zh-ner/test.jsonl

>>> features = char_features(list("江泽民到北京"), 0)
>>> features["c0"], features["c-1"], features["c0c+1"], features["c-1c0c+1"], features["t0"]
('江', '<s>', '江泽', '<s>江泽', 'h')
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError
from jiyi.ner.data import read_ner
from jiyi.ner.metrics import ner_metrics

CRF_SETTINGS = {"c1": 0.1, "c2": 0.1, "max_iterations": 100}
BOS, EOS = "<s>", "</s>"


def char_kind(c: str) -> str:
    """h: Han, 0: a digit (full-width too), n: another numeral (三, 〇), a: a letter, p: other."""
    if c in (BOS, EOS):
        return c
    if "\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff":
        return "n" if c.isnumeric() else "h"
    if c.isdigit():
        return "0"
    if c.isnumeric():
        return "n"
    return "a" if c.isalpha() else "p"


def char_features(chars: Sequence[str], i: int) -> dict[str, Any]:
    """The window features of position i: characters c-2..c+2, bigrams c-2c-1..c+1c+2 and
    c-1c+1, the trigram c-1c0c+1, and the kinds t-1, t0, t+1 and their trigram."""

    def at(k: int) -> str:
        j = i + k
        return BOS if j < 0 else EOS if j >= len(chars) else chars[j]

    c = {k: at(k) for k in range(-2, 3)}
    t = {k: char_kind(c[k]) for k in (-1, 0, 1)}
    features: dict[str, Any] = {"bias": 1.0}
    for k in range(-2, 3):
        features[f"c{k:+d}" if k else "c0"] = c[k]
    for a, b in ((-2, -1), (-1, 0), (0, 1), (1, 2), (-1, 1)):
        name_a, name_b = (f"c{k:+d}" if k else "c0" for k in (a, b))
        features[f"{name_a}{name_b}"] = c[a] + c[b]
    features["c-1c0c+1"] = c[-1] + c[0] + c[1]
    features.update({"t-1": t[-1], "t0": t[0], "t+1": t[1], "t-1t0t+1": t[-1] + t[0] + t[1]})
    return features


def sentence_features(tokens: Sequence[str]) -> list[dict[str, Any]]:
    return [char_features(tokens, i) for i in range(len(tokens))]


def crf_baseline(
    train: str | Path, test: str | Path, settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Fit the character CRF on TRAIN (any file `read_ner` reads) and score it on TEST.

    Returns {"system", "settings", "train_sentences", "test_sentences", "train_seconds",
    "predict_seconds", "test": ner_metrics(...)} (entity-level f1, precision, recall, per type).
    """
    try:
        import sklearn_crfsuite
    except ImportError:
        raise JiyiError(
            "the CRF baseline needs sklearn-crfsuite: pip install 'jiyi[bench]'"
        ) from None
    settings = {**CRF_SETTINGS, **(settings or {})}
    train_data = read_ner(train, labelled=True).examples
    test_data = read_ner(test, labelled=True).examples
    crf = sklearn_crfsuite.CRF(algorithm="lbfgs", all_possible_transitions=True, **settings)
    t0 = time.perf_counter()
    crf.fit(
        [sentence_features(ex.tokens) for ex in train_data],
        [list(ex.tags or []) for ex in train_data],
    )
    train_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    predicted = [list(p) for p in crf.predict([sentence_features(ex.tokens) for ex in test_data])]
    predict_seconds = time.perf_counter() - t0
    return {
        "system": "CRF (sklearn-crfsuite L-BFGS, character window features)",
        "settings": settings,
        "train_sentences": len(train_data),
        "test_sentences": len(test_data),
        "train_seconds": train_seconds,
        "predict_seconds": predict_seconds,
        "test": ner_metrics([list(ex.tags or []) for ex in test_data], predicted),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", required=True, help="tagged sentences (CoNLL or JSONL)")
    parser.add_argument("--test", required=True, help="tagged sentences to score on")
    parser.add_argument("--max-iterations", type=int, default=CRF_SETTINGS["max_iterations"])
    args = parser.parse_args(argv)
    try:
        result = crf_baseline(args.train, args.test, {"max_iterations": args.max_iterations})
    except JiyiError as e:
        parser.exit(2, f"error: {e}\n")
    test = result["test"]
    summary = {k: result[k] for k in ("train_sentences", "train_seconds", "predict_seconds")}
    summary |= {k: test[k] for k in ("f1", "precision", "recall")}
    summary["per_type_f1"] = {kind: v["f1"] for kind, v in test.get("per_type", {}).items()}
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
