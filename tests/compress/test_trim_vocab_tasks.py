"""`jiyi train --trim-vocab` / `--freeze-embeddings` for NER and QA, on a tiny Unigram
(SentencePiece-like, "▁"-prefixed pieces) BERT: the base is trimmed to exactly what the task's
encoding tokenizes of the training split (NER: the pre-split words; QA: questions and contexts),
so the trimmed tokenizer gives the training data the full one's ids, remapped; validation text
stays out of the vocabulary; frozen embeddings do not move; the predictors warn on [UNK]."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from test_trim_vocab import ZH, build_unigram_bert, remap, unigram_corpus

from jiyi.cli import main as run_cli
from jiyi.compress.trim_vocab import CONFIG_KEY, RECORD
from jiyi.errors import JiyiError
from task_data import (
    QUESTION,
    make_rows,
    make_sentences,
    ner_vocab_corpus,
    qa_vocab_corpus,
    write_conll,
    write_jsonl,
)

UNSEEN = ["Ünïcödé", "naïve", "café", "☕"]  # in the tokenizer's corpus, never in training text


@pytest.fixture(scope="module")
def unigram_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    corpus = unigram_corpus() + ner_vocab_corpus() + qa_vocab_corpus()
    return build_unigram_bert(tmp_path_factory.mktemp("unigram-task-bert"), corpus)


def tokenizers(base: Path, run: Path):
    from transformers import AutoTokenizer

    new_to_old = json.loads((run / "trimmed-base" / RECORD).read_text())["new_to_old"]
    full = AutoTokenizer.from_pretrained(str(base))
    trimmed = AutoTokenizer.from_pretrained(str(run / "model"))  # plain transformers
    return full, trimmed, new_to_old


def check_trimmed_run(run: Path, train_file: Path) -> dict:
    record = json.loads((run / "trimmed-base" / RECORD).read_text())
    assert record["corpus"] == [str(train_file)]
    assert record["tokenizer_model"] == "Unigram"
    assert record["corpus_texts_segmented_differently"] == 0
    assert record["kept"] < record["original_vocab_size"]
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["vocab_size"] == record["kept"] and config[CONFIG_KEY]["kept"] == record["kept"]
    return record


def test_ner_trim_vocab_keeps_the_pieces_of_the_pre_split_words(
    unigram_base: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Chinese sentences split into one word per character (as CoNLL data such as
    people-daily-ner is): pre-split, every character gets its own "▁", pieces the raw sentence
    never produces; trimming on them is what gives the training words the same ids."""
    from jiyi.ner.align import encode_words
    from jiyi.ner.predict import NerTagger

    train = make_sentences(120, 1) + [(list(z), ["O"] * len(z)) for z in ZH]
    validation = [*make_sentences(20, 2), (UNSEEN, ["O"] * len(UNSEEN))]
    data = tmp_path / "data"
    data.mkdir()
    write_conll(data / "train.conll", train)
    write_conll(data / "validation.conll", validation)
    run = tmp_path / "run"
    argv = ["train", "--task", "ner", "--model", str(unigram_base), "--output", str(run)]
    argv += ["--train", str(data / "train.conll"), "--validation", str(data / "validation.conll")]
    argv += ["--trim-vocab", "--freeze-embeddings", "--max-steps", "12", "--batch-size", "16"]
    assert run_cli([*argv, "--lr", "5e-3", "--max-length", "24", "--stride", "6"]) == 0
    record = check_trimmed_run(run, data / "train.conll")
    assert record["corpus_texts"] == len(train)

    full, trimmed, new_to_old = tokenizers(unigram_base, run)
    words = [w for w, _ in train]
    a = encode_words(full, words, 24, 6)
    b = encode_words(trimmed, words, 24, 6)
    assert b.input_ids.tolist() == remap(a.input_ids.tolist(), new_to_old)
    assert (b.word_ids == a.word_ids).all() and b.dropped == a.dropped
    chinese = list(ZH[0])
    pieces = trimmed.convert_ids_to_tokens(
        trimmed(chinese, is_split_into_words=True, add_special_tokens=False)["input_ids"]
    )
    assert pieces == full.convert_ids_to_tokens(
        full(chinese, is_split_into_words=True, add_special_tokens=False)["input_ids"]
    )
    assert "<unk>" not in pieces and pieces.count("▁") == len(chinese)  # one "▁" per word
    unseen = trimmed(UNSEEN, is_split_into_words=True, add_special_tokens=False)["input_ids"]
    assert trimmed.unk_token_id in unseen  # validation text stayed out of the vocabulary

    # --freeze-embeddings: the embedding layer is the trimmed base's; the encoder moved
    from safetensors.torch import load_file

    base = load_file(str(run / "trimmed-base" / "model.safetensors"))
    tuned = load_file(str(run / "model" / "model.safetensors"))
    for name in ("word_embeddings.weight", "position_embeddings.weight", "LayerNorm.bias"):
        key = next(k for k in tuned if k.endswith(f"embeddings.{name}"))
        assert torch.equal(tuned[key], base[key]), key
    moved = next(k for k in tuned if k.endswith("attention.self.query.weight"))
    assert not torch.equal(tuned[moved], base[moved])

    caplog.set_level(logging.WARNING, logger="jiyi")
    tagger = NerTagger(run)
    tagger.predict_tokens(words[:8])
    assert not caplog.records
    tagger.predict_tokens([UNSEEN])
    assert len(caplog.records) == 1 and "<unk>" in caplog.records[0].getMessage()


