"""ROUGE, BLEU and chrF pinned against the reference packages (rouge-score, sacrebleu) on the
same strings, and on cases computed by hand."""

from __future__ import annotations

import sys

import pytest
import sacrebleu
from rouge_score.rouge_scorer import RougeScorer

from jiyi.seq2seq.metrics import (
    bleu_chrf,
    bleu_tokenizer,
    rouge_scores,
    rouge_tokens,
    seq2seq_metrics,
)

PREDICTIONS = [
    "the cat sat on the mat",
    "a quick brown fox jumps",
    "Police arrested two men on Tuesday.",
    "it's raining, isn't it?",
    "nothing in common",
]
REFERENCES = [
    "the cat was sitting on the mat",
    "the quick brown fox jumped over the lazy dog",
    "Two men were arrested by police on Tuesday night.",
    "it is raining",
    "completely different words here",
]


def reference_rouge(predictions: list[str], references: list[str], stem: bool) -> dict[str, float]:
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=stem)
    scores = [scorer.score(r, p) for p, r in zip(predictions, references, strict=True)]
    return {
        k: sum(s[k].fmeasure for s in scores) / len(scores) for k in ("rouge1", "rouge2", "rougeL")
    }


def test_rouge_by_hand() -> None:
    # unigrams: prediction {the, cat, sat} all in the reference (P 3/3), 3 of its 4 found (R 3/4)
    # -> F = 2 * 1 * 0.75 / 1.75 = 6/7; bigrams: 2 of 2 and 2 of 3 -> F = 0.8; LCS 3 -> 6/7
    scores = rouge_scores(["the cat sat"], ["the cat sat down"])
    assert scores["rouge1"] == pytest.approx(6 / 7)
    assert scores["rouge2"] == pytest.approx(0.8)
    assert scores["rougeL"] == pytest.approx(6 / 7)
    # LCS differs from unigram overlap: "b a c" vs "a b c" share 3 unigrams, LCS 2 -> F 2/3
    scores = rouge_scores(["b a c"], ["a b c"])
    assert scores["rouge1"] == pytest.approx(1.0)
    assert scores["rougeL"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("stem", [False, True])
def test_rouge_matches_rouge_score_on_english(stem: bool) -> None:
    ours = rouge_scores(PREDICTIONS, REFERENCES, stem=stem)
    assert ours == pytest.approx(reference_rouge(PREDICTIONS, REFERENCES, stem))


def test_stemming_is_off_by_default() -> None:
    assert rouge_scores(["cats running"], ["cat runs"])["rouge1"] == 0.0
    assert rouge_scores(["cats running"], ["cat runs"], stem=True)["rouge1"] == pytest.approx(1.0)


def test_rouge_scores_chinese_by_character() -> None:
    # rouge-score's own tokenizer keeps only [a-z0-9]: Chinese scores 0 (as empty text)
    assert RougeScorer(["rouge1"]).score("我爱猫", "我喜欢猫")["rouge1"].fmeasure == 0.0
    assert rouge_tokens("我喜欢猫, ok!") == ["我", "喜", "欢", "猫", "ok"]
    # by hand: 我 喜 欢 猫 vs 我 爱 猫: 2 shared characters, P 2/4, R 2/3 -> F 4/7
    scores = rouge_scores(["我喜欢猫"], ["我爱猫"])
    assert scores["rouge1"] == pytest.approx(4 / 7)
    assert scores["rougeL"] == pytest.approx(4 / 7)  # LCS 我猫
    assert scores["rouge2"] == 0.0

    class Chars:  # the reference scorer with a character tokenizer gives the same
        def tokenize(self, text: str) -> list[str]:
            return [c for c in text if not c.isspace()]

    ref = RougeScorer(["rouge1", "rougeL"], tokenizer=Chars()).score("我爱猫", "我喜欢猫")
    assert scores["rouge1"] == pytest.approx(ref["rouge1"].fmeasure)
    assert scores["rougeL"] == pytest.approx(ref["rougeL"].fmeasure)
    # a non-ASCII Latin word stays whole (rouge-score would cut "café" to "caf")
    assert rouge_tokens("Café au lait") == ["café", "au", "lait"]


def test_bleu_and_chrf_match_sacrebleu() -> None:
    ours = bleu_chrf(PREDICTIONS, REFERENCES)
    assert ours["bleu_tokenize"] == "13a"
    assert ours["bleu"] == pytest.approx(sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES]).score)
    assert ours["chrf"] == pytest.approx(sacrebleu.corpus_chrf(PREDICTIONS, [REFERENCES]).score)
    assert 0 < ours["bleu"] < 100 and 0 < ours["chrf"] < 100


def test_bleu_tokenizes_chinese_by_character() -> None:
    predictions, references = ["我今天很高兴。", "他去了北京"], ["我今天非常高兴。", "他去了北京"]
    assert bleu_tokenizer(references) == "zh"
    ours = bleu_chrf(predictions, references)
    expected = sacrebleu.corpus_bleu(predictions, [references], tokenize="zh").score
    assert ours["bleu"] == pytest.approx(expected)
    assert ours["bleu"] > sacrebleu.corpus_bleu(predictions, [references], tokenize="13a").score


def test_identical_texts_score_perfectly() -> None:
    metrics = seq2seq_metrics(REFERENCES, REFERENCES)
    assert metrics["rouge1"] == metrics["rouge2"] == metrics["rougeL"] == pytest.approx(1.0)
    assert metrics["bleu"] == pytest.approx(100.0)
    assert metrics["chrf"] == pytest.approx(100.0)
    assert metrics["exact_match"] == 1.0 and metrics["n"] == len(REFERENCES)


def test_exact_match_and_empty_set() -> None:
    assert seq2seq_metrics(["abc ", "x"], ["abc", "y"])["exact_match"] == 0.5
    empty = seq2seq_metrics([], [])
    assert empty["n"] == 0 and empty["rougeL"] is None and empty["bleu"] is None
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        seq2seq_metrics(["a", "b"], ["a"])


def test_a_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rouge_score.rouge_scorer", None)
    with pytest.raises(ImportError, match=r"pip install 'jiyi\[seq2seq\]'"):
        rouge_scores(["a"], ["a"])
    monkeypatch.setitem(sys.modules, "sacrebleu.metrics", None)
    with pytest.raises(ImportError, match=r"sacrebleu.*jiyi\[seq2seq\]"):
        bleu_chrf(["a"], ["a"])
