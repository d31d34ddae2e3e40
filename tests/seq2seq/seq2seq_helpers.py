"""Tiny encoder-decoders for the seq2seq tests: a character-level tokenizer (every character one
token, so any string round-trips exactly) and random T5 / BART models on it, plus synthetic
tasks a small model learns on a CPU in seconds."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

LETTERS = string.ascii_lowercase


def char_tokenizer(chars: str, specials: list[str], template: str):
    """A fast tokenizer with one token per character; `template` is its post-processor for one
    sequence, e.g. "$A </s>" (T5) or "<s> $A </s>" (BART)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate([*specials, *sorted(set(chars))])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    used = [t for t in specials if t in template]
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, vocab[t]) for t in used]
    )
    return tok


def build_char_t5(out_dir: Path, chars: str = LETTERS + " ", d_model: int = 64) -> Path:
    """A random 2+2-layer T5 (d_model 64, 4 heads of 16, d_ff 72) on a character vocabulary."""
    import torch
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    tok = char_tokenizer(chars, ["<pad>", "</s>", "<unk>"], "$A </s>")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        model_max_length=128,
    )  # fmt: skip
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=tok.get_vocab_size(), d_model=d_model, d_kv=d_model // 4, d_ff=72,
        num_layers=2, num_decoder_layers=2, num_heads=4, relative_attention_num_buckets=16,
        relative_attention_max_distance=32, dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0,
    )  # fmt: skip
    T5ForConditionalGeneration(config).save_pretrained(str(out_dir), safe_serialization=True)
    fast.save_pretrained(str(out_dir))
    return out_dir


def build_char_bart(out_dir: Path, chars: str = LETTERS + " ") -> Path:
    """A random 2+2-layer BART (d_model 32, 4 heads, ffn 37) on a character vocabulary."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

    tok = char_tokenizer(chars, ["<s>", "<pad>", "</s>", "<unk>"], "<s> $A </s>")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", pad_token="<pad>", eos_token="</s>",
        unk_token="<unk>", model_max_length=128,
    )  # fmt: skip
    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=tok.get_vocab_size(), d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=37,
        decoder_ffn_dim=37, max_position_embeddings=128, bos_token_id=0, pad_token_id=1,
        eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2,
    )  # fmt: skip
    BartForConditionalGeneration(config).save_pretrained(str(out_dir), safe_serialization=True)
    fast.save_pretrained(str(out_dir))
    return out_dir


def reversal_pairs(n: int, seed: int, lo: int = 3, hi: int = 8) -> list[dict[str, str]]:
    """`n` {"source": "hello", "target": "olleh"} rows of lo..hi random letters."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        word = "".join(rng.choice(LETTERS) for _ in range(rng.randint(lo, hi)))
        rows.append({"source": word, "target": word[::-1]})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path