def test_qa_trim_vocab_keeps_the_pieces_of_questions_and_contexts(
    unigram_base: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from jiyi.qa.predict import QuestionAnswerer
    from jiyi.qa.windows import encode_windows

    rows = make_rows(120, 1, long_every=6)
    rows += [  # unanswerable questions about Chinese text
        {"id": f"zh-{i}", "question": QUESTION, "context": z, "answers": {"text": [],
         "answer_start": []}} for i, z in enumerate(ZH)
    ]  # fmt: skip
    validation = make_rows(20, 2)
    validation[0]["context"] = " ".join(UNSEEN) + " " + validation[0]["context"]
    validation[0]["answers"]["answer_start"] = [
        s + len(" ".join(UNSEEN)) + 1 for s in validation[0]["answers"]["answer_start"]
    ]
    data = tmp_path / "data"
    write_jsonl(data / "train.jsonl", rows)
    write_jsonl(data / "validation.jsonl", validation)
    run = tmp_path / "run"
    argv = ["train", "--task", "qa", "--model", str(unigram_base), "--output", str(run)]
    argv += ["--train", str(data / "train.jsonl"), "--validation", str(data / "validation.jsonl")]
    argv += ["--trim-vocab", "--max-steps", "8", "--batch-size", "16", "--max-length", "48"]
    assert run_cli(argv) == 0
    record = check_trimmed_run(run, data / "train.jsonl")
    assert record["corpus_texts"] == 2 * len(rows)  # no question was cut: whole + contexts

    full, trimmed, new_to_old = tokenizers(unigram_base, run)
    stride = json.loads((run / "model" / "jiyi.json").read_text())["stride"]
    questions, contexts = [r["question"] for r in rows], [r["context"] for r in rows]
    a = encode_windows(full, questions, contexts, 48, stride)
    b = encode_windows(trimmed, questions, contexts, 48, stride)
    assert len(b) == len(a) > len(rows)  # long contexts: several windows, cut the same way
    assert b.input_ids.tolist() == remap(a.input_ids.tolist(), new_to_old)
    assert (b.char_start == a.char_start).all() and (b.type_ids == a.type_ids).all()
    assert trimmed.unk_token_id not in b.input_ids.tolist()
    assert trimmed.unk_token_id in trimmed(" ".join(UNSEEN))["input_ids"]  # not validation's

    caplog.set_level(logging.WARNING, logger="jiyi")
    qa = QuestionAnswerer(run)
    qa.answer(questions[:4], contexts[:4])
    assert not caplog.records
    qa.answer([QUESTION], [" ".join(UNSEEN * 3)])
    assert len(caplog.records) == 1 and "<unk>" in caplog.records[0].getMessage()


def test_only_seq2seq_refuses_the_flags() -> None:
    from jiyi.config import TrainConfig
    from jiyi.tasks.registry import TASKS

    for task in ("classification", "multilabel", "ner", "qa"):
        assert TASKS[task].trim_vocab
        TrainConfig(task=task, trim_vocab=True, freeze_embeddings=True)  # accepted
    message = "applies to --task classification, multilabel, ner and qa, not seq2seq"
    with pytest.raises(JiyiError, match=f"--trim-vocab {message}"):
        TrainConfig(task="seq2seq", trim_vocab=True)
    with pytest.raises(JiyiError, match=f"--freeze-embeddings {message}"):
        TrainConfig(task="seq2seq", freeze_embeddings=True)
