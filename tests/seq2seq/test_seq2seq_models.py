"""Encoder-decoders: BERT2BERT warm-started from a tiny BERT, --share-weights (the same tensors,
fewer parameters, kept through save and load), special tokens, generation settings, and the
flag checks of --task seq2seq."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from seq2seq_helpers import build_char_t5

from conftest import build_tiny_bert, make_texts
from jiyi.config import TrainConfig
from jiyi.errors import JiyiError
from jiyi.seq2seq.modeling import (
    generate_texts,
    generation_config,
    load_saved,
    load_seq2seq,
    save_seq2seq,
)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus = [t for t, _ in make_texts(60, seed=1)]
    return build_tiny_bert(tmp_path_factory.mktemp("bert"), corpus)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # a shared tensor counts once


def test_bert2bert_special_tokens(bert_dir: Path) -> None:
    model, tok, shared = load_seq2seq(str(bert_dir), decoder=str(bert_dir))
    assert type(model).__name__ == "EncoderDecoderModel" and shared == []
    assert model.config.decoder_start_token_id == tok.cls_token_id
    assert model.config.pad_token_id == tok.pad_token_id
    gen = model.generation_config
    assert (gen.decoder_start_token_id, gen.eos_token_id, gen.pad_token_id) == (
        tok.cls_token_id, tok.sep_token_id, tok.pad_token_id,
    )  # fmt: skip
    assert model.decoder.config.is_decoder and model.decoder.config.add_cross_attention


def test_share_weights_ties_the_encoder_to_the_decoder(bert_dir: Path, tmp_path: Path) -> None:
    plain, _, _ = load_seq2seq(str(bert_dir), decoder=str(bert_dir))
    model, tok, shared = load_seq2seq(str(bert_dir), decoder=str(bert_dir), share_weights=True)
    enc, dec = model.encoder, model.decoder.bert
    assert (
        enc.encoder.layer[1].attention.self.query.weight
        is dec.encoder.layer[1].attention.self.query.weight
    )
    assert enc.embeddings.word_embeddings.weight is dec.embeddings.word_embeddings.weight
    assert enc.encoder.layer[0].output.LayerNorm.bias is dec.encoder.layer[0].output.LayerNorm.bias
    # the decoder's cross-attention and the encoder-only pooler stay their own
    assert "encoder.pooler.dense.weight" not in shared
    assert not any("crossattention" in name for name in shared)
    dropped = sum(
        p.numel() for n, p in model.named_parameters(remove_duplicate=False) if n in shared
    )
    assert n_params(model) == n_params(plain) - dropped
    assert n_params(model) < 0.7 * n_params(plain)  # embeddings and 2 layers shared
    # a step of training moves the one tensor both halves use
    inputs = tok(["the film was good"], return_tensors="pt")
    labels = tok(["good"], return_tensors="pt")["input_ids"][:, 1:]
    out = model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        decoder_input_ids=model.prepare_decoder_input_ids_from_labels(labels=labels),
    )
    out.logits.sum().backward()
    assert enc.encoder.layer[0].attention.self.query.weight.grad is not None

    # saved as copies (a plain Hugging Face load works), re-tied by jiyi on load
    save_seq2seq(model, tok, tmp_path / "m", shared)
    from transformers import AutoModelForSeq2SeqLM

    plain_load = AutoModelForSeq2SeqLM.from_pretrained(str(tmp_path / "m"))
    assert torch.equal(
        plain_load.encoder.encoder.layer[1].attention.self.query.weight,
        plain_load.decoder.bert.encoder.layer[1].attention.self.query.weight,
    )
    again = load_saved(tmp_path / "m", share_weights=True)
    assert n_params(again) == n_params(model)
    assert (
        again.encoder.embeddings.word_embeddings.weight
        is again.decoder.bert.embeddings.word_embeddings.weight
    )


def test_generation_greedy_and_beam(bert_dir: Path) -> None:
    model, tok, _ = load_seq2seq(str(bert_dir), decoder=str(bert_dir), share_weights=True)
    sources = [tok(t)["input_ids"] for t in ("the film was good", "bad plot", "a")]
    greedy = generation_config(model, num_beams=1, max_new_tokens=4)
    beam = generation_config(
        model, num_beams=3, length_penalty=0.5, max_new_tokens=4, no_repeat_ngram_size=2
    )
    assert (beam.num_beams, beam.length_penalty, beam.no_repeat_ngram_size) == (3, 0.5, 2)
    for gen in (greedy, beam):
        out = generate_texts(model, tok, sources, gen, batch_size=2)
        assert len(out) == 3 and all(isinstance(t, str) for t in out)
        assert all(len(tok(t, add_special_tokens=False)["input_ids"]) <= 8 for t in out)


def test_a_t5_cannot_share_weights_and_a_bert_needs_a_decoder(
    bert_dir: Path, tmp_path: Path
) -> None:
    t5 = build_char_t5(tmp_path / "t5")
    with pytest.raises(JiyiError, match=r"--share-weights ties the encoder.*give --decoder"):
        load_seq2seq(str(t5), share_weights=True)
    with pytest.raises(JiyiError, match=r"is a bert model, not an encoder-decoder.*--decoder"):
        load_seq2seq(str(bert_dir))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"decoder": "x"}, "--decoder only applies to --task seq2seq"),
        ({"num_beams": 4}, "--num-beams only applies to --task seq2seq"),
        (
            {"task": "seq2seq", "length_penalty": 2.0},
            "--length-penalty only applies to beam search",
        ),
        ({"task": "seq2seq", "num_beams": 0}, "--num-beams must be at least 1"),
        ({"task": "seq2seq", "max_target_length": 1}, "--max-target-length must be at least 2"),
        ({"task": "seq2seq", "max_new_tokens": 0}, "--max-new-tokens must be at least 1"),
        ({"task": "seq2seq", "target_column": "source"}, "--source-column and --target-column"),
        ({"task": "seq2seq", "metric": "accuracy"}, "--metric must be one of rougeL"),
        ({"task": "seq2seq", "augment": "all"}, "--augment applies to classification"),
    ],
)
def test_flag_checks(settings: dict, message: str) -> None:
    with pytest.raises(JiyiError, match=message):
        TrainConfig(**settings)


def test_seq2seq_defaults() -> None:
    config = TrainConfig(task="seq2seq")
    assert config.metric == "rougeL" and config.num_beams == 1
    assert (
        TrainConfig(task="seq2seq", metric="loss", num_beams=4, length_penalty=1.5).metric == "loss"
    )


def test_lengths_are_cut_to_the_positions_a_model_holds(bert_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM

    from jiyi.seq2seq.modeling import position_limits
    from jiyi.seq2seq.train import fit_lengths

    model, _, _ = load_seq2seq(str(bert_dir), decoder=str(bert_dir))
    assert position_limits(model) == (64, 64)  # the tiny BERT's position embeddings
    said: list[str] = []
    config = TrainConfig(task="seq2seq", max_length=128, max_target_length=32)
    assert fit_lengths(model, config, said.append) == (64, 32, 32)
    assert said == ["[yellow]--max-length 128: the encoder holds 64 positions; using 64.[/]"]
    config = TrainConfig(task="seq2seq", max_target_length=100, max_new_tokens=80)
    assert fit_lengths(model, config, said.append) == (64, 64, 63)
    t5 = AutoModelForSeq2SeqLM.from_pretrained(str(build_char_t5(tmp_path / "t5")))
    assert position_limits(t5) == (None, None)  # relative positions: no cut
    assert fit_lengths(t5, config, said.append) == (128, 100, 80)
