"""SQuAD v2 exact match and F1, pinned on hand-made cases worked out from the official script's
definitions (normalise: lower case, drop punctuation, drop a/an/the, collapse whitespace)."""

from __future__ import annotations

import pytest

from jiyi.qa.metrics import (
    exact_match,
    gold_answers,
    metrics_line,
    normalize_answer,
    score_question,
    squad_metrics,
    token_f1,
)


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("The Eiffel Tower", "eiffel tower"),
        ("  an   apple,  a pear!  ", "apple pear"),
        ("Theory of the atom", "theory of atom"),  # "the" only as a whole word
        ("U.S.A.", "usa"),
        ("rock-'n'-roll", "rocknroll"),
        ("A", ""),
        ("the the", ""),
        ("", ""),
        ("Année 1999", "année 1999"),  # only ASCII punctuation is removed
    ],
)
def test_normalize_answer(raw: str, normalised: str) -> None:
    assert normalize_answer(raw) == normalised


def test_exact_match_after_normalisation() -> None:
    assert exact_match("The Eiffel Tower", "eiffel tower.") == 1
    assert exact_match("Eiffel Tower", "Eiffel") == 0
    assert exact_match("", "") == 1
    assert exact_match("", "a") == 1  # "a" normalises to "" like the empty answer
    assert exact_match("", "Paris") == 0


def test_f1_by_hand() -> None:
    # gold "the big red dog" -> [big, red, dog]; pred "red dog barked" -> [red, dog, barked]
    # 2 common tokens: precision 2/3, recall 2/3, F1 2/3
    assert token_f1("the big red dog", "red dog barked") == pytest.approx(2 / 3)
    # gold [new, york, city], pred [york]: P 1, R 1/3, F1 = 2 * 1/3 / (4/3) = 0.5
    assert token_f1("New York City", "York") == pytest.approx(0.5)
    # repeated tokens count with multiplicity: gold [a1, a1, b], pred [a1]: P 1, R 1/3 -> 0.5
    assert token_f1("a1 a1 b", "a1") == pytest.approx(0.5)
    # gold [a1], pred [a1, a1]: common min(1, 2) = 1, P 1/2, R 1 -> 2/3
    assert token_f1("a1", "a1 a1") == pytest.approx(2 / 3)
    assert token_f1("Paris", "London") == 0.0


def test_no_answer_scores_only_an_empty_prediction() -> None:
    assert token_f1("", "") == 1.0
    assert token_f1("", "Paris") == 0.0
    assert token_f1("Paris", "") == 0.0
    assert token_f1("", "the") == 1.0  # "the" has no tokens after normalisation
    assert gold_answers([]) == [""]
    assert gold_answers(["the", "Paris"]) == ["Paris"]  # golds that normalise to "" are dropped
    assert score_question([], "") == (1, 1.0)
    assert score_question([], "Paris") == (0, 0.0)


def test_best_over_gold_answers() -> None:
    # EM from "Denver Broncos"; F1: vs "Broncos" P 1/2 R 1 -> 2/3, vs "Denver Broncos" 1
    assert score_question(["Broncos", "Denver Broncos"], "the Denver Broncos") == (1, 1.0)
    # pred [broncos, team]: vs [broncos] P 1/2 R 1 -> 2/3; vs [denver, broncos] 1/2 1/2 -> 1/2
    em, f1 = score_question(["Broncos", "Denver Broncos"], "Broncos team")
    assert em == 0 and f1 == pytest.approx(2 / 3)


def test_corpus_metrics_with_hasans_noans_breakdown() -> None:
    golds = [["Paris"], ["New York City", "NYC"], [], []]
    predictions = ["paris.", "York", "", "London"]
    # per question (EM, F1): (1, 1), (0, 0.5), (1, 1), (0, 0)
    m = squad_metrics(golds, predictions)
    assert m["exact_match"] == pytest.approx(2 / 4)
    assert m["f1"] == pytest.approx(2.5 / 4)
    assert m["n"] == 4
    assert m["has_ans_exact_match"] == pytest.approx(1 / 2)
    assert m["has_ans_f1"] == pytest.approx(1.5 / 2)
    assert m["has_ans_n"] == 2
    assert m["no_ans_exact_match"] == pytest.approx(1 / 2)
    assert m["no_ans_f1"] == pytest.approx(1 / 2)
    assert m["no_ans_n"] == 2
    line = metrics_line(m, "test")
    assert line.startswith("test: exact match 0.5000 · F1 0.6250 · 4 questions")
    assert "HasAns (2): EM 0.5000 F1 0.7500" in line


def test_a_breakdown_without_questions_is_none() -> None:
    m = squad_metrics([["x1"]], ["x1"])
    assert m["exact_match"] == 1.0 and m["no_ans_n"] == 0
    assert m["no_ans_exact_match"] is None and m["no_ans_f1"] is None
    with pytest.raises(ValueError):
        squad_metrics([["x1"]], [])
