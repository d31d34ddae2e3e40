"""Reading source/target pairs (bad rows named by file and line), tokenizing, and padding labels
with -100."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from seq2seq_helpers import build_char_t5

from jiyi.errors import JiyiError
from jiyi.seq2seq.data import IGNORE, Pair, encode_pairs, pad_pairs, read_pairs


@pytest.fixture(scope="module")
def t5_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(build_char_t5(tmp_path_factory.mktemp("t5"))))


def test_reads_csv_tsv_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text('source,target\n"a, b",c\n12,3.0\n', encoding="utf-8")
    (tmp_path / "a.tsv").write_text("doc\tsummary\nlong text\tshort\n", encoding="utf-8")
    (tmp_path / "a.jsonl").write_text(
        '{"source": "猫が好き", "target": "I like cats"}\n{"source": "x", "target": 7}\n',
        encoding="utf-8",
    )
    csv = read_pairs(tmp_path / "a.csv")
    assert csv.examples == [Pair("a, b", "c", 2), Pair("12", "3.0", 3)]  # targets stay text
    tsv = read_pairs(tmp_path / "a.tsv", source_column="doc", target_column="summary")
    assert tsv.examples == [Pair("long text", "short", 2)]
    assert [p.target for p in read_pairs(tmp_path / "a.jsonl").examples] == ["I like cats", "7"]


def test_bad_rows_are_named_or_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"source": "ok", "target": "fine"}\n{"source": "no target", "target": ""}\n'
        '{"source": "", "target": "no source"}\n{"source": "x", "target": ["a"]}\n',
        encoding="utf-8",
    )
    with pytest.raises(JiyiError, match=r'bad.jsonl line 2: empty target in column "target"'):
        read_pairs(path)
    skipped = read_pairs(path, on_bad_rows="skip")
    assert skipped.examples == [Pair("ok", "fine", 1)]
    assert [line for line, _ in skipped.skipped] == [2, 3, 4]


def test_missing_columns_name_the_seq2seq_flags(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,target\na,b\n", encoding="utf-8")
    with pytest.raises(JiyiError, match=r'no column "source".*--source-column'):
        read_pairs(path)
    with pytest.raises(JiyiError, match=r'no column "summary".*--target-column'):
        read_pairs(path, source_column="text", target_column="summary")


def test_encode_and_pad(t5_tokenizer) -> None:
    pairs = [Pair("abc", "cba"), Pair("abcdefghij", "jihgfedcba")]
    enc = encode_pairs(t5_tokenizer, pairs, max_length=8, max_target_length=5)
    eos = t5_tokenizer.eos_token_id
    assert enc.sources[0] == [*t5_tokenizer.convert_tokens_to_ids(list("abc")), eos]
    assert len(enc.sources[1]) == 8 and enc.sources[1][-1] == eos  # cut, the end token kept
    assert len(enc.labels[1]) == 5 and enc.labels[1][-1] == eos
    assert (enc.truncated_sources, enc.truncated_targets) == (1, 1)
    batch = pad_pairs(enc, [0, 1], pad_id=0)
    assert batch["input_ids"].shape == (2, 8) and batch["labels"].shape == (2, 5)
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert batch["labels"][0, 4:].tolist() == [IGNORE]  # -100 past the end of "cba</s>"
    assert batch["labels"].dtype == torch.long


def test_a_leading_decoder_start_token_is_dropped_from_the_labels(t5_tokenizer) -> None:
    a = t5_tokenizer.convert_tokens_to_ids("a")
    enc = encode_pairs(t5_tokenizer, [Pair("x", "ab")], max_length=8, max_target_length=8)
    assert enc.labels[0][0] == a
    # BERT2BERT: a target "[CLS] a b [SEP]" whose [CLS] starts the decoder learns "a b [SEP]"
    enc = encode_pairs(
        t5_tokenizer, [Pair("x", "ab")], max_length=8, max_target_length=8, decoder_start_id=a
    )
    assert enc.labels[0] == t5_tokenizer.convert_tokens_to_ids(["b", "</s>"])
