"""Metrics of generated text against references: ROUGE (rouge-score), BLEU and chrF (sacrebleu).

- rouge1 / rouge2 / rougeL: the F-measure of each prediction against its reference, averaged
  over the examples, in [0, 1]. Stemming is off by default. Words are runs of letters and
  digits of any script, lower-cased, and every Han / kana character is a word of its own, so
  Chinese and Japanese are scored by character (rouge-score's own tokenizer keeps only
  [a-z0-9] and would score them 0). On ASCII text the words are exactly rouge-score's.
- bleu, chrf: sacrebleu's corpus_bleu and corpus_chrf, on its 0-100 scale. BLEU tokenizes with
  "13a", or "zh" (one token per Han character) when the references hold Han characters.
- exact_match: the share of predictions equal to their reference (surrounding space ignored).

>>> rouge_tokens("The cat, 猫が好き!")
['the', 'cat', '猫', 'が', '好', 'き']
>>> seq2seq_metrics(["the cat sat"], ["the cat sat down"])["rouge1"]  # P 3/3, R 3/4
0.8571428571428571
"""

from __future__ import annotations

import re
from typing import Any

MISSING = (
    "{what} needs {package}, which is not installed. Install the extra: pip install 'jiyi[seq2seq]'"
)
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")

# Han (CJK unified ideographs, extensions, compatibility) and the kana: one word per character
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_WORD = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")


def rouge_tokens(text: str, stemmer: Any = None) -> list[str]:
    """Lower-cased words (letters and digits of any script), one per Han or kana character;
    with a stemmer, ASCII words longer than 3 characters are stemmed as rouge-score does."""
    tokens = _WORD.findall(text.lower())
    if stemmer is not None:
        tokens = [stemmer.stem(t) if len(t) > 3 and t.isascii() else t for t in tokens]
    return tokens


class RougeTokenizer:
    """The tokenizer handed to rouge_score's RougeScorer (it calls `.tokenize(text)`)."""

    def __init__(self, stem: bool = False) -> None:
        self.stemmer = None
        if stem:
            from nltk.stem import porter  # rouge-score depends on nltk and stems with it

            self.stemmer = porter.PorterStemmer("ORIGINAL_ALGORITHM")

    def tokenize(self, text: str) -> list[str]:
        return rouge_tokens(text, self.stemmer)


def rouge_scores(
    predictions: list[str], references: list[str], *, stem: bool = False
) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure over the examples (rouge-score with `RougeTokenizer`)."""
    try:
        from rouge_score.rouge_scorer import RougeScorer
    except ImportError:
        raise ImportError(MISSING.format(what="ROUGE", package="rouge-score")) from None
    scorer = RougeScorer(list(ROUGE_TYPES), tokenizer=RougeTokenizer(stem))
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for pred, ref in zip(predictions, references, strict=True):
        scores = scorer.score(ref, pred)  # (target, prediction)
        for kind in ROUGE_TYPES:
            totals[kind] += scores[kind].fmeasure
    n = max(1, len(predictions))
    return {kind: total / n for kind, total in totals.items()}


def bleu_tokenizer(references: list[str]) -> str:
    """sacrebleu's tokenizer for these references: "zh" when they hold Han characters, else "13a"."""
    return "zh" if any(_HAN.search(r) for r in references) else "13a"


def bleu_chrf(predictions: list[str], references: list[str]) -> dict[str, Any]:
    """sacrebleu corpus BLEU and chrF (0-100), and the BLEU tokenizer used."""
    try:
        from sacrebleu.metrics import BLEU, CHRF
    except ImportError:
        raise ImportError(MISSING.format(what="BLEU and chrF", package="sacrebleu")) from None
    tokenize = bleu_tokenizer(references)
    bleu = BLEU(tokenize=tokenize).corpus_score(predictions, [references])
    chrf = CHRF().corpus_score(predictions, [references])
    return {"bleu": float(bleu.score), "chrf": float(chrf.score), "bleu_tokenize": tokenize}


def exact_match(predictions: list[str], references: list[str]) -> float:
    """Share of predictions equal to their reference, surrounding whitespace ignored."""
    same = sum(p.strip() == r.strip() for p, r in zip(predictions, references, strict=True))
    return same / max(1, len(predictions))


def seq2seq_metrics(
    predictions: list[str], references: list[str], *, stem: bool = False
) -> dict[str, Any]:
    """rouge1, rouge2, rougeL, bleu, chrf, exact_match and n; None for an empty set."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        return dict.fromkeys((*ROUGE_TYPES, "bleu", "chrf", "exact_match"), None) | {"n": 0}
    out: dict[str, Any] = rouge_scores(predictions, references, stem=stem)
    out |= bleu_chrf(predictions, references)
    out["exact_match"] = exact_match(predictions, references)
    out["n"] = len(predictions)
    return out


def check_installed() -> None:
    """Fail before training, with the extra to install, when a metric package is missing."""
    import importlib.util

    from jiyi.errors import JiyiError

    for module, package, what in (
        ("rouge_score", "rouge-score", "ROUGE"),
        ("sacrebleu", "sacrebleu", "BLEU and chrF"),
    ):
        if importlib.util.find_spec(module) is None:
            raise JiyiError(MISSING.format(what=f"--task seq2seq ({what})", package=package) + ".")
