"""Synthetic Chinese NER data the character-level tests build on (test_crf.py,
test_ner_chinese.py): people and places among filler words, one character a token, BIO tags on
the characters."""

from __future__ import annotations

import random
from collections.abc import Sequence

PEOPLE = ["张伟", "王芳", "李娜", "刘洋"]
PLACES = ["北京", "上海", "广州", "深圳市"]
FILLER = ["我们", "今天", "喜欢", "电影", "天气", "很好", "去了", "工作", "和", "在", "。", "，"]


def char_sentences(
    n: int, seed: int, people: Sequence[str] = PEOPLE
) -> list[tuple[list[str], list[str]]]:
    """`n` sentences of 4 to 8 words (a fifth people, a fifth places, the rest filler), each as
    (characters, tags)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        chars: list[str] = []
        tags: list[str] = []
        for _ in range(rng.randint(4, 8)):
            r = rng.random()
            word, kind = (
                (rng.choice(people), "PER")
                if r < 0.2
                else (rng.choice(PLACES), "LOC")
                if r < 0.4
                else (rng.choice(FILLER), None)
            )
            chars += list(word)
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(word) - 1) if kind else ["O"] * len(word)
        out.append((chars, tags))
    return out
