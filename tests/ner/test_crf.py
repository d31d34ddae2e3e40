"""jiyi.ner.crf: the character-window CRF baseline for Chinese NER."""

from __future__ import annotations

import builtins
import importlib.util
import json
from pathlib import Path

import pytest
from zh_ner_data import char_sentences

from jiyi.errors import JiyiError
from jiyi.ner import crf
from jiyi.ner.crf import char_features, char_kind, crf_baseline

# test_crf.py's people: one three-character name (欧阳修) among them
PEOPLE = ["张伟", "王芳", "李娜", "欧阳修"]


def write_jsonl(path: Path, n: int, seed: int) -> Path:
    rows = char_sentences(n, seed, PEOPLE)
    lines = [json.dumps({"tokens": c, "tags": t}, ensure_ascii=False) for c, t in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_char_features_window() -> None:
    features = char_features(list("江泽民到北京"), 0)
    assert (features["c0"], features["c-1"], features["c-2"]) == ("江", "<s>", "<s>")
    assert (features["c0c+1"], features["c-1c0c+1"], features["c-1c+1"]) == (
        "江泽",
        "<s>江泽",
        "<s>泽",
    )
    last = char_features(list("江泽民到北京"), 5)
    assert (last["c+1"], last["c-1c0"], last["t-1t0t+1"]) == ("</s>", "北京", "hh</s>")
    assert len(features) == len(last) == 16
    assert [char_kind(c) for c in "京１9三Ａ，"] == ["h", "0", "0", "n", "a", "p"]


@pytest.mark.skipif(importlib.util.find_spec("sklearn_crfsuite") is None, reason="jiyi[bench]")
def test_crf_learns_names_and_places(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", 300, 0)
    test = write_jsonl(tmp_path / "test.jsonl", 60, 1)
    result = crf_baseline(train, test, {"max_iterations": 30})
    assert (result["train_sentences"], result["test_sentences"]) == (300, 60)
    assert set(result["test"]["per_type"]) == {"PER", "LOC"}
    assert result["test"]["f1"] >= 0.95, result["test"]
    assert result["settings"] == {"c1": 0.1, "c2": 0.1, "max_iterations": 30}


def test_missing_crfsuite_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_crfsuite(name: str, *args, **kwargs):
        if name == "sklearn_crfsuite":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_crfsuite)
    data = write_jsonl(tmp_path / "d.jsonl", 5, 0)
    with pytest.raises(JiyiError, match=r"pip install 'jiyi\[bench\]'"):
        crf.crf_baseline(data, data)
