"""Encoder-decoder models: load one (T5, BART, Marian: any `AutoModelForSeq2SeqLM` folder), or
warm-start one from two BERT-style encoders (BERT2BERT), optionally sharing the encoder's
parameters with the decoder (参数共享, parameter sharing); generate with a `GenerationConfig`.

>>> model, tokenizer, shared = load_seq2seq("bert-dir", decoder="bert-dir", share_weights=True)
>>> len(shared)  # encoder parameters that are now the decoder's own tensors
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from jiyi.errors import JiyiError
from jiyi.hf import dropout_config


def load_seq2seq(
    model: str,
    *,
    decoder: str | None = None,
    share_weights: bool = False,
    dropout: float | None = None,
) -> tuple[Any, Any, list[str]]:
    """(model, tokenizer, names of the encoder parameters shared with the decoder).

    With `decoder`, an `EncoderDecoderModel` warm-started from the encoder `model` and the
    decoder `decoder` (cross-attention added, randomly initialised); its decoder starts from
    [CLS], pads with [PAD] and ends at [SEP]. Without, `model` must be an encoder-decoder.
    """
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, EncoderDecoderModel

    from jiyi.models import load_tokenizer, quiet_transformers, resolve_model

    path = resolve_model(model)
    tokenizer = load_tokenizer(path)
    if decoder is not None:
        dec_path = resolve_model(decoder, flag="--decoder")
        if dec_path != path and load_tokenizer(dec_path).get_vocab() != tokenizer.get_vocab():
            raise JiyiError(
                f"--decoder {decoder}: its vocabulary differs from --model {model}'s. jiyi "
                "reads sources and targets with one tokenizer: warm-start both halves from "
                "checkpoints that share a vocabulary."
            )
        try:
            enc_config = dropout_config(AutoConfig.from_pretrained(path), dropout)
            dec_config = dropout_config(AutoConfig.from_pretrained(dec_path), dropout)
            with quiet_transformers():
                net = EncoderDecoderModel.from_encoder_decoder_pretrained(
                    path, dec_path, encoder_config=enc_config, decoder_config=dec_config
                )
        except (OSError, ValueError, KeyError) as e:
            raise JiyiError(
                f"--model {model} / --decoder {decoder}: could not build an encoder-decoder ({e})."
            ) from None
        set_bert2bert_tokens(net, tokenizer)
    else:
        try:
            config = AutoConfig.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise JiyiError(f"--model {model}: could not read its config ({e}).") from None
        if not getattr(config, "is_encoder_decoder", False):
            raise JiyiError(
                f"--model {model} is a {config.model_type} model, not an encoder-decoder. Give a "
                "T5, BART or Marian folder, or warm-start one from this encoder with "
                f"--decoder {model} (BERT2BERT)."
            )
        try:
            with quiet_transformers():
                net = AutoModelForSeq2SeqLM.from_pretrained(
                    path, config=dropout_config(config, dropout)
                )
        except (OSError, ValueError) as e:
            raise JiyiError(
                f"--model {model}: could not load it as a seq2seq model ({e})."
            ) from None
    shared: list[str] = []
    if share_weights:
        if not hasattr(net, "decoder") or type(net).__name__ != "EncoderDecoderModel":
            raise JiyiError(
                "--share-weights ties the encoder of a warm-started encoder-decoder to its "
                f"decoder: give --decoder too (e.g. --decoder {model}). {type(net).__name__} "
                "has no such option here."
            )
        shared = tie_encoder_to_decoder(net)
    if getattr(net.config, "decoder_start_token_id", None) is None:
        net.config.decoder_start_token_id = net.generation_config.decoder_start_token_id
    if net.config.decoder_start_token_id is None:
        raise JiyiError(f"--model {model}: its config names no decoder_start_token_id.")
    return net, tokenizer, shared


def set_bert2bert_tokens(model: Any, tokenizer: Any) -> None:
    """A BERT decoder starts from [CLS], pads with [PAD] and stops at [SEP] (or the tokenizer's
    bos/pad/eos where it has no [CLS]/[SEP])."""
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    if start is None or end is None or pad is None:
        raise JiyiError(
            "the tokenizer lacks a start ([CLS]/bos), end ([SEP]/eos) or [PAD] token, which an "
            "encoder-decoder warm-started from encoders needs."
        )
    model.config.decoder_start_token_id = start
    model.config.pad_token_id = pad
    model.config.eos_token_id = end
    model.config.vocab_size = model.config.decoder.vocab_size
    gen = model.generation_config
    gen.decoder_start_token_id, gen.bos_token_id = start, start
    gen.pad_token_id, gen.eos_token_id = pad, end


def tie_encoder_to_decoder(model: Any) -> list[str]:
    """Make every encoder parameter the very tensor of the decoder's parameter of the same name
    (as transformers 4's `tie_encoder_decoder=True` did; 5.x dropped that option). The decoder's
    cross-attention and LM head stay its own; an encoder-only pooler stays unshared.

    encoder.encoder.layer.0.attention.self.query.weight is decoder.bert.encoder.layer.0.
    attention.self.query.weight -> one (H, H) tensor, counted once in the parameters.
    Returns the names of the encoder parameters now shared (prefixed "encoder.").
    """
    encoder, base = model.encoder, model.decoder.base_model
    if type(encoder) is not type(base):
        raise JiyiError(
            f"--share-weights needs the encoder and decoder of one architecture; got "
            f"{type(encoder).__name__} and {type(base).__name__}."
        )
    base_modules = dict(base.named_modules())
    shared = []
    for name, module in encoder.named_modules():
        twin = base_modules.get(name)
        if twin is None:
            continue
        for pname, param in list(module._parameters.items()):
            other = twin._parameters.get(pname)
            if param is None or other is None:
                continue
            full = f"{name}.{pname}" if name else pname
            if param.shape != other.shape:
                raise JiyiError(
                    f"--share-weights: encoder and decoder differ in size at {full} "
                    f"({tuple(param.shape)} vs {tuple(other.shape)}); warm-start both from "
                    "checkpoints of the same size (e.g. --decoder the same folder as --model)."
                )
            setattr(module, pname, other)
            shared.append(f"encoder.{full}")
    if not shared:
        raise JiyiError("--share-weights: the encoder and decoder have no parameter in common.")
    model.config.tie_encoder_decoder = True  # recorded in config.json (transformers 4 re-ties)
    return shared


def save_seq2seq(model: Any, tokenizer: Any, folder: Path, shared: list[str]) -> None:
    """A Hugging Face folder (config.json, generation_config.json, model.safetensors, the
    tokenizer). safetensors stores no shared tensors, so the shared encoder parameters are
    written as copies: the folder loads without jiyi, and jiyi re-ties them on load."""
    from jiyi.models import quiet_transformers

    state = model.state_dict()
    for name in shared:
        state[name] = state[name].detach().clone()
    with quiet_transformers():
        model.save_pretrained(str(folder), state_dict=state, safe_serialization=True)
        tokenizer.save_pretrained(str(folder))


def load_saved(folder: str | Path, *, share_weights: bool = False) -> Any:
    """A saved seq2seq model folder, in eval mode (shared weights re-tied)."""
    from transformers import AutoModelForSeq2SeqLM

    from jiyi.models import quiet_transformers

    with quiet_transformers():
        model = AutoModelForSeq2SeqLM.from_pretrained(str(folder))
    if share_weights:
        tie_encoder_to_decoder(model)
    return model.eval()


def position_limits(model: Any) -> tuple[int | None, int | None]:
    """Tokens the encoder and the decoder can hold (learned or fixed position embeddings):
    (512, 512) for BERT2BERT from BERT-base, (1024, 1024) for BART; None where positions are
    relative (T5) and only memory bounds the length."""
    config = model.config
    encoder = getattr(config, "encoder", None)
    if encoder is not None and not isinstance(encoder, bool) and hasattr(encoder, "to_dict"):
        decoder = config.decoder  # an EncoderDecoderConfig: each half has its own
        return (
            getattr(encoder, "max_position_embeddings", None),
            getattr(decoder, "max_position_embeddings", None),
        )
    n = getattr(config, "max_position_embeddings", None)
    return n, n


def generation_config(
    model: Any,
    *,
    num_beams: int = 1,
    length_penalty: float | None = None,
    max_new_tokens: int = 128,
    no_repeat_ngram_size: int | None = None,
) -> Any:
    """The model's GenerationConfig with jiyi's settings: greedy (num_beams 1) or beam search."""
    import copy

    gen = copy.deepcopy(model.generation_config)
    gen.num_beams = num_beams
    gen.do_sample = False
    gen.max_new_tokens = max_new_tokens
    gen.max_length = None  # max_new_tokens bounds the output
    if num_beams > 1:
        gen.length_penalty = 1.0 if length_penalty is None else length_penalty
        gen.early_stopping = True
    else:  # beam-only settings would make the config invalid
        gen.length_penalty, gen.early_stopping = 1.0, False
    gen.no_repeat_ngram_size = no_repeat_ngram_size or 0
    if gen.decoder_start_token_id is None:
        gen.decoder_start_token_id = model.config.decoder_start_token_id
    if gen.pad_token_id is None:
        gen.pad_token_id = model.config.pad_token_id
    if gen.eos_token_id is None:
        gen.eos_token_id = model.config.eos_token_id
    return gen


@torch.inference_mode()
def generate_texts(
    model: Any,
    tokenizer: Any,
    sources: list[list[int]],
    gen: Any,
    *,
    batch_size: int = 32,
    device: Any = None,
) -> list[str]:
    """Decoded outputs for tokenized sources, in input order (batches sorted by length)."""
    import numpy as np

    from jiyi.data.collate import sorted_batches
    from jiyi.seq2seq.data import EncodedPairs, pad_pairs

    if not sources:
        return []
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    enc = EncodedPairs(sources, [[] for _ in sources])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[str] = [""] * len(sources)
    for batch in sorted_batches(np.asarray([len(s) for s in sources]), batch_size):
        inputs = {k: v.to(device) for k, v in pad_pairs(enc, batch, pad_id, False).items()}
        ids = model.generate(**inputs, generation_config=gen)  # (B, T_out)
        texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
        for i, text in zip(batch, texts, strict=True):
            out[i] = text.strip()
    if was_training:
        model.train()
    return out
