"""A corpus as a stream of packed, shuffled, masked-LM batches; never read whole.

texts (streamed line by line) -> tokens (fast tokenizer, 1,000 texts at a time) -> one stream
`doc1 [SEP] doc2 [SEP] ...` cut into blocks `[CLS] <max_length - 2 tokens> [SEP]` -> a shuffle
buffer of blocks -> batches. Memory is bounded by the shuffle buffer, whatever the corpus size.

An epoch is one pass over the corpus, in an order fixed by (seed, epoch): a resumed run replays
the stream to its data position (tokenizing without training), and sees the same batches.

Held-out text for perplexity: `--validation FILES`, or else the texts whose CRC32 falls in the
lowest `heldout_permille` of the range. Those are excluded from training wherever they occur.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jiyi.models import quiet_transformers
from jiyi.pretrain.tokenizer import corpus_files, iter_corpus_texts

TOKENIZE_CHUNK = 1000  # texts per call of the fast tokenizer
EXACT_COUNT_BYTES = 64 << 20  # corpora up to this size are counted exactly, larger ones sampled
SAMPLE_BYTES = 8 << 20


@dataclass
class Batch:
    """Packed blocks: token ids (B, L), whole-word starts (B, L) and a padding mask (B, L)."""

    input_ids: np.ndarray
    word_starts: np.ndarray
    attention_mask: np.ndarray
    index: int = 0  # position in its epoch (seeds its masks)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


def is_heldout(text: str, permille: int) -> bool:
    """The stable hold-out rule: the same text is held out on every run and machine."""
    return permille > 0 and zlib.crc32(text.encode("utf-8")) % 1000 < permille


@dataclass
class CorpusStream:
    """Settings of the stream; `batches(epoch)` gives the training batches of one epoch."""

    paths: Sequence[str | Path]
    tokenizer: Any
    max_length: int = 128
    batch_size: int = 32
    text_column: str = "text"
    whole_word: bool = False
    chinese_words: bool = False  # whole words of CJK text by jieba segmentation
    heldout_permille: int = 0
    shuffle_buffer: int = 20_000  # blocks
    seed: int = 42

    def __post_init__(self) -> None:
        self.files = corpus_files(self.paths)
        tok = self.tokenizer
        self.cls_id, self.sep_id = tok.cls_token_id, tok.sep_token_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        if self.cls_id is None or self.sep_id is None:
            raise ValueError("the tokenizer needs [CLS] and [SEP] tokens (a BERT-style vocabulary)")

    # -- texts and tokens ------------------------------------------------------------------
    def texts(self, *, heldout: bool = False) -> Iterator[str]:
        for text in iter_corpus_texts(self.files, self.text_column):
            if is_heldout(text, self.heldout_permille) == heldout:
                yield text

    def token_stream(self, texts: Iterable[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, word_starts) per text, tokenized in chunks, without special tokens."""
        chunk: list[str] = []
        for text in texts:
            chunk.append(text)
            if len(chunk) == TOKENIZE_CHUNK:
                yield from self._tokenize(chunk)
                chunk = []
        if chunk:
            yield from self._tokenize(chunk)

    def _tokenize(self, texts: list[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        with quiet_transformers():  # no "longer than the maximum" warnings: blocks are cut later
            enc = self.tokenizer(
                texts,
                add_special_tokens=False,
                return_attention_mask=False,
                return_token_type_ids=False,
                return_offsets_mapping=self.chinese_words,
            )
        for i, ids in enumerate(enc["input_ids"]):
            ids = np.asarray(ids, dtype=np.int32)
            if not self.whole_word:
                starts = np.ones(len(ids), dtype=bool)
            else:
                words = enc.word_ids(i)
                starts = word_starts(words)
                if self.chinese_words:
                    starts = merge_chinese_words(texts[i], enc["offset_mapping"][i], starts)
            yield ids, starts

    # -- packing -------------------------------------------------------------------------------
    def blocks(self, texts: Iterable[str]) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        """`[CLS] <L - 2 tokens of the document stream> [SEP]` blocks: (ids, starts, length).
        Documents are separated by [SEP]; the last block may be short (padded later)."""
        body = self.max_length - 2
        ids_buf: list[np.ndarray] = []
        starts_buf: list[np.ndarray] = []
        held = 0
        sep, sep_start = np.array([self.sep_id], np.int32), np.ones(1, bool)
        for ids, starts in self.token_stream(texts):
            if len(ids) == 0:
                continue
            if held:  # a [SEP] between documents
                ids_buf.append(sep)
                starts_buf.append(sep_start)
                held += 1
            ids_buf.append(ids)
            starts_buf.append(starts)
            held += len(ids)
            if held >= body:
                all_ids, all_starts = np.concatenate(ids_buf), np.concatenate(starts_buf)
                n_full = len(all_ids) // body
                for k in range(n_full):
                    cut = slice(k * body, (k + 1) * body)
                    yield self._frame(all_ids[cut], all_starts[cut])
                ids_buf, starts_buf = [all_ids[n_full * body :]], [all_starts[n_full * body :]]
                held = len(ids_buf[0])
                if held and ids_buf[0][0] == self.sep_id:  # don't open a block with a separator
                    ids_buf, starts_buf = [ids_buf[0][1:]], [starts_buf[0][1:]]
                    held -= 1
        if held:
            yield self._frame(np.concatenate(ids_buf), np.concatenate(starts_buf))

    def _frame(self, ids: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        out = np.full(self.max_length, self.pad_id, np.int32)
        st = np.ones(self.max_length, bool)
        out[0], out[1 : len(ids) + 1], out[len(ids) + 1] = self.cls_id, ids, self.sep_id
        st[1 : len(ids) + 1] = starts
        return out, st, len(ids) + 2

    def _batch(self, blocks: list[tuple[np.ndarray, np.ndarray, int]]) -> Batch:
        ids = np.stack([b[0] for b in blocks])
        starts = np.stack([b[1] for b in blocks])
        lengths = np.array([b[2] for b in blocks])
        mask = np.arange(self.max_length)[None, :] < lengths[:, None]
        return Batch(ids, starts, mask)

    # -- training and held-out batches -------------------------------------------------------
    def batches(self, epoch: int) -> Iterator[Batch]:
        """This epoch's training batches: blocks through a shuffle buffer seeded by (seed, epoch)."""
        rng = np.random.default_rng([self.seed, epoch])
        buffer: list[tuple[np.ndarray, np.ndarray, int]] = []
        out: list[tuple[np.ndarray, np.ndarray, int]] = []
        for block in self.blocks(self.texts()):
            if len(buffer) < self.shuffle_buffer:
                buffer.append(block)
                continue
            i = int(rng.integers(len(buffer)))
            out.append(buffer[i])
            buffer[i] = block
            if len(out) == self.batch_size:
                yield self._batch(out)
                out = []
        for i in rng.permutation(len(buffer)):
            out.append(buffer[i])
            if len(out) == self.batch_size:
                yield self._batch(out)
                out = []
        if out:
            yield self._batch(out)

    def heldout_batches(
        self, texts: Iterable[str] | None = None, max_blocks: int = 256
    ) -> list[Batch]:
        """Up to `max_blocks` blocks of held-out text (from `texts`, else the held-out rule)."""
        blocks = []
        for block in self.blocks(texts if texts is not None else self.texts(heldout=True)):
            blocks.append(block)
            if len(blocks) == max_blocks:
                break
        return [
            self._batch(blocks[i : i + self.batch_size])
            for i in range(0, len(blocks), self.batch_size)
        ]

    # -- size ----------------------------------------------------------------------------------
    def count_blocks(self) -> tuple[int, bool]:
        """Training blocks per epoch: (count, exact). Corpora above EXACT_COUNT_BYTES are
        estimated from the tokens per byte of their first SAMPLE_BYTES."""
        total = sum(f.stat().st_size for f in self.files)
        if total <= EXACT_COUNT_BYTES or any(f.suffix == ".gz" for f in self.files):
            return sum(1 for _ in self.blocks(self.texts())), True
        sample, n_bytes = [], 0
        for text in self.texts():
            if n_bytes >= SAMPLE_BYTES:
                break
            sample.append(text)
            n_bytes += len(text.encode("utf-8")) + 1
        n_tokens = sum(len(ids) + 1 for ids, _ in self.token_stream(sample))
        tokens = n_tokens / max(1, n_bytes) * total
        return max(1, math.ceil(tokens / (self.max_length - 2))), False


def word_starts(word_ids: list[int | None]) -> np.ndarray:
    """True where a token begins a new word of the pre-tokenizer (not a `##` continuation)."""
    out = np.ones(len(word_ids), dtype=bool)
    for j in range(1, len(word_ids)):
        if word_ids[j] is not None and word_ids[j] == word_ids[j - 1]:
            out[j] = False
    return out


def is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def merge_chinese_words(
    text: str, offsets: list[tuple[int, int]], starts: np.ndarray
) -> np.ndarray:
    """Chinese whole words: consecutive CJK character tokens inside one jieba word form one word
    (the tokenizer splits every CJK character into its own token, as Chinese BERT does)."""
    import jieba

    jieba.setLogLevel(60)
    boundaries = set()
    pos = 0
    for word in jieba.cut(text, HMM=True):
        boundaries.add(pos)
        pos += len(word)
    out = starts.copy()
    for j in range(1, len(offsets)):
        (ps, pe), (s, e) = offsets[j - 1], offsets[j]
        if (
            e - s == 1
            and pe - ps == 1
            and pe == s
            and is_cjk(text[s])
            and is_cjk(text[ps])
            and s not in boundaries
        ):
            out[j] = False
    return out
