"""Windows over long contexts (the answer's token positions in each window, CLS where it is
absent, exact character offsets back) and the best-span search with its null threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import FILLER, build_tiny_bert
from jiyi.qa.spans import best_answer, decode_answers, window_candidates
from jiyi.qa.windows import answer_tokens, cut_questions, encode_windows, training_span

QUESTION = "where is it?"  # where, is, it, ? -> 4 tokens


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("qa-tok")
    build_tiny_bert(folder, [" ".join(FILLER), QUESTION, "golden gate"])
    return AutoTokenizer.from_pretrained(str(folder))


def long_context() -> tuple[str, int, int]:
    """30 one-token words, the answer "golden gate" as words 20-21; (context, start, end)."""
    words = [FILLER[i % len(FILLER)] for i in range(30)]
    words[20:22] = ["golden", "gate"]
    context = " ".join(words)
    start = context.index("golden gate")
    return context, start, start + len("golden gate")


def test_answer_in_the_second_window_maps_back_to_its_characters(tokenizer) -> None:
    context, start, end = long_context()
    # max_length 24: [CLS] + 4 question tokens + [SEP] + 17 context tokens + [SEP]; stride 4
    windows = encode_windows(tokenizer, [QUESTION], [context], 24, 4, [(start, end)])
    assert len(windows) == 2 and windows.example.tolist() == [0, 0]
    assert windows.lengths.tolist() == [24, 24]  # window 2: context words 13..29
    # window 1 holds words 0..16: no answer -> [CLS]
    assert (windows.start_positions[0], windows.end_positions[0]) == (0, 0)
    # window 2 starts at word 13 (17 - stride 4), context from position 6: words 20, 21 -> 13, 14
    assert (windows.start_positions[1], windows.end_positions[1]) == (13, 14)
    span = windows.window(1)
    cs, ce = windows.char_start[span], windows.char_end[span]
    s, e = int(windows.start_positions[1]), int(windows.end_positions[1])
    assert context[cs[s] : ce[e]] == "golden gate"
    # outside the context (CLS, question, SEPs) no character span
    assert (cs[:6] == -1).all() and cs[-1] == -1 and (cs[6:-1] >= 0).all()
    # every context character span is the token's own text
    tokens = tokenizer.convert_ids_to_tokens(windows.input_ids[span].tolist())
    for t in range(6, len(tokens) - 1):
        assert context[cs[t] : ce[t]] == tokens[t]


def test_overlap_repeats_stride_tokens_and_unlabelled_windows_point_at_cls(tokenizer) -> None:
    context, _, _ = long_context()
    windows = encode_windows(tokenizer, [QUESTION, QUESTION], [context, "the film"], 24, 4)
    assert windows.example.tolist() == [0, 0, 1]
    first, second = windows.window(0), windows.window(1)
    # the last 4 context tokens of window 1 open window 2
    assert windows.char_start[first][-5:-1].tolist() == windows.char_start[second][6:10].tolist()
    assert windows.start_positions.tolist() == [0, 0, 0]
    assert windows.end_positions.tolist() == [0, 0, 0]


def test_a_sub_word_answer_and_whitespace_around_it(tokenizer) -> None:
    context = "the film   gateway was"  # not a vocabulary word: gate ##w ##a ##y
    start = context.index(" gateway")
    span = training_span(context, start - 1, "  gateway ")  # whitespace is not trained on
    assert span == (context.index("gateway"), context.index("gateway") + 7)
    windows = encode_windows(tokenizer, [QUESTION], [context], 24, 4, [span])
    s, e = int(windows.start_positions[0]), int(windows.end_positions[0])
    assert (s, e) == (8, 11)  # [CLS] where is it ? [SEP] the film gate ##w ##a ##y was [SEP]
    assert context[windows.char_start[s] : windows.char_end[e]] == "gateway"


def test_answer_tokens_needs_the_whole_answer_in_the_window() -> None:
    char_start = np.array([-1, 0, 4, 8, -1])
    char_end = np.array([-1, 3, 7, 11, -1])
    assert answer_tokens(char_start, char_end, 4, 11) == (2, 3)
    assert answer_tokens(char_start, char_end, 5, 6) == (2, 2)  # inside one token
    assert answer_tokens(char_start, char_end, 8, 14) == (0, 0)  # runs past the window
    assert answer_tokens(np.array([-1, -1]), np.array([-1, -1]), 0, 1) == (0, 0)


def test_long_questions_are_cut_to_half_the_window(tokenizer) -> None:
    cut, n = cut_questions(tokenizer, ["  where is it?", " ".join(FILLER)], 5)
    assert cut[0] == "where is it?" and n == 1
    assert cut[1] == " ".join(FILLER[:5])
    windows = encode_windows(tokenizer, [" ".join(FILLER * 3)], ["the film"], 24, 4)
    assert windows.questions_cut == 1 and windows.lengths.tolist() == [12 + 2 + 3]


def test_candidates_keep_end_after_start_and_the_length_limit() -> None:
    # context tokens 1..4; the best start (4: 5.0) lies after the best end (1: 6.0), so the
    # highest sum (4, 1) = 11 is no span; CLS (9 + 9) is never a candidate
    start = np.array([9.0, 1.0, 0.0, 2.0, 5.0, 0.0])
    end = np.array([9.0, 6.0, 0.0, 3.0, 1.0, 0.0])
    is_context = np.array([False, True, True, True, True, False])
    cands = window_candidates(start, end, is_context, max_answer_length=1)
    assert cands == [(7.0, 1, 1), (6.0, 4, 4), (5.0, 3, 3), (0.0, 2, 2)]
    cands = window_candidates(start, end, is_context, max_answer_length=3)
    assert all(s <= e <= s + 2 for _, s, e in cands) and len(cands) == 9
    assert (2.0, 1, 4) not in cands  # 4 tokens
    assert (2.0, 1, 4) in window_candidates(start, end, is_context, max_answer_length=4)
    # n_best 1: only the best start (4) and the best end (1) are paired: no valid span
    assert window_candidates(start, end, is_context, max_answer_length=4, n_best=1) == []
    assert window_candidates(start, end, np.zeros(6, bool), 3) == []


def test_null_threshold_switches_the_answer_to_empty() -> None:
    context = "aa bb cc"
    char_start, char_end = np.array([-1, 0, 3, 6, -1]), np.array([-1, 2, 5, 8, -1])
    start = np.array([3.0, 0.0, 2.0, 0.0, 0.0])
    end = np.array([2.0, 0.0, 0.0, 1.5, 0.0])
    window = (start, end, char_start, char_end)
    # best span "bb cc" (tokens 2..3) scores 2 + 1.5 = 3.5; null 3 + 2 = 5; margin 1.5
    answer = best_answer(context, [window], max_answer_length=5, null_threshold=0.0)
    assert (answer.text, answer.start, answer.end) == ("", None, None)
    assert answer.null_margin == pytest.approx(1.5)
    p_null = math.exp(3 - math.log(np.exp(start).sum())) * math.exp(2 - math.log(np.exp(end).sum()))
    assert answer.score == pytest.approx(p_null)
    answer = best_answer(context, [window], max_answer_length=5, null_threshold=2.0)
    assert (answer.text, answer.start, answer.end) == ("bb cc", 3, 8)
    assert context[answer.start : answer.end] == answer.text
    p = math.exp(2 - math.log(np.exp(start).sum())) * math.exp(1.5 - math.log(np.exp(end).sum()))
    assert answer.score == pytest.approx(p)
    # max_answer_length 1: "bb" (2 + 0 = 2) or "cc" (0 + 1.5): "bb"
    answer = best_answer(context, [window], max_answer_length=1, null_threshold=10.0)
    assert answer.text == "bb"


def test_the_null_score_is_the_lowest_over_windows(tokenizer) -> None:
    context, start, end = long_context()
    windows = encode_windows(tokenizer, [QUESTION], [context], 24, 4)
    logits = []
    for w in range(len(windows)):
        n = int(windows.lengths[w])
        s, e = np.zeros(n), np.zeros(n)
        s[0] = e[0] = 4.0 if w == 0 else 1.0  # window 1 sure there is no answer, window 2 not
        if w == 1:
            s[13], e[14] = 1.5, 1.0  # "golden gate": 2.5 > null 2.0 of window 2
        logits.append((s, e))
    [answer] = decode_answers(windows, logits, [context], 30, 0.0)
    assert (answer.text, answer.start, answer.end) == ("golden gate", start, end)
    assert answer.null_margin == pytest.approx(2.0 - 2.5)
