"""Chinese NER at the character level on an encoder made by jiyi: `jiyi tokenizer train --chinese`,
`jiyi pretrain --architecture tiny`, then `jiyi train --task ner --model PRETRAIN_RUN` on CoNLL files with
one character per line, and `jiyi predict` on raw Chinese text back to character offsets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from zh_ner_data import char_sentences

from jiyi.cli import main
from jiyi.ner.align import encode_words


def write_conll(path: Path, rows: list[tuple[list[str], list[str]]]) -> Path:
    blocks = ["\n".join(f"{c} {t}" for c, t in zip(*row, strict=True)) for row in rows]
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def chinese_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Chinese BERT pretrained by jiyi (a few steps: the test is about the plumbing)."""
    root = tmp_path_factory.mktemp("zh-ner")
    corpus = root / "corpus.txt"
    corpus.write_text(
        "\n".join("".join(c) for c, _ in char_sentences(400, 0)) + "\n", encoding="utf-8"
    )
    tok = root / "tok"
    argv = ["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "300", "--chinese"]
    assert main([*argv, "--output", str(tok)]) == 0
    run = root / "pretrain"
    argv = ["pretrain", "--corpus", str(corpus), "--architecture", "tiny", "--tokenizer", str(tok)]
    argv += ["--max-steps", "6", "--batch-size", "16", "--max-length", "32", "--output", str(run)]
    assert main(argv) == 0
    return run


def test_every_character_is_one_subword(chinese_encoder: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(chinese_encoder / "model")
    chars = list("张伟在深圳市工作。")
    windows = encode_words(tokenizer, [chars], 64, 8, [[0] * len(chars)])
    enc = windows.to_encoded()
    assert int(enc.lengths[0]) == len(chars) + 2  # [CLS] + one piece per character + [SEP]
    assert not windows.dropped[0]


def test_chinese_ner_on_a_jiyi_pretrained_encoder(chinese_encoder: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_conll(data / "train.conll", char_sentences(400, 1))
    write_conll(data / "validation.conll", char_sentences(60, 2))
    write_conll(data / "test.conll", char_sentences(60, 3))
    out = tmp_path / "ner"
    argv = ["train", "--task", "ner", "--model", str(chinese_encoder), "--output", str(out)]
    argv += ["--train", str(data / "train.conll"), "--validation", str(data / "validation.conll")]
    argv += ["--test", str(data / "test.conll"), "--epochs", "6", "--batch-size", "16"]
    argv += ["--lr", "3e-3", "--max-length", "64", "--seed", "0"]
    assert main(argv) == 0
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert set(metrics["per_type"]) == {"PER", "LOC"}
    assert metrics["f1"] >= 0.9, metrics

    text = "今天李娜和王芳去了上海，天气很好。"
    inputs = tmp_path / "in.txt"
    inputs.write_text(text + "\n", encoding="utf-8")
    preds = tmp_path / "pred.jsonl"
    assert main(["predict", str(out), "--input", str(inputs), "--output", str(preds)]) == 0
    (row,) = [json.loads(line) for line in preds.read_text(encoding="utf-8").splitlines()]
    assert row["text"] == text
    for entity in row["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"]
    found = {(e["text"], e["type"]) for e in row["entities"]}
    assert {("李娜", "PER"), ("王芳", "PER"), ("上海", "LOC")} <= found, row
