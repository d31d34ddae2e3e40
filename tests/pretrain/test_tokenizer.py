"""jiyi.pretrain.tokenizer: a streamed corpus reader and a BERT WordPiece tokenizer that
transformers loads. (The trainer breaks frequency ties differently between runs, so the tests
pin properties of the vocabulary, never its exact ids beyond the special tokens.)"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from jiyi.errors import JiyiError
from jiyi.pretrain.tokenizer import (
    SPECIAL_TOKENS,
    add_parsers,
    corpus_files,
    iter_corpus_lines,
    iter_corpus_texts,
    train_tokenizer,
)

WORDS = [
    "the",
    "film",
    "story",
    "music",
    "plot",
    "actors",
    "movie",
    "scenes",
    "ending",
    "quite",
    "really",
    "funny",
    "boring",
    "lovely",
    "with",
    "and",
    "was",
    "very",
    "this",
    "it",
]
HANZI = "今天气很好我们去公园散步的是在有人这个中大上来说国年着就那和要她出也得里后自以会家可下而过"
FILES = {
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "jiyi_tokenizer.json",
}


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(4, 10))) for _ in range(n)]


@pytest.fixture(scope="module")
def english(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Path]:
    """A corpus (a folder with a .txt, a .txt.gz and a skipped hidden file, plus a JSONL file
    whose text is in "body"), the tokenizer trained on it and the summary."""
    root = tmp_path_factory.mktemp("english")
    folder = root / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / ".cache").mkdir()
    (folder / "a.txt").write_text("\n".join(sentences(150, 1)) + "\n\n  \n", encoding="utf-8")
    with gzip.open(folder / "sub" / "b.txt.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(sentences(100, 2)))
    (folder / ".cache" / "skip.txt").write_text("never read\n")
    (folder / "notes.md").write_text("never read\n")
    rows = [{"body": s, "id": i} for i, s in enumerate(sentences(50, 3))]
    (root / "extra.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = train_tokenizer(
        [folder, root / "extra.jsonl"], root / "tok", vocab_size=300, text_column="body"
    )
    return root / "tok", summary, root


@pytest.fixture(scope="module")
def chinese(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tokenizer trained with chinese=True on 200 lines of HANZI, a few with English words
    and one with a character that occurs once."""
    root = tmp_path_factory.mktemp("chinese")
    rng = random.Random(0)
    lines = ["".join(rng.choices(HANZI, k=rng.randint(8, 30))) + "。" for _ in range(200)]
    lines += [f"我爱{word}，{word}很好" for word in ("nlp", "python", "bert", "ai")]
    lines += ["今天天气很好", "龘"]
    (root / "zh.txt").write_text("\n".join(lines), encoding="utf-8")
    train_tokenizer([root / "zh.txt"], root / "tok", vocab_size=500, chinese=True)
    return root / "tok"


def test_english_tokenizer_loads_as_bert(english: tuple[Path, dict[str, Any], Path]) -> None:
    from transformers import AutoTokenizer, BertTokenizerFast

    out, summary, _ = english
    assert {p.name for p in out.iterdir()} == FILES
    tok = AutoTokenizer.from_pretrained(out)
    assert type(tok).__name__ == "BertTokenizer"
    assert tok.convert_ids_to_tokens(list(range(5))) == list(SPECIAL_TOKENS)
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id) == (0, 1, 2, 3)
    assert tok.mask_token_id == 4 and tok.model_max_length == 512
    assert len(tok) == summary["vocab_size"] <= summary["vocab_size_requested"] == 300
    enc = tok("the film", "a plot")
    tokens = ["[CLS]", "the", "film", "[SEP]", "a", "plot", "[SEP]"]
    assert tok.convert_ids_to_tokens(enc.input_ids) == tokens
    assert enc.token_type_ids == [0, 0, 0, 0, 1, 1, 1]
    assert tok.decode(tok("the boring ending").input_ids, skip_special_tokens=True) == (
        "the boring ending"
    )
    assert BertTokenizerFast.from_pretrained(out).tokenize("The Film") == ["the", "film"]


