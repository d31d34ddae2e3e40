"""Text augmentation, offline: EDA's random delete/swap/insert plus substitution by the nearest
neighbours of a word in the encoder's own input-embedding table (no thesaurus needed).

Operations work on whitespace tokens; characters of scripts written without spaces (Chinese,
Japanese) are tokens of their own, so "我很喜欢 iPhone" becomes [我, 很, 喜, 欢, iPhone].

>>> neighbours = EmbeddingNeighbours(tokenizer, model.get_input_embeddings().weight)
>>> neighbours.neighbours("good")
['excellent', 'bad', 'great', 'better', 'best', 'nice', 'well', 'terrific']
>>> augment_examples([Example("a good film", "pos")], ("substitute",), rate=0.3, neighbours=neighbours)
[Example(text='a great film', label='pos', text_pair=None, line=0)]
"""

from __future__ import annotations

import random
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from jiyi.data.readers import Example
from jiyi.errors import JiyiError

if TYPE_CHECKING:
    import torch

AUGMENT_OPS = ("delete", "swap", "insert", "substitute")
_CORE = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)


def parse_augment(spec: str | None) -> tuple[str, ...]:
    """The --augment value as operations, in AUGMENT_OPS order.

    >>> parse_augment("swap,delete"), parse_augment("all")[-1], parse_augment("none")
    (('delete', 'swap'), 'substitute', ())
    """
    text = (spec or "").strip().lower()
    if text in ("", "none"):
        return ()
    if text == "all":
        return AUGMENT_OPS
    ops = {op.strip() for op in text.split(",") if op.strip()}
    if unknown := sorted(ops - set(AUGMENT_OPS)):
        raise JiyiError(
            f"--augment {spec!r}: unknown operation {', '.join(unknown)}; use a comma-separated "
            f"list of {', '.join(AUGMENT_OPS)}, or 'all' or 'none'."
        )
    return tuple(op for op in AUGMENT_OPS if op in ops)


class EmbeddingNeighbours:
    """Nearest whole-word vocabulary tokens of a word, by cosine of the input embeddings.

    Candidates are vocabulary tokens that are alphabetic (CJK characters count), not special
    and not "##" word pieces; a CJK character's neighbours are CJK characters and a word's are
    words. The candidate matrix is built once, and each word's answer cached.
    """

    def __init__(self, tokenizer: Any, embeddings: torch.Tensor, k: int = 8) -> None:
        import torch

        special = set(tokenizer.all_special_tokens)
        vocab = tokenizer.get_vocab()  # token -> id
        candidates = sorted(
            (i, t)
            for t, i in vocab.items()
            if i < embeddings.shape[0]
            and t not in special
            and not t.startswith("##")
            and t.isalpha()
        )
        self.k = k
        self._tokens = [t for _, t in candidates]
        self._row = {t: j for j, t in enumerate(self._tokens)}  # token -> row of _unit
        self._cjk = torch.tensor([_unspaced(t[0]) for t in self._tokens], dtype=torch.bool)  # (C,)
        ids = torch.tensor([i for i, _ in candidates], dtype=torch.long)
        weights = embeddings.detach().to("cpu", torch.float32)[ids]  # (C, H)
        self._unit = torch.nn.functional.normalize(weights, dim=-1)  # (C, H), rows of norm 1
        self._cache: dict[str, list[str]] = {}

    def neighbours(self, word: str) -> list[str]:
        """Up to k nearest candidates, best first; [] unless `word` (or its lower case) is one."""
        if word in self._cache:
            return self._cache[word]
        token = word if word in self._row else word.lower()
        result: list[str] = []
        if token in self._row:
            row = self._row[token]
            cosine = self._unit @ self._unit[row]  # (C,)
            cosine[self._cjk != self._cjk[row]] = float("-inf")  # CJK characters among themselves
            cosine[row] = float("-inf")
            best = cosine.topk(min(len(self._tokens), self.k + 2))
            same = token.lower()
            result = [
                self._tokens[j]
                for j, score in zip(best.indices.tolist(), best.values.tolist(), strict=True)
                if score > float("-inf") and self._tokens[j].lower() != same
            ][: self.k]
        self._cache[word] = result
        return result


