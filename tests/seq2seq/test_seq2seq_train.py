"""`jiyi train --task seq2seq` end to end on tiny random models (T5, BART, BERT2BERT with
--share-weights): the files a run writes, `jiyi predict` and `jiyi evaluate` on it, greedy and
beam search; and a learning test: a small T5 learns to reverse words it has never seen."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from seq2seq_helpers import build_char_bart, build_char_t5, reversal_pairs, write_jsonl

from conftest import build_tiny_bert, make_texts, write_csv
from jiyi.cli import main
from jiyi.seq2seq.predict import Seq2SeqGenerator

QUICK = ["--epochs", "2", "--batch-size", "16", "--lr", "3e-3", "--max-length", "16",
         "--max-target-length", "12", "--seed", "0", "--threads", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def reversal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reversal")
    write_jsonl(root / "train.jsonl", reversal_pairs(4000, seed=1))
    write_jsonl(root / "validation.jsonl", reversal_pairs(100, seed=2))
    write_jsonl(root / "test.jsonl", reversal_pairs(100, seed=3))
    write_jsonl(root / "small.jsonl", reversal_pairs(160, seed=4))
    build_char_t5(root / "t5")
    return root


@pytest.fixture(scope="module")
def t5_run(reversal: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("t5-run") / "run"
    argv = ["train", "--task", "seq2seq", "--model", str(reversal / "t5"),
            "--train", str(reversal / "small.jsonl"), "--test", str(reversal / "test.jsonl"),
            "--output", str(out), *QUICK]  # fmt: skip
    assert main(argv) == 0
    return out


def test_a_run_writes_a_hugging_face_folder_with_its_generation_settings(t5_run: Path) -> None:
    model = t5_run / "model"
    assert {p.name for p in model.iterdir()} == {
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json", "jiyi.json",
    }  # fmt: skip
    meta = json.loads((model / "jiyi.json").read_text())
    assert meta["task"] == "seq2seq" and meta["share_weights"] is False
    assert (meta["source_column"], meta["target_column"]) == ("source", "target")
    assert meta["generation"] == {
        "num_beams": 1, "length_penalty": 1.0, "max_new_tokens": 12, "no_repeat_ngram_size": 0,
    }  # fmt: skip
    assert set(meta["validation"]) >= {"rouge1", "rouge2", "rougeL", "bleu", "chrf", "loss"}
    gen = json.loads((model / "generation_config.json").read_text())
    assert gen["max_new_tokens"] == 12 and gen["decoder_start_token_id"] == 0
    assert gen["eos_token_id"] == 1 and gen.get("num_beams", 1) == 1
    events = [json.loads(line) for line in (t5_run / "metrics.jsonl").open()]
    assert events[0]["event"] == "start" and events[0]["task"] == "seq2seq"
    assert events[0]["n_validation"] == 16  # 10% of 160 held out
    evals = [e for e in events if e["event"] == "eval"]
    assert len(evals) == 2 and all(e["rougeL"] is not None for e in evals)
    assert evals[1]["loss"] < evals[0]["loss"]
    assert {p.name for p in (t5_run / "eval").iterdir()} == {"metrics.json", "predictions.jsonl"}
    rows = [json.loads(line) for line in (t5_run / "eval" / "predictions.jsonl").open()]
    assert len(rows) == 100 and set(rows[0]) == {"line", "source", "target", "prediction", "exact"}


def test_predict_and_evaluate_through_the_cli(
    t5_run: Path, reversal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    texts = tmp_path / "words.txt"
    texts.write_text("hello\nworld\n\nabc\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["predict", str(t5_run), "--input", str(texts)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["source"] for r in rows] == ["hello", "world", "abc"]
    assert all(
        set(r) == {"source", "prediction"} and isinstance(r["prediction"], str) for r in rows
    )
    # a data file: its source column; a target column is ignored
    out = tmp_path / "pred.jsonl"
    assert (
        main(
            ["predict", str(t5_run), "--input", str(reversal / "test.jsonl"), "--output", str(out)]
        )
        == 0
    )
    assert len(out.read_text().splitlines()) == 100

    assert (
        main(
            [
                "evaluate",
                str(t5_run),
                "--data",
                str(reversal / "test.jsonl"),
                "--output",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    at_train = json.loads((t5_run / "eval" / "metrics.json").read_text())
    assert metrics.pop("skipped") == 0
    assert metrics == pytest.approx(at_train)  # the same model, data and generation settings
    assert metrics["n"] == 100 and metrics["bleu_tokenize"] == "13a"


def test_greedy_and_beam_search(t5_run: Path) -> None:
    generator = Seq2SeqGenerator(t5_run)
    sources = ["abc", "hello", "xyzzy"]
    greedy = generator.generate(sources)
    assert greedy == generator.generate(sources, num_beams=1)  # the run's default is greedy
    beam = generator.generate(sources, num_beams=4, length_penalty=0.8, no_repeat_ngram_size=3)
    assert len(beam) == 3 and all(isinstance(t, str) and len(t) <= 12 for t in beam)


def test_bart_with_beam_search_settings(reversal: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["train", "--task", "seq2seq", "--model", str(build_char_bart(tmp_path / "bart")),
            "--train", str(reversal / "small.jsonl"), "--output", str(out), *QUICK,
            "--epochs", "1", "--num-beams", "3", "--length-penalty", "1.5",
            "--no-repeat-ngram-size", "3", "--max-new-tokens", "10", "--metric", "chrf"]  # fmt: skip
    assert main(argv) == 0
    gen = json.loads((out / "model" / "generation_config.json").read_text())
    assert (gen["num_beams"], gen["length_penalty"], gen["no_repeat_ngram_size"]) == (3, 1.5, 3)
    assert gen["max_new_tokens"] == 10 and gen["decoder_start_token_id"] == 2
    assert len(Seq2SeqGenerator(out).generate(["abcd", "efg"])) == 2


def test_bert2bert_with_shared_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = make_texts(120, seed=5)
    corpus = [t for t, _ in rows]
    bert = build_tiny_bert(tmp_path / "bert", corpus)
    # "summarise" a review as its sentiment word
    write_csv(tmp_path / "train.csv", [(t, "good" if y == "pos" else "bad") for t, y in rows],
              header=("review", "summary"))  # fmt: skip
    out = tmp_path / "run"
    argv = ["train", "--task", "seq2seq", "--model", str(bert), "--decoder", str(bert),
            "--share-weights", "--train", str(tmp_path / "train.csv"), "--output", str(out),
            "--source-column", "review", "--target-column", "summary", *QUICK]  # fmt: skip
    assert main(argv) == 0
    start = json.loads((out / "metrics.jsonl").open().readline())
    assert start["architecture"] == "EncoderDecoderModel" and start["shared_tensors"] > 30
    meta = json.loads((out / "model" / "jiyi.json").read_text())
    assert meta["share_weights"] is True and meta["decoder"] == str(bert)
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["tie_encoder_decoder"] is True
    generator = Seq2SeqGenerator(out)
    model = generator.model
    assert (
        model.encoder.encoder.layer[0].intermediate.dense.weight
        is model.decoder.bert.encoder.layer[0].intermediate.dense.weight
    )
    capsys.readouterr()
    assert main(["predict", str(out), "--input", str(tmp_path / "train.csv")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 120


@pytest.mark.slow
def test_t5_learns_to_reverse_unseen_words(reversal: Path, tmp_path: Path) -> None:
    """4,000 words of 3-8 random letters, reversed; 12 epochs (1,500 steps) of a 2+2-layer T5
    with d_model 64 on one CPU thread, the best of 12 validations kept. Held-out exact match
    >= 0.9 (0.97 measured, in 27-45 s depending on the load)."""
    out = tmp_path / "run"
    argv = ["train", "--task", "seq2seq", "--model", str(reversal / "t5"),
            "--train", str(reversal / "train.jsonl"), "--validation", str(reversal / "validation.jsonl"),
            "--test", str(reversal / "test.jsonl"), "--output", str(out), "--epochs", "12",
            "--batch-size", "32", "--lr", "5e-3", "--max-length", "16", "--max-target-length", "12",
            "--metric", "exact_match", "--seed", "0", "--threads", "1"]  # fmt: skip
    t0 = time.perf_counter()
    assert main(argv) == 0
    seconds = time.perf_counter() - t0
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    print(f"reversal: test exact match {metrics['exact_match']:.3f} in {seconds:.1f} s")
    assert metrics["exact_match"] >= 0.9, metrics
    assert metrics["rougeL"] >= 0.9 and metrics["chrf"] >= 90
