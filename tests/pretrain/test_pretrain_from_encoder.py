"""`jiyi pretrain --from FOLDER` where the folder is a plain `BertModel` (no masked-LM head, as
the e5 checkpoints are): a head is created with its decoder tied to the word embeddings (even
when the config says `tie_word_embeddings: false`), the log says so once, the run trains with a
finite loss, and `jiyi train --model RUN` fine-tunes from the result."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from jiyi.cli import main

HEAD_NOTE = "no masked-LM head in the checkpoint"


def headless_copy(tiny_model_dir: Path, dest: Path, *, tie: bool) -> Path:
    """The tiny BertModel folder (no `cls.*` tensors), its config's tie_word_embeddings set."""
    from safetensors import safe_open

    folder = Path(shutil.copytree(tiny_model_dir, dest))
    config = json.loads((folder / "config.json").read_text("utf-8"))
    config["tie_word_embeddings"] = tie
    (folder / "config.json").write_text(json.dumps(config), "utf-8")
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if k.startswith("cls.")]  # noqa: SIM118
    return folder


def english_corpus(path: Path) -> Path:
    from conftest import make_texts

    path.write_text("\n".join(t for t, _ in make_texts(300, seed=5)) + "\n", "utf-8")
    return path


@pytest.mark.parametrize("tie", [True, False], ids=["config-tied", "config-untied"])
def test_a_headless_encoder_gets_a_tied_head_and_trains(
    tie: bool,
    tiny_model_dir: Path,
    tiny_data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForMaskedLM

    source = headless_copy(tiny_model_dir, tmp_path / "encoder", tie=tie)
    corpus = english_corpus(tmp_path / "corpus.txt")
    out = tmp_path / "dapt"
    argv = ["pretrain", "--from", str(source), "--corpus", str(corpus), "--max-steps", "4",
            "--batch-size", "8", "--max-length", "32", "--lr", "1e-3", "--log-every", "1",
            "--heldout-fraction", "0.05", "--output", str(out)]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    log = captured.out + captured.err
    assert log.count(HEAD_NOTE) == 1, log
    note = next(line for line in log.splitlines() if HEAD_NOTE in line)
    assert "tied to the word embeddings" in note
    assert "cls.predictions.transform.dense.weight" in note
    assert "cls.predictions.transform.LayerNorm.weight" in note
    assert "cls.predictions.bias" in note
    assert "decoder.weight" not in note  # tied, not new

    # the loss is finite at every step, and the held-out perplexity too
    records = [json.loads(line) for line in (out / "metrics.jsonl").open(encoding="utf-8")]
    losses = [r["loss"] for r in records if r["event"] == "train"]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    perplexities = [r["perplexity"] for r in records if r["event"] == "eval" and "perplexity" in r]
    assert perplexities and all(math.isfinite(p) for p in perplexities)

    # the saved model: the decoder is the word embeddings (one tensor), the new head is saved,
    # and the embeddings moved from the source's (it trained)
    saved = load_file(str(out / "model" / "model.safetensors"))
    assert "cls.predictions.transform.dense.weight" in saved and "cls.predictions.bias" in saved
    embeddings = saved["bert.embeddings.word_embeddings.weight"]
    if "cls.predictions.decoder.weight" in saved:
        torch.testing.assert_close(saved["cls.predictions.decoder.weight"], embeddings)
    origin = load_file(str(source / "model.safetensors"))
    key = next(k for k in origin if k.endswith("word_embeddings.weight"))
    assert embeddings.shape == origin[key].shape
    assert not torch.equal(embeddings, origin[key])
    model = AutoModelForMaskedLM.from_pretrained(out / "model")
    decoder, words = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    assert decoder.data_ptr() == words.data_ptr()
    torch.testing.assert_close(decoder, embeddings)
    assert model.config.tie_word_embeddings is True

    if tie:
        return  # fine-tuning from the result once is enough
    run = tmp_path / "ft"
    argv = ["train", "--model", str(out), "--train", str(tiny_data_dir / "train.csv"),
            "--validation", str(tiny_data_dir / "validation.csv"), "--output", str(run),
            "--epochs", "1", "--batch-size", "16", "--max-length", "32"]  # fmt: skip
    assert main(argv) == 0
    meta = json.loads((run / "model" / "jiyi.json").read_text("utf-8"))
    assert meta["task"] == "classification"
    from jiyi.predict import load

    (prediction,) = load(run).predict(["a good and lovely film"])
    assert prediction["label"] in {"pos", "neg"}
    assert math.isclose(sum(prediction["probabilities"].values()), 1.0, rel_tol=1e-4)


def test_trim_vocab_pretrains_on_the_corpus_pieces_only(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--trim-vocab with --from: the encoder is trimmed to the corpus's pieces first
    (RUN_DIR/trimmed-base), the masked-LM softmax covers only those, and the saved model and
    tokenizer are the trimmed ones (a corpus sentence tokenizes to the same pieces)."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    source = headless_copy(tiny_model_dir, tmp_path / "encoder", tie=True)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a good film\nthe bad film\na good day\n" * 40, "utf-8")
    out = tmp_path / "dapt"
    argv = ["pretrain", "--from", str(source), "--trim-vocab", "--corpus", str(corpus),
            "--max-steps", "2", "--batch-size", "4", "--max-length", "16",
            "--heldout-fraction", "0.05", "--output", str(out)]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "--trim-vocab: kept" in captured.out + captured.err
    full = AutoTokenizer.from_pretrained(source)
    trimmed = AutoTokenizer.from_pretrained(out / "model")
    model = AutoModelForMaskedLM.from_pretrained(out / "model")
    assert (out / "trimmed-base" / "config.json").is_file()
    assert len(trimmed) < len(full)
    assert model.config.vocab_size == len(trimmed)
    assert model.get_output_embeddings().weight.shape[0] == len(trimmed)
    sentence = "a good film"
    assert trimmed.tokenize(sentence) == full.tokenize(sentence)
    records = [json.loads(line) for line in (out / "metrics.jsonl").open(encoding="utf-8")]
    start = next(r for r in records if r["event"] == "start")
    assert start["vocab_size"] == len(trimmed)


def test_trim_vocab_needs_from(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = english_corpus(tmp_path / "corpus.txt")
    argv = ["pretrain", "--architecture", "tiny", "--tokenizer", str(tmp_path), "--trim-vocab",
            "--corpus", str(corpus), "--output", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 2
    assert "--trim-vocab" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
