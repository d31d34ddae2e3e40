"""Sentences and words of English and Chinese/Japanese text, with exact character offsets.

>>> [(s.text, s.start) for s in split_sentences("Dr. Li came. 她走了。")]
[('Dr. Li came.', 0), ('她走了。', 13)]

`split_sentences` cuts a text into `Sentence`s (`text[s.start:s.end] == s.text`): English
rules (not after an abbreviation or an initial, never inside a number), Chinese/Japanese rules,
and a newline always ends a sentence. `detect_language` picks the rules ("zh" or "en");
`count_words` counts letter/digit runs and CJK characters (`WORD_TOKEN`). Used by
`jiyi summarize`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from jiyi.errors import JiyiError

LANGUAGES = ("auto", "en", "zh")

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # kana and CJK ideographs
_CLOSERS = "\"'”’»)]}」』）》】"
_OPENERS = "\"'“‘«([{「『（《【"
_CJK_END = re.compile(r"[。！？；]+[”’」』）》】)\]}»]*")  # no ASCII quotes: they may open the next
_EN_END = re.compile(rf"[.!?…]+[{re.escape(_CLOSERS)}]*")
# a CJK character or a letter/digit run
WORD_TOKEN = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])[^\W_])+")
_DOTTED = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")  # U.S, e.g, a.m: the last "." follows
# lowercase, "." removed: a period after these does not end a sentence
_ABBREVIATIONS = (
    "mr mrs ms dr prof sr jr st mt ft gen gov sen rep col capt lt sgt rev hon pres supt vs etc "
    "no nos fig figs vol art ch sec inc ltd co corp bros dept univ approx est jan feb mar apr jun "
    "jul aug sep sept oct nov dec al ave blvd"
)
ABBREVIATIONS = frozenset(_ABBREVIATIONS.split())


@dataclass(frozen=True)
class Sentence:
    text: str
    start: int  # document[start:end] == text
    end: int


def detect_language(text: str) -> str:
    """Say "zh" when CJK characters make up at least 30% of the letters, else "en".

    >>> detect_language("今天天气很好。"), detect_language("It rained."), detect_language("用 BERT 做摘要")
    ('zh', 'en', 'zh')
    """
    cjk = len(re.findall(f"[{_CJK}]", text))
    latin = len(re.findall(r"[A-Za-z]", text))
    return "zh" if cjk and cjk >= 0.3 * (cjk + latin) else "en"


def resolve_language(language: str, text: str) -> str:
    if language not in LANGUAGES:
        raise JiyiError(f"--language {language!r}: choose one of {', '.join(LANGUAGES)}.")
    return detect_language(text) if language == "auto" else language


def _is_cjk(ch: str) -> bool:
    return bool(re.match(f"[{_CJK}]", ch))


def _abbreviation(before: str) -> bool:
    """Does the word just before a period make it not a sentence end (Mr., U.S., J.)?"""
    word = before.rsplit(None, 1)[-1].lstrip(_OPENERS) if before.strip() else ""
    return (
        (word.lower() in ABBREVIATIONS and word != "no")  # "No. 5", but "the answer is no."
        or bool(_DOTTED.fullmatch(word))
        or (len(word) == 1 and word.isalpha())
    )


def _line_ends(line: str, language: str) -> list[int]:
    """Offsets in `line` just after each sentence end (closing quotes and brackets included)."""
    ends = {m.end() for m in _CJK_END.finditer(line)}  # 。！？； end a sentence anywhere
    for m in _EN_END.finditer(line):
        mark, end = m.group(), m.end()
        if language == "zh" and m.start() and _is_cjk(line[m.start() - 1]) and mark[0] != "…":
            ends.add(end)  # 他来了.然后 : ASCII punctuation after a CJK character
            continue
        rest = line[end:]
        following = rest.lstrip()
        if not rest[:1].isspace() or not following:
            continue  # 3.14, U.S.A, or the end of the line
        ch = following[0]
        if not (ch.isupper() or ch.isdigit() or ch in _OPENERS or _is_cjk(ch)):
            continue  # "Yahoo! is", "wait... what"
        if mark == "." and _abbreviation(line[: m.start()]):
            continue  # Mr. Smith, the U.S. Senate
        ends.add(end)
    return sorted(ends)


def split_sentences(text: str, language: str = "auto") -> list[Sentence]:
    """Sentences of `text` with exact offsets (`text[s.start:s.end] == s.text`, whitespace trimmed).

    English: . ! ? or an ellipsis, then whitespace and a capital, digit, opening quote or CJK
    character; not after an abbreviation (Mr., Dr., e.g., U.S.) or an initial; never inside a
    number (3.14). Chinese/Japanese: 。！？； end a sentence wherever they stand (with "zh" also
    . ! ? right after a CJK character). Closing quotes and brackets stay with the sentence. A
    newline always ends one (paragraph breaks; unwrap hard-wrapped text first).

    >>> [s.text for s in split_sentences('Mr. Li paid $3.50. "Why?" he asked. 他走了。她来了！')]
    ['Mr. Li paid $3.50.', '"Why?" he asked.', '他走了。', '她来了！']
    """
    language = resolve_language(language, text)
    sentences = []
    for line in re.finditer(r"[^\n]+", text):
        cuts = [0, *_line_ends(line.group(), language), len(line.group())]
        for a, b in itertools.pairwise(cuts):
            piece = line.group()[a:b]
            if piece.strip():
                start = line.start() + a + len(piece) - len(piece.lstrip())
                end = line.start() + b - (len(piece) - len(piece.rstrip()))
                sentences.append(Sentence(text[start:end], start, end))
    return sentences


def count_words(text: str) -> int:
    """Words for `--max-words`: runs of letters or digits, and every CJK character.

    >>> count_words("GDP rose 2.5% in 1998."), count_words("经济增长了。")
    (6, 5)
    """
    return len(WORD_TOKEN.findall(text))