def augment_examples(
    examples: list[Example],
    ops: tuple[str, ...],
    *,
    rate: float = 0.1,
    copies: int = 1,
    seed: int = 0,
    neighbours: EmbeddingNeighbours | None = None,
) -> list[Example]:
    """New examples only: `copies` per input, each made by one operation drawn from `ops` that
    changes max(1, round(rate * tokens)) tokens. "insert" and "substitute" pick content words
    (3+ characters, or a CJK character). Labels, pairs and lines are kept; a text never
    becomes empty; the same inputs and seed give the same outputs.

    >>> augment_examples([Example("the film was good", "pos")], ("swap",), seed=1)
    [Example(text='film the was good', label='pos', text_pair=None, line=0)]
    """
    if not ops:
        return []
    if unknown := [op for op in ops if op not in AUGMENT_OPS]:
        raise JiyiError(f"--augment: unknown operation {', '.join(unknown)}.")
    if "substitute" in ops and neighbours is None:
        raise JiyiError(
            "--augment substitute needs the model's embeddings for neighbours; drop it or "
            "augment with a model."
        )
    if not 0 < rate <= 1:
        raise JiyiError(f"the augmentation rate must be in (0, 1], got {rate}.")
    if copies < 1:
        raise JiyiError(f"the number of augmented copies must be at least 1, got {copies}.")
    rng = random.Random(seed)
    out = []
    for ex in examples:
        tokens = split_tokens(ex.text)
        for _ in range(copies):
            op = rng.choice(ops)
            if not tokens:
                new = ex.text
            else:
                n = max(1, round(rate * len(tokens)))
                new = join_tokens(_OPS[op](list(tokens), n, rng, neighbours))
            out.append(replace(ex, text=new if new.strip() else ex.text))
    return out


def split_tokens(text: str) -> list[str]:
    """Whitespace tokens, with each character of an unspaced script a token of its own.

    >>> split_tokens("我很喜欢 iPhone, ok")
    ['我', '很', '喜', '欢', 'iPhone,', 'ok']
    """
    tokens: list[str] = []
    for word in text.split():
        run = ""
        for ch in word:
            if _unspaced(ch):
                tokens += [run, ch] if run else [ch]
                run = ""
            else:
                run += ch
        if run:
            tokens.append(run)
    return tokens


def join_tokens(tokens: list[str]) -> str:
    """Inverse of split_tokens up to whitespace: no space next to an unspaced-script token.

    >>> join_tokens(["我", "很", "喜", "欢", "iPhone,", "ok"])
    '我很喜欢iPhone, ok'
    """
    text = ""
    for token in tokens:
        if text and not (_unspaced(text[-1]) or _unspaced(token[0])):
            text += " "
        text += token
    return text


def _delete(tokens: list[str], n: int, rng: random.Random, _: Any) -> list[str]:
    drop = set(rng.sample(range(len(tokens)), min(n, len(tokens) - 1)))  # keep at least one
    return [t for i, t in enumerate(tokens) if i not in drop]


def _swap(tokens: list[str], n: int, rng: random.Random, _: Any) -> list[str]:
    for _ in range(n if len(tokens) > 1 else 0):
        i, j = rng.sample(range(len(tokens)), 2)
        tokens[i], tokens[j] = tokens[j], tokens[i]
    return tokens


def _insert(
    tokens: list[str], n: int, rng: random.Random, nb: EmbeddingNeighbours | None
) -> list[str]:
    words = [core for t in tokens if _is_content(core := _split_core(t)[1])] or tokens
    for _ in range(n):
        new = rng.choice(words)  # a word of the text, unless one of them has neighbours
        for word in rng.sample(words, min(len(words), 10)):  # EDA tries up to 10 words
            if nb is not None and (options := nb.neighbours(word)):
                new = rng.choice(options)
                break
        tokens.insert(rng.randint(0, len(tokens)), new)
    return tokens


def _substitute(
    tokens: list[str], n: int, rng: random.Random, nb: EmbeddingNeighbours | None
) -> list[str]:
    assert nb is not None  # augment_examples checks
    positions = list(range(len(tokens)))
    rng.shuffle(positions)
    for i in positions:
        if n == 0:
            break
        before, core, after = _split_core(tokens[i])
        if _is_content(core) and (options := nb.neighbours(core)):
            tokens[i] = before + _same_case(rng.choice(options), core) + after
            n -= 1
    return tokens


_OPS = {"delete": _delete, "swap": _swap, "insert": _insert, "substitute": _substitute}


def _split_core(token: str) -> tuple[str, str, str]:
    """Punctuation around a word: "(good!" -> ("(", "good", "!")."""
    m = _CORE.match(token)
    assert m is not None  # the pattern matches any string
    return m.group(1), m.group(2), m.group(3)


def _is_content(word: str) -> bool:
    """Worth replacing: 3+ characters ("a", "to", "of" are not), or a CJK character."""
    return len(word) >= 3 or (len(word) == 1 and _unspaced(word))


def _same_case(word: str, like: str) -> str:
    """Match the case of `like`: ("great", "Good") -> "Great", ("great", "GOOD") -> "GREAT"."""
    if like.isupper() and len(like) > 1:
        return word.upper()
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


def _unspaced(ch: str) -> bool:
    """Characters of scripts written without spaces: CJK ideographs, kana, CJK punctuation."""
    c = ord(ch)
    return (
        0x2E80 <= c <= 0x9FFF
        or 0xF900 <= c <= 0xFAFF
        or 0xFF00 <= c <= 0xFFEF
        or 0x20000 <= c <= 0x3FFFF
    )