def test_english_vocabulary(english: tuple[Path, dict[str, Any], Path]) -> None:
    from transformers import AutoTokenizer

    out, summary, root = english
    tok = AutoTokenizer.from_pretrained(out)
    for word in WORDS:  # frequent words are whole tokens
        assert tok.tokenize(word) == [word]
    pieces = tok.tokenize("storm")  # unseen, made of letters seen at the start / inside words
    assert len(pieces) > 1 and not pieces[0].startswith("##")
    assert all(p.startswith("##") for p in pieces[1:])
    assert "".join(p.removeprefix("##") for p in pieces) == "storm"
    assert tok.tokenize("THE FÍLM") == ["the", "film"]  # lowercased, accents stripped
    vocab = (out / "vocab.txt").read_text("utf-8").splitlines()
    assert vocab == tok.convert_ids_to_tokens(list(range(len(tok))))
    settings = json.loads((out / "jiyi_tokenizer.json").read_text())
    n_texts = sum(1 for _ in iter_corpus_texts([root / "texts", root / "extra.jsonl"], "body"))
    assert n_texts == summary["n_texts"] == settings["n_texts"] == 300
    assert settings["vocab_size"] == len(tok) and settings["vocab_size_requested"] == 300
    assert [settings[k] for k in ("chinese", "lowercase", "min_frequency")] == [False, True, 2]
    assert settings["corpus"] == [str(root / "texts"), str(root / "extra.jsonl")]
    assert summary["sample"]["tokens"] == summary["sample"]["text"].split()


def test_vocab_txt_serves_the_legacy_tokenizer(english: tuple[Path, dict[str, Any], Path]) -> None:
    from transformers import AutoTokenizer
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    out = english[0]
    fast = AutoTokenizer.from_pretrained(out)
    slow = BertTokenizerLegacy(str(out / "vocab.txt"))
    for text in ("The boring, lovely film!", "storm scenes", "unknown zebra"):
        assert slow(text).input_ids == fast(text).input_ids


def test_chinese_characters_are_tokens(chinese: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(chinese)
    assert tok.tokenize("今天天气很好") == list("今天天气很好")
    assert tok.unk_token_id not in tok(HANZI + "龘。，").input_ids  # even a character seen once
    assert all(tok.tokenize(char) == [char] for char in HANZI)
    tokens = tok.tokenize("我爱NLP")
    assert tokens[:2] == ["我", "爱"] and "[UNK]" not in tokens
    assert "".join(t.removeprefix("##") for t in tokens[2:]) == "nlp"
    assert tok.tokenize("我爱Python！")[:3] == ["我", "爱", "python"]  # a frequent word, whole
    assert json.loads((chinese / "jiyi_tokenizer.json").read_text())["chinese"] is True


def test_iter_corpus_texts_reads_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / "d" / "z").mkdir(parents=True)
    (tmp_path / "d" / "b.txt").write_text("  b1  \n\n b2\n")
    (tmp_path / "d" / "a.text").write_text("\ufeffa1\r\n")
    (tmp_path / "d" / "z" / "c.jsonl").write_text(
        '{"text": " c1 "}\n\n{"text": null}\n{"text": ""}\n'
    )
    with gzip.open(tmp_path / "d" / "y.jsonl.gz", "wt") as f:
        f.write('{"text": "y1"}\n')
    (tmp_path / "d" / "ignored.csv").write_text("text\nx\n")
    (tmp_path / "one").write_text("o1\n")
    files = corpus_files([tmp_path / "d", tmp_path / "one"])
    # sorted, folder by folder, .csv skipped; a file named on its own is read whatever its name
    names = ["d/a.text", "d/b.txt", "d/y.jsonl.gz", "d/z/c.jsonl", "one"]
    assert [f.relative_to(tmp_path).as_posix() for f in files] == names
    texts = iter_corpus_texts([tmp_path / "d", tmp_path / "one"])
    assert list(texts) == ["a1", "b1", "b2", "y1", "c1", "o1"]
    assert list(iter_corpus_lines(tmp_path / "d" / "b.txt")) == [(1, "b1"), (3, "b2")]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe")
def test_iter_corpus_texts_streams(tmp_path: Path) -> None:
    """The first text comes out before the rest of the file is written: nothing reads it whole."""
    pipe = tmp_path / "stream.txt"
    os.mkfifo(pipe)
    first_read = threading.Event()
    waited: list[bool] = []

    def write() -> None:
        with open(pipe, "w") as f:
            f.write("first text\n")
            f.flush()
            waited.append(first_read.wait(timeout=10))
            f.write("second text\n")

    writer = threading.Thread(target=write)
    writer.start()
    texts = iter_corpus_texts([pipe])
    assert next(texts) == "first text"
    first_read.set()
    assert list(texts) == ["second text"]
    writer.join()
    assert waited == [True]


