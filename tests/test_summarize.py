"""`jiyi summarize`: sentence splitting, TextRank, MMR, budgets, the supervised ranking, the verb."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from jiyi.cli import main
from jiyi.errors import JiyiError
from jiyi.summarize import (
    Budget,
    count_words,
    detect_language,
    mmr_select,
    oracle_labels,
    sentence_rows,
    split_sentences,
    summarize,
    textrank,
)

NEWS = (
    "The city council approved a new budget on Monday. The plan raises taxes by 2.5 percent, "
    "the first rise in a decade. Mayor Dr. Jane Smith said the money goes to schools.\n"
    'Critics said the rise would hurt poor families. "We cannot afford this," said one '
    "resident. The council voted 7 to 2 for the budget.\n"
    "The budget takes effect in January. Officials expect it to raise $40 million a year."
)
ZH = "市议会周一通过了新预算。  预算将税率提高２.５％！他说：“我们负担不起。”议员们怎么看？\n预算明年一月生效；官员预计每年增收四千万元。"


def texts(sentences):
    return [s.text for s in sentences]


def assert_exact(text, sentences):
    for s in sentences:
        assert text[s.start : s.end] == s.text
        assert s.text == s.text.strip() and s.text


# ---------------------------------------------------------------------------------------------
# sentences


def test_split_english_abbreviations_decimals_quotes_ellipses():
    text = (
        'Mr. Li paid $3.50 at 5 p.m. on Friday. "Why?" he asked. She said "No." Then she left! '
        "The U.S. Senate met, e.g. on Jan. 5, with Dr. Wu... Most voted yes? Maybe. "
        "J. K. Rowling wrote it (in 1997.) The answer is no. No. 5 won...  and so on."
    )
    got = split_sentences(text, "en")
    assert texts(got) == [
        "Mr. Li paid $3.50 at 5 p.m. on Friday.",
        '"Why?" he asked.',
        'She said "No."',
        "Then she left!",
        "The U.S. Senate met, e.g. on Jan. 5, with Dr. Wu...",
        "Most voted yes?",
        "Maybe.",
        "J. K. Rowling wrote it (in 1997.)",
        "The answer is no.",
        "No. 5 won...  and so on.",
    ]
    assert_exact(text, got)


def test_split_newlines_are_paragraph_breaks_and_whitespace_is_trimmed():
    text = "  First line without a stop\r\n\n  Second one. Third one.  \n"
    got = split_sentences(text, "en")
    assert texts(got) == ["First line without a stop", "Second one.", "Third one."]
    assert [(s.start, s.end) for s in got] == [(2, 27), (32, 43), (44, 54)]
    assert_exact(text, got)


def test_split_chinese_with_closing_quotes_and_exact_offsets():
    got = split_sentences(ZH, "zh")
    assert texts(got) == [
        "市议会周一通过了新预算。",
        "预算将税率提高２.５％！",
        "他说：“我们负担不起。”",
        "议员们怎么看？",
        "预算明年一月生效；",
        "官员预计每年增收四千万元。",
    ]
    assert [s.start for s in got] == [0, 14, 26, 38, 46, 55]
    assert_exact(ZH, got)
    japanese = "「雨が降った。」彼は言った。明日は晴れ！"
    assert texts(split_sentences(japanese)) == ["「雨が降った。」", "彼は言った。", "明日は晴れ！"]


def test_split_mixed_text_and_ascii_stops_after_cjk():
    text = "我们用BERT做摘要.效果不错。It works well. 很好!"
    assert texts(split_sentences(text, "zh")) == [
        "我们用BERT做摘要.",
        "效果不错。",
        "It works well.",
        "很好!",
    ]
    # in English mode an ASCII stop needs a space after it
    assert texts(split_sentences(text, "en")) == [
        "我们用BERT做摘要.效果不错。",
        "It works well.",
        "很好!",
    ]


def test_language_detection_and_word_counts():
    assert detect_language(ZH) == "zh"
    assert detect_language(NEWS) == "en"
    assert detect_language("用 BERT 做中文摘要") == "zh"
    assert count_words("GDP rose 2.5% in 1998.") == 6
    assert count_words("经济增长了。GDP up") == 7  # five characters + two words


# ---------------------------------------------------------------------------------------------
# ranking and selection


def test_textrank_prefers_the_hub_and_ties_give_ones():
    sim = np.eye(4)
    sim[0, 1:] = sim[1:, 0] = 0.8  # 0 is linked to everyone, the others only to 0
    scores = textrank(sim)
    assert scores[0] == 1.0 and np.allclose(scores[1:], 0.0)
    assert textrank(np.ones((3, 3))).tolist() == [1.0, 1.0, 1.0]
    assert textrank(-np.ones((2, 2))).tolist() == [1.0, 1.0]  # no edge at all


def test_mmr_drops_a_near_duplicate_and_lambda_one_follows_relevance():
    relevance = np.array([1.0, 0.9, 0.7, 0.65])
    sim = np.array(
        [
            [1.0, 0.97, 0.2, 0.1],
            [0.97, 1.0, 0.25, 0.1],
            [0.2, 0.25, 1.0, 0.3],
            [0.1, 0.1, 0.3, 1.0],
        ]
    )
    assert mmr_select(relevance, sim, lam=0.7, k=3) == [0, 2, 3]  # 1 repeats 0
    assert mmr_select(relevance, sim, lam=1.0) == [0, 1, 2, 3]
    assert mmr_select(relevance, sim, lam=0.7, k=9) == [0, 2, 3, 1]
    # a cost budget skips what does not fit and keeps looking
    assert mmr_select(relevance, sim, lam=1.0, costs=[5, 1, 6, 2], max_cost=8) == [0, 1, 3]
    assert mmr_select(relevance, sim, costs=[9, 9, 9, 9], max_cost=8) == []
    with pytest.raises(JiyiError, match="--mmr-lambda"):
        mmr_select(relevance, sim, lam=1.5)


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"sentences": 0}, "--sentences 0"),
        ({"ratio": 1.5}, "--ratio 1.5"),
        ({"ratio": 0.0}, "--ratio 0.0"),
        ({"max_words": -3}, "--max-words -3"),
        ({"sentences": 2, "max_chars": 40}, "--sentences and --max-chars"),
    ],
)
def test_bad_budgets_name_the_flag(kwargs, flag):
    with pytest.raises(JiyiError, match=flag):
        Budget(**kwargs)


# ---------------------------------------------------------------------------------------------
# the API on the tiny model


def test_summarize_budgets_verbatim_in_document_order(tiny_model_dir):
    from jiyi.inspect.embeddings import load_encoder

    encoder = load_encoder(tiny_model_dir)
    n_sentences = len(split_sentences(NEWS))
    assert n_sentences == 8
    three = summarize(encoder, NEWS)[0]  # default: 3 sentences
    assert three.n_sentences == 8 and three.language == "en"
    assert [p.index for p in three.sentences] == [0, 2, 4]  # pinned on the seeded tiny model
    assert sorted(p.rank for p in three.sentences) == [0, 1, 2]
    assert three.summary == " ".join(p.text for p in three.sentences)
    for p in three.sentences:
        assert NEWS[p.start : p.end] == p.text
    assert len(summarize(encoder, NEWS, ratio=0.3)[0].sentences) == 3  # ceil(2.4)
    assert len(summarize(encoder, NEWS, sentences=20)[0].sentences) == 8
    for words in (5, 12, 30):
        s = summarize(encoder, NEWS, max_words=words)[0]
        assert sum(count_words(p.text) for p in s.sentences) <= words
    for chars in (40, 80, 200):
        s = summarize(encoder, NEWS, max_chars=chars)[0]
        assert s.sentences and len(s.summary) <= chars
    assert summarize(encoder, NEWS, max_chars=10)[0].sentences == []  # nothing fits
    lead = summarize(encoder, NEWS, sentences=2, lead_bias=1.0, mmr_lambda=1.0)[0]
    assert [p.index for p in lead.sentences] == [0, 1]


def test_summarize_chinese_counts_characters_as_words(tiny_model_dir):
    from jiyi.inspect.embeddings import load_encoder

    encoder = load_encoder(tiny_model_dir)
    got = summarize(encoder, [ZH, "", NEWS], max_words=20)
    assert [g.language for g in got] == ["zh", "en", "en"]
    zh = got[0]
    assert zh.n_sentences == 6 and zh.sentences
    assert sum(count_words(p.text) for p in zh.sentences) <= 20
    assert zh.summary == "".join(p.text for p in zh.sentences)
    assert [p.index for p in zh.sentences] == sorted(p.index for p in zh.sentences)
    assert got[1].sentences == [] and got[1].n_sentences == 0


# ---------------------------------------------------------------------------------------------
# the verb


def run_cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_n_verbatim_lines_in_document_order(tiny_model_dir, tmp_path, capsys):
    doc = tmp_path / "news.txt"
    doc.write_text(NEWS, encoding="utf-8")
    code, out, _ = run_cli(["summarize", str(tiny_model_dir), "--input", str(doc),
                            "--sentences", "4"], capsys)  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 4
    positions = [NEWS.index(line) for line in lines]
    assert positions == sorted(positions)

    code, out, _ = run_cli(["summarize", str(tiny_model_dir), "--input", str(doc), "--json",
                            "--max-chars", "120"], capsys)  # fmt: skip
    assert code == 0
    row = json.loads(out)
    assert set(row) == {"sentences", "n_sentences", "summary", "language"}
    assert row["n_sentences"] == 8 and len(row["summary"]) <= 120
    for s in row["sentences"]:
        assert set(s) == {"text", "start", "end", "score", "index", "rank"}
        assert NEWS[s["start"] : s["end"]] == s["text"]
        assert 0.0 <= s["score"] <= 1.0


def test_cli_per_line_and_table_inputs(tiny_model_dir, tmp_path, capsys):
    lines = tmp_path / "docs.txt"
    lines.write_text("One. Two here. Three now.\n\nAlpha beta. Gamma.\n", encoding="utf-8")
    code, out, _ = run_cli(["summarize", str(tiny_model_dir), "--input", str(lines),
                            "--per-line", "--sentences", "1", "--json"], capsys)  # fmt: skip
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["line"], r["n_sentences"], len(r["sentences"])) for r in rows] == [
        (1, 3, 1),
        (3, 2, 1),
    ]

    table = tmp_path / "docs.csv"
    with open(table, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["id", "body"], ["a", NEWS], ["b", ZH]])
    code, out, _ = run_cli(["summarize", str(tiny_model_dir), "--input", str(table),
                            "--text-column", "body", "--sentences", "2"], capsys)  # fmt: skip
    assert code == 0
    first, second = out.split("\n\n")
    assert len(first.splitlines()) == 2 and all(s in NEWS for s in first.splitlines())
    assert len(second.splitlines()) == 2 and all(s in ZH for s in second.splitlines())


def test_cli_errors_are_one_line_and_name_the_flag(tiny_model_dir, tmp_path, capsys):
    code, _, err = run_cli(["summarize", str(tiny_model_dir), "--input", str(tmp_path / "no.txt")],
                           capsys)  # fmt: skip
    assert code == 2 and "--input" in err and "no such file" in err and "Traceback" not in err
    doc = tmp_path / "news.txt"
    doc.write_text(NEWS, encoding="utf-8")
    code, _, err = run_cli(["summarize", str(tiny_model_dir), "--input", str(doc),
                            "--sentences", "0"], capsys)  # fmt: skip
    assert code == 2 and "--sentences 0: must be a whole number >= 1" in err
    code, _, err = run_cli(["summarize", str(tiny_model_dir), "--input", str(doc),
                            "--ratio", "2"], capsys)  # fmt: skip
    assert code == 2 and "--ratio 2.0" in err
    code, _, err = run_cli(["summarize", str(tiny_model_dir), "--input", str(doc),
                            "--sentences", "2", "--max-words", "9"], capsys)  # fmt: skip
    assert code == 2 and "not allowed with argument" in err  # argparse: two budgets at once
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    code, _, err = run_cli(["summarize", str(tiny_model_dir), "--input", str(empty)], capsys)
    assert code == 2 and "holds no text" in err


# ---------------------------------------------------------------------------------------------
# the supervised variant


def fake_run(tiny_model_dir: Path, root: Path, labels: list[str]) -> Path:
    """A random (untrained) classification run whose model folder has `labels`."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(
        str(tiny_model_dir), num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )  # fmt: skip
    out = root / "run" / "model"
    model.save_pretrained(str(out), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(str(out))
    (out / "jiyi.json").write_text(json.dumps({"task": "classification", "max_length": 64}))
    return out.parent


def test_classifier_ranking_follows_the_positive_probability(
    tiny_model_dir, tmp_path, monkeypatch, capsys
):
    from jiyi.predict import Classifier

    run = fake_run(tiny_model_dir, tmp_path, ["0", "1"])

    def proba(self, texts, pairs=None):  # P(1) high for sentences that mention the budget
        p1 = np.array([0.9 if "budget" in t else 0.1 for t in texts])
        return np.stack([1 - p1, p1], axis=1)

    monkeypatch.setattr(Classifier, "predict_proba", proba)
    got = summarize(run, NEWS, sentences=3, mmr_lambda=1.0)[0]
    assert [p.text for p in got.sentences] == [
        "The city council approved a new budget on Monday.",
        "The council voted 7 to 2 for the budget.",
        "The budget takes effect in January.",
    ]
    assert [p.score for p in got.sentences] == [0.9, 0.9, 0.9]
    # the CLI picks the classifier for a classification run without being told
    doc = tmp_path / "news.txt"
    doc.write_text(NEWS, encoding="utf-8")
    code, out, _ = run_cli(["summarize", str(run), "--input", str(doc), "--sentences", "3",
                            "--mmr-lambda", "1"], capsys)  # fmt: skip
    assert code == 0 and out.splitlines() == [p.text for p in got.sentences]
    # --ranking centrality ignores the head and ranks with the run's encoder
    code, out, _ = run_cli(["summarize", str(run), "--input", str(doc), "--ranking",
                            "centrality", "--json"], capsys)  # fmt: skip
    assert code == 0 and any(s["score"] not in (0.1, 0.9) for s in json.loads(out)["sentences"])


def test_classifier_ranking_with_real_probabilities_and_label_choice(tiny_model_dir, tmp_path):
    from jiyi.predict import Classifier

    run = fake_run(tiny_model_dir, tmp_path, ["keep", "drop"])
    with pytest.raises(JiyiError, match=r"labels are \['keep', 'drop'\].*--positive-label"):
        summarize(run, NEWS)
    with pytest.raises(JiyiError, match="--positive-label 'yes'"):
        summarize(run, NEWS, positive_label="yes")
    got = summarize(run, NEWS, positive_label="keep", sentences=8)[0]
    expected = Classifier(run).predict_proba([s.text for s in split_sentences(NEWS)])[:, 0]
    assert np.allclose([p.score for p in got.sentences], expected, atol=1e-6)
    with pytest.raises(JiyiError, match="--ranking classifier"):
        summarize(tiny_model_dir, NEWS, ranking="classifier")


def test_oracle_labels_and_sentence_rows_csv(tmp_path):
    assert oracle_labels(["Rain fell.", "Markets rose sharply.", "Cats slept."],
                         "Markets rose.") == [0, 1, 0]  # fmt: skip
    # two sentences cover the reference better than either alone; the third adds only noise
    assert oracle_labels(["Taxes rise in May.", "Schools get the money.", "It rained."],
                         "Taxes rise; schools get the money.") == [1, 1, 0]  # fmt: skip
    assert oracle_labels(["No overlap here."], "Nothing shared.") == [0]
    assert oracle_labels(["税率提高。", "天气很好。"], "提高税率") == [1, 0]
    out = tmp_path / "rows.csv"
    rows = sentence_rows([NEWS, ZH], ["Council approves budget raising taxes 2.5 percent.",
                                      "市议会通过新预算"], output=out)  # fmt: skip
    with open(out, newline="", encoding="utf-8") as f:
        written = list(csv.DictReader(f))
    assert len(written) == len(rows) == 8 + 6
    assert written[0] == {"text": "The city council approved a new budget on Monday.",
                          "label": "1", "document": "0", "sentence": "0"}  # fmt: skip
    assert {r["label"] for r in written} == {"0", "1"}
    assert [r["text"] for r in written if r["document"] == "1" and r["label"] == "1"] == [
        "市议会周一通过了新预算。"
    ]
    with pytest.raises(JiyiError, match="2 documents but 1"):
        sentence_rows(["a", "b"], ["a"])
