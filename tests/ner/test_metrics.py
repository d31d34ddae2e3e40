"""jiyi.ner.metrics: entity-level scores equal seqeval's; strict mode; the type confusion."""

from __future__ import annotations

import pytest

from jiyi.ner.metrics import MISSED, SPURIOUS, ner_metrics, type_confusion

GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG", "O", "B-PER"]]
PRED = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG", "O", "O", "O"]]


def test_scores_on_a_hand_made_case() -> None:
    m = ner_metrics(GOLD, PRED)
    # gold: PER, LOC, ORG, PER (4); predicted: PER, ORG(3-4), ORG(1-2) (3); correct: PER only
    assert m["precision"] == pytest.approx(1 / 3)
    assert m["recall"] == pytest.approx(1 / 4)
    assert m["f1"] == pytest.approx(2 * (1 / 3) * (1 / 4) / (1 / 3 + 1 / 4))
    assert m["per_type"]["PER"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "support": 2,
    }
    assert m["per_type"]["LOC"]["support"] == 1 and m["per_type"]["LOC"]["f1"] == 0.0
    assert m["f1_macro"] == pytest.approx((2 / 3 + 0 + 0) / 3)
    assert m["token_accuracy"] == pytest.approx(6 / 9)
    assert m["n"] == 2 and m["n_tokens"] == 9 and m["n_entities"] == 4


def test_strict_mode_refuses_entities_without_their_begin_tag() -> None:
    gold = [["B-PER", "I-PER", "O"]]
    pred = [["I-PER", "I-PER", "O"]]
    assert ner_metrics(gold, pred)["f1"] == 1.0  # conlleval: I- after O opens an entity
    assert ner_metrics(gold, pred, strict=True)["f1"] == 0.0
    bioes = [["B-PER", "E-PER", "S-LOC"]]
    assert ner_metrics(bioes, bioes, strict=True, scheme="BIOES")["f1"] == 1.0


def test_type_confusion() -> None:
    table = type_confusion(GOLD, PRED)
    assert table["PER"] == {"PER": 1, MISSED: 1}
    assert table["LOC"] == {"ORG": 1}
    assert table["ORG"] == {MISSED: 1}  # predicted 1-2 instead of 1-3: other boundaries
    assert table[SPURIOUS] == {"ORG": 1}


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="differ"):
        ner_metrics([["O", "O"]], [["O"]])