def test_corpus_errors_name_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(JiyiError, match=r"--corpus .*nope: no such file or folder"):
        corpus_files([tmp_path / "nope"])
    with pytest.raises(JiyiError, match=r"--validation .*nope: no such file or folder"):
        iter_corpus_texts([tmp_path / "nope"], flag="--validation")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "table.csv").write_text("text\n")
    with pytest.raises(JiyiError, match=r"--corpus .*empty: no corpus files"):
        iter_corpus_texts([tmp_path / "empty"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "ok"}\n\n{"body": oops}\n')
    with pytest.raises(JiyiError, match=r"bad\.jsonl line 3: not valid JSON.*--text-column"):
        list(iter_corpus_texts([bad], "body"))
    bad.write_text('{"body": "ok"}\n{"text": "no body"}\n')
    with pytest.raises(JiyiError, match=r'bad\.jsonl line 2: no "body" field .*--text-column'):
        list(iter_corpus_texts([bad], "body"))
    bad.write_text('["a list"]\n')
    with pytest.raises(JiyiError, match=r"bad\.jsonl line 1: a JSON array, not an object"):
        list(iter_corpus_texts([bad]))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("fine\ncafé\n".encode("latin-1"))
    with pytest.raises(JiyiError, match=r"latin\.txt line 2: not UTF-8"):
        list(iter_corpus_texts([latin]))


def test_train_errors(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(sentences(50, 0)))
    with pytest.raises(JiyiError, match=r"--vocab-size 50: too small"):
        train_tokenizer([corpus], tmp_path / "out", vocab_size=50)
    many = tmp_path / "many.txt"  # 300 distinct characters: more than 120 entries
    many.write_text("".join(chr(0x4E00 + i) for i in range(300)))
    with pytest.raises(JiyiError, match=r"--vocab-size 120: .* alone take 305 entries"):
        train_tokenizer([many], tmp_path / "out", vocab_size=120, chinese=True)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"txt": "typo"}\n')
    with pytest.raises(JiyiError, match=r'bad\.jsonl line 2: no "text" field'):
        train_tokenizer([bad], tmp_path / "out", vocab_size=100)  # raised inside the trainer
    assert not (tmp_path / "out").exists()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.txt").write_text("old")
    with pytest.raises(JiyiError, match=r"--output .*out: the folder exists .*--overwrite"):
        train_tokenizer([corpus], tmp_path / "out", vocab_size=100)
    train_tokenizer([corpus], tmp_path / "out", vocab_size=100, overwrite=True)
    assert {p.name for p in (tmp_path / "out").iterdir()} == FILES  # replaced whole
    with pytest.raises(JiyiError, match=r"--corpus .*inside --output"):
        train_tokenizer([tmp_path / "out"], tmp_path / "out", vocab_size=100, overwrite=True)


def test_cli_verb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import AutoTokenizer

    parser = argparse.ArgumentParser(prog="jiyi")
    add_parsers(parser.add_subparsers(dest="verb", required=True))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(sentences(100, 0)).replace("film", "Film"))
    argv = f"tokenizer train --corpus {corpus} --vocab-size 150 --output {tmp_path / 'tok'} "
    args = parser.parse_args([*argv.split(), "--no-lowercase", "--min-frequency", "3"])
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert set(summary) == {"output", "n_texts", "n_chars", "sample"} | {
        "vocab_size",
        "vocab_size_requested",
    }
    assert summary["n_texts"] == 100 and summary["output"] == str(tmp_path / "tok")
    assert err.startswith(f"trained {tmp_path / 'tok'}: {summary['vocab_size']} tokens")
    settings = json.loads((tmp_path / "tok" / "jiyi_tokenizer.json").read_text())
    assert (settings["lowercase"], settings["min_frequency"]) == (False, 3)
    assert AutoTokenizer.from_pretrained(tmp_path / "tok").tokenize("Film") == ["Film"]
    with pytest.raises(SystemExit):
        parser.parse_args(["tokenizer", "train", "--corpus", str(corpus)])  # no --output
