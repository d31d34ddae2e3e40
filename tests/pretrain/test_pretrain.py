"""`jiyi pretrain` on tiny models: masking statistics, whole words, packing, streaming, the run
end to end (perplexity falls, resume reproduces, the folder loads and fine-tunes)."""

from __future__ import annotations

import json
import random
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FILLER, NEGATIVE, POSITIVE, make_texts
from jiyi.cli import main
from jiyi.models import load_tokenizer
from jiyi.pretrain.corpus import CorpusStream, merge_chinese_words, word_starts
from jiyi.pretrain.masking import IGNORE, Masker

SPECIAL = np.array([0, 1, 2, 3, 4])  # [PAD] [UNK] [CLS] [SEP] [MASK]


def repetitive_corpus(path: Path, n: int = 1500, seed: int = 0) -> Path:
    """Sentences from a tiny grammar: a model that learns anything lowers its perplexity."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        good = rng.random() < 0.5
        word = rng.choice(POSITIVE if good else NEGATIVE)
        lines.append(f"the film was {word} and the music was {word} too")
        lines.append(" ".join(rng.sample(FILLER, 6)))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- masking -----------------------------------------------------------------------------------


def test_masking_rate_split_and_specials() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 500, (400, 64))
    ids[:, 0], ids[:, 30], ids[:, -1] = 2, 3, 3  # [CLS], a document separator, [SEP]
    att = np.ones_like(ids, dtype=bool)
    att[:50, 40:] = False  # padded rows
    ids[:50, 40:] = 0
    starts = np.ones_like(att)
    masker = Masker(mask_id=4, special_ids=SPECIAL, vocab_size=500)
    out, labels = masker(ids, starts, att, rng)
    chosen = labels != IGNORE
    maskable = att & ~np.isin(ids, SPECIAL)
    # exactly round(15%) of each row's maskable tokens, never a special token or padding
    assert (chosen.sum(1) == np.maximum(1, np.rint(maskable.sum(1) * 0.15))).all()
    assert not (chosen & ~maskable).any()
    assert (labels[chosen] == ids[chosen]).all()
    assert (out[~chosen] == ids[~chosen]).all()  # unchosen tokens are untouched
    masked = (out[chosen] == 4).mean()
    kept = (out[chosen] == ids[chosen]).mean()
    replaced = 1 - masked - kept
    assert abs(masked - 0.8) < 0.02 and abs(kept - 0.1) < 0.02 and abs(replaced - 0.1) < 0.02
    assert not np.isin(out[chosen & (out != 4) & (out != ids)], SPECIAL).any()


def test_whole_word_masking_takes_every_piece_of_a_word() -> None:
    rng = np.random.default_rng(1)
    # [CLS] w1 w1' w1'' w2 w3 w3' [SEP] w4 w4' ... : starts mark the first piece of each word
    starts_row = np.array([1, 1, 0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1, 1], bool)
    ids = np.tile(np.arange(10, 30), (300, 1))
    ids[:, 0], ids[:, 7], ids[:, -1] = 2, 3, 3
    starts = np.tile(starts_row, (300, 1))
    att = np.ones_like(ids, dtype=bool)
    masker = Masker(mask_id=4, special_ids=SPECIAL, vocab_size=100, rate=0.3, whole_word=True)
    _, labels = masker(ids, starts, att, rng)
    chosen = labels != IGNORE
    words = [[1, 2, 3], [4], [5, 6], [8, 9], [10], [11, 12, 13, 14], [15], [16, 17], [18]]
    for row in chosen:
        for word in words:
            assert row[word].all() or not row[word].any(), (row, word)
        assert 1 <= row.sum() <= 5  # budget round(0.3 * 17) = 5, never exceeded
    assert not chosen[:, [0, 7, 19]].any()


def test_word_starts_and_chinese_words() -> None:
    assert word_starts([None, 0, 0, 1, 2, 2, None]).tolist() == [
        True,
        True,
        False,
        True,
        True,
        False,
        True,
    ]
    text = "我爱北京天安门"
    offsets = [(i, i + 1) for i in range(len(text))]  # one token per character
    merged = merge_chinese_words(text, offsets, np.ones(len(text), bool))
    # jieba: 我 / 爱 / 北京 / 天安门
    assert merged.tolist() == [True, True, True, False, True, False, False]


# --- packing and streaming ---------------------------------------------------------------------


def test_blocks_pack_documents_in_order(tiny_model_dir: Path, tmp_path: Path) -> None:
    tok = load_tokenizer(str(tiny_model_dir))
    texts = [t for t, _ in make_texts(60, seed=3)]
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    stream = CorpusStream([corpus], tok, max_length=16, batch_size=4)
    blocks = list(stream.blocks(stream.texts()))
    assert all(len(ids) == 16 for ids, _, _ in blocks)
    assert all(n == 16 for _, _, n in blocks[:-1]) and 2 < blocks[-1][2] <= 16
    cls, sep = tok.cls_token_id, tok.sep_token_id
    body = []
    for ids, _, n in blocks:
        assert ids[0] == cls and ids[n - 1] == sep and (ids[n:] == tok.pad_token_id).all()
        body += ids[1 : n - 1].tolist()
    expected = []
    for text in texts:  # documents joined by [SEP], every token exactly once, in order
        expected += [*tok(text, add_special_tokens=False)["input_ids"], sep]
    assert [t for t in body if t != sep] == [t for t in expected if t != sep]
    # one epoch of shuffled batches holds every block once; another epoch another order
    ep0 = [tuple(r) for b in stream.batches(0) for r in b.input_ids]
    ep1 = [tuple(r) for b in stream.batches(1) for r in b.input_ids]
    assert sorted(ep0) == sorted(tuple(b[0]) for b in blocks) == sorted(ep1)
    assert ep0 != ep1 and ep0 == [tuple(r) for b in stream.batches(0) for r in b.input_ids]


def test_heldout_texts_never_train(tiny_model_dir: Path, tmp_path: Path) -> None:
    tok = load_tokenizer(str(tiny_model_dir))
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(f"the film {i} story" for i in range(400)) + "\n", "utf-8")
    stream = CorpusStream([corpus], tok, heldout_permille=100)
    held, train = set(stream.texts(heldout=True)), set(stream.texts())
    assert 20 < len(held) < 70 and not held & train and len(held | train) == 400


def test_the_stream_never_holds_the_corpus(tiny_model_dir: Path, tmp_path: Path) -> None:
    tok = load_tokenizer(str(tiny_model_dir))
    corpus = tmp_path / "big.txt"
    rng = random.Random(0)
    with open(corpus, "w", encoding="utf-8") as f:
        for _ in range(60_000):
            f.write(" ".join(rng.choices(FILLER, k=20)) + "\n")
    size = corpus.stat().st_size  # ~7 MB, ~1.3 M tokens
    stream = CorpusStream([corpus], tok, max_length=32, batch_size=8, shuffle_buffer=64)
    tracemalloc.start()
    n_tokens = sum(b.n_tokens for b in stream.batches(0))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n_tokens > 1_000_000
    assert peak < size / 4, f"peak {peak} bytes for a {size}-byte corpus"


# --- end to end --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pretrained_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pretrain")
    corpus = repetitive_corpus(root / "corpus.txt")
    out = root / "run"
    argv = [
        "pretrain",
        "--corpus",
        str(corpus),
        "--config",
        "tiny",
        "--tokenizer",
        str(tiny_model_dir),
        "--max-steps",
        "60",
        "--batch-size",
        "16",
        "--max-length",
        "32",
        "--lr",
        "3e-3",
        "--heldout-fraction",
        "0.05",
        "--eval-steps",
        "20",
        "--save-steps",
        "20",
        "--keep-checkpoints",
        "5",
        "--keep-final-checkpoint",  # test_resume_reproduces_the_run resumes from them
        "--log-every",
        "5",
        "--output",
        str(out),
    ]
    assert main(argv) == 0
    return out


def test_pretraining_lowers_perplexity(pretrained_run: Path) -> None:
    records = [json.loads(line) for line in (pretrained_run / "metrics.jsonl").open()]
    evals = [r for r in records if r["event"] == "eval"]
    assert [r["step"] for r in evals] == [0, 20, 40, 60]
    assert evals[-1]["perplexity"] < 0.6 * evals[0]["perplexity"]
    train = [r for r in records if r["event"] == "train"]
    assert all(r["tokens_per_s"] > 0 for r in train)
    metrics = json.loads((pretrained_run / "eval" / "metrics.json").read_text())
    assert metrics["best_perplexity"] == min(r["perplexity"] for r in evals)
    assert (pretrained_run / "eval" / "perplexity.png").stat().st_size > 1000


def test_the_model_loads_and_fine_tunes(
    pretrained_run: Path, tiny_data_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(pretrained_run / "model")
    tok = AutoTokenizer.from_pretrained(pretrained_run / "model")
    assert model.get_output_embeddings().weight.data_ptr() == (
        model.get_input_embeddings().weight.data_ptr()
    )  # the MLM decoder is tied to the input embeddings
    inputs = tok("the film was [MASK] and the music was good too", return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[-1] == len(tok)
    meta = json.loads((pretrained_run / "model" / "jiyi.json").read_text())
    assert meta["task"] == "pretraining" and meta["perplexity"] > 1
    out = tmp_path / "ft"
    argv = [
        "train",
        "--model",
        str(pretrained_run),
        "--train",
        str(tiny_data_dir / "train.csv"),
        "--validation",
        str(tiny_data_dir / "validation.csv"),
        "--output",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "16",
    ]
    assert main(argv) == 0
    assert (out / "model" / "config.json").is_file()


def test_resume_reproduces_the_run(pretrained_run: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    copy = tmp_path / "run"
    shutil.copytree(pretrained_run, copy)
    for step in (40, 60):  # as if killed after step 20
        shutil.rmtree(copy / "checkpoints" / f"step-{step:06d}")
    assert main(["pretrain", "--output", str(copy), "--resume"]) == 0
    a = load_file(str(pretrained_run / "checkpoints" / "step-000060" / "model.safetensors"))
    b = load_file(str(copy / "checkpoints" / "step-000060" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_continued_pretraining_creates_a_tied_head(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForMaskedLM

    corpus = repetitive_corpus(tmp_path / "c.txt", n=200)
    out = tmp_path / "dapt"
    argv = ["pretrain", "--from", str(tiny_model_dir), "--corpus", str(corpus), "--output"]
    assert main([*argv, str(out), "--max-steps", "3", "--batch-size", "8", "--lr", "0"]) != 0
    assert (
        main([*argv, str(out), "--max-steps", "3", "--batch-size", "8", "--max-length", "32"]) == 0
    )
    model = AutoModelForMaskedLM.from_pretrained(out / "model")
    assert model.get_output_embeddings().weight.data_ptr() == (
        model.get_input_embeddings().weight.data_ptr()
    )
    origin = load_file(str(tiny_model_dir / "model.safetensors"))
    key = next(k for k in origin if k.endswith("word_embeddings.weight"))
    assert model.get_input_embeddings().weight.shape == origin[key].shape


def test_chinese_whole_word_pretraining(tmp_path: Path) -> None:
    rng = random.Random(0)
    words = ["北京", "天安门", "我们", "喜欢", "电影", "音乐", "很好", "不错", "今天", "天气"]
    corpus = tmp_path / "zh.txt"
    corpus.write_text(
        "\n".join("".join(rng.choices(words, k=12)) + "。" for _ in range(300)) + "\n", "utf-8"
    )
    tok_dir = tmp_path / "tok"
    assert (
        main(
            [
                "tokenizer",
                "train",
                "--corpus",
                str(corpus),
                "--vocab-size",
                "200",
                "--chinese",
                "--output",
                str(tok_dir),
            ]
        )
        == 0
    )
    out = tmp_path / "run"
    argv = ["pretrain", "--corpus", str(corpus), "--architecture", "tiny"]
    argv += ["--tokenizer", str(tok_dir)]
    argv += ["--whole-word-mask", "--max-steps", "4", "--batch-size", "8", "--max-length", "32"]
    assert main([*argv, "--output", str(out)]) == 0
    assert (out / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--architecture", "tiny", "--from", "minilm"], "exclude each other"),
        (["--architecture", "tiny"], "--tokenizer is required"),
        ([], "--from MODEL"),
        (["--architecture", "settings.yaml"], "a YAML file of settings goes in --config"),
        (["--config", "settings.yaml"], "--config settings.yaml: no such file"),
        (["--architecture", "huge"], "not a preset"),
    ],
)
def test_bad_settings_are_named(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("some text\n", "utf-8")
    rc = main(["pretrain", "--corpus", str(corpus), "--output", str(tmp_path / "o"), *extra])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_missing_corpus_is_named(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["pretrain", "--corpus", str(tmp_path / "nope.txt"), "--architecture", "tiny"]
    argv += ["--tokenizer", str(tiny_model_dir), "--output", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "nope.txt" in err and "--corpus" in err
    assert not (tmp_path / "o").exists()
