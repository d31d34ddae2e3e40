"""`jiyi bias`: whole-word, case-keeping, one-pass swaps; swap files; exact flip statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import jiyi
from conftest import copy_tree, write_csv
from jiyi.bias import (
    SwapTable,
    counterfactuals,
    default_swaps_path,
    probe,
    read_swaps,
    swap_text,
    wilson_interval,
)
from jiyi.cli import main
from jiyi.errors import JiyiError

GENDER = SwapTable.from_rows([("he", "she", "gender"), ("him", "her", "gender")])


def swapped(text: str, table: SwapTable = GENDER) -> str:
    return swap_text(text, table)[0]


def test_swap_whole_words_only() -> None:
    assert swapped("the hero said hello, then he left") == "the hero said hello, then she left"
    assert swapped("theme shed herself") == "theme shed herself"
    assert swap_text("the hero", GENDER) == ("the hero", [])


def test_swap_keeps_case() -> None:
    assert swapped("He came. HE came. he came.") == "She came. SHE came. she came."
    assert swapped("SHE and She") == "HE and He"


def test_swap_two_terms_in_one_pass() -> None:
    new, swaps = swap_text("he told her", GENDER)
    assert new == "she told him"
    assert [(s.term, s.replacement, s.start, s.pair) for s in swaps] == [
        ("he", "she", 0, "he↔she"),
        ("her", "him", 8, "him↔her"),
    ]
    assert swapped("he and she") == "she and he"  # not swapped back


def test_swap_next_to_punctuation() -> None:
    assert swapped('he, "him"; (he) he\'s he.') == 'she, "her"; (she) she\'s she.'


def test_swap_chinese_terms_match_inside_words() -> None:
    table = SwapTable.from_rows([("他", "她", "gender")])
    assert swapped("他说她很好", table) == "她说他很好"
    guarded = SwapTable.from_rows([("他", "她"), ("其他", "其他")])  # a guard keeps 其他 whole
    new, swaps = swap_text("其他人说他好", guarded)
    assert new == "其他人说她好"
    assert [s.term for s in swaps] == ["他"]


def test_swap_one_way_and_first_counterpart_wins() -> None:
    one_way = SwapTable.from_rows([("he", "she")], one_way=True)
    assert swapped("he and she", one_way) == "she and she"
    assert swap_text("he", one_way)[1][0].pair == "he→she"
    table = SwapTable.from_rows([("his", "her"), ("him", "her")])
    assert swapped("her dog saw him", table) == "his dog saw her"


def test_default_list_ships_with_the_package() -> None:
    table = read_swaps(default_swaps_path())
    assert swapped("He told her his brother met Emily", table) == (
        "She told his her sister met Lakisha"
    )
    assert {e.group for e in table.entries.values()} == {"gender", "name"}


def test_read_swaps_groups_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "terms.tsv"
    path.write_text("# comment\n\nhe\tshe\tgender\nMr\tMrs\n", encoding="utf-8")
    table = read_swaps(path)
    assert sorted(table.entries) == ["he", "mr", "mrs", "she"]
    assert table.entries["mrs"].counterpart == "Mr"
    assert table.entries["mr"].group == "ungrouped"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("he\tshe\n# note\nhim her\n", "line 3: no tab in 'him her'"),
        ("he\tshe\tgender\textra\n", "line 1: 4 columns"),
        ("he\tshe\n\tshe\n", "line 2: empty term"),
        ("he\t\n", "line 1: empty counterpart"),
        ("# only a comment\n", "no swap pairs"),
    ],
)
def test_read_swaps_errors_name_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "terms.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(JiyiError) as info:
        read_swaps(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_read_swaps_missing_and_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(JiyiError, match="no such swap file"):
        read_swaps(tmp_path / "absent.tsv")
    (tmp_path / "latin1.tsv").write_bytes(b"he\tshe\ncaf\xe9\tcafe\n")
    with pytest.raises(JiyiError, match=r"latin1.tsv line 2: not UTF-8"):
        read_swaps(tmp_path / "latin1.tsv")


def test_wilson_interval() -> None:
    low, high = wilson_interval(3, 10)
    assert (round(low, 4), round(high, 4)) == (0.1078, 0.6032)  # R: prop.test(3, 10, correct=F)
    assert wilson_interval(0, 5)[0] == 0.0
    assert wilson_interval(5, 5)[1] == 1.0


# p(pos) of each original and counterfactual text: the fake model's whole behaviour
P_POS = {
    "he is good": 0.8,
    "she is good": 0.6,  # change -0.2 on pos, no flip
    "his film was bad": 0.1,
    "her film was bad": 0.6,  # neg 0.9 -> 0.4: change -0.5, flips
    "nothing here": 0.5,  # holds no term: never predicted
    "he and his dog": 0.7,
    "she and her dog": 0.75,  # change +0.05
    "emily liked it": 0.55,
    "lakisha liked it": 0.45,  # change -0.1, flips
}


def test_probe_statistics_on_a_fake_model() -> None:
    table = SwapTable.from_rows(
        [("he", "she", "gender"), ("his", "her", "gender"), ("Emily", "Lakisha", "name")]
    )
    texts = ["he is good", "his film was bad", "nothing here", "he and his dog", "emily liked it"]
    calls = []

    def predict_proba(batch: list[str], pairs: list[str] | None = None) -> np.ndarray:
        calls.append(batch)
        p = np.array([P_POS[t] for t in batch])
        return np.stack([1 - p, p], axis=1)

    items = counterfactuals(texts, table, lines=[2, 3, 4, 5, 6])
    doc = probe(predict_proba, items, ["neg", "pos"], n_texts=len(texts))
    assert len(calls) == 1 and len(calls[0]) == 8  # one batched call: 4 originals + 4 swapped
    assert doc["n_texts"] == 5 and doc["n_affected"] == 4 and doc["n_flipped"] == 2
    assert doc["flip_rate"] == 0.5
    assert doc["flip_rate_ci95"] == pytest.approx(list(wilson_interval(2, 4)))
    assert doc["mean_change"] == pytest.approx((-0.2 - 0.5 + 0.05 - 0.1) / 4)
    assert doc["mean_abs_change"] == pytest.approx((0.2 + 0.5 + 0.05 + 0.1) / 4)

    assert list(doc["by_group"]) == ["gender", "name"]
    gender = doc["by_group"]["gender"]
    assert (gender["n"], gender["n_flipped"]) == (3, 1)
    assert gender["mean_change"] == pytest.approx((-0.2 - 0.5 + 0.05) / 3)
    pairs = doc["by_pair"]
    assert list(pairs) == ["he↔she", "his↔her", "Emily↔Lakisha"]
    assert (pairs["he↔she"]["n"], pairs["he↔she"]["n_flipped"]) == (2, 0)
    assert pairs["he↔she"]["mean_change"] == pytest.approx((-0.2 + 0.05) / 2)
    assert pairs["his↔her"]["flip_rate"] == 0.5
    assert pairs["his↔her"]["mean_abs_change"] == pytest.approx((0.5 + 0.05) / 2)
    assert pairs["Emily↔Lakisha"] | {"mean_change": 0} == {
        "group": "name",
        "n": 1,
        "n_flipped": 1,
        "flip_rate": 1.0,
        "flip_rate_ci95": list(wilson_interval(1, 1)),
        "mean_change": 0,
        "mean_abs_change": pytest.approx(0.1),
    }

    rows = doc["rows"]  # largest |change| first
    assert [r["index"] for r in rows] == [1, 0, 4, 3]
    worst = rows[0]
    assert worst["line"] == 3
    assert (worst["text"], worst["counterfactual"]) == ("his film was bad", "her film was bad")
    assert (worst["label"], worst["counterfactual_label"], worst["flipped"]) == ("neg", "pos", True)
    assert worst["tracked_label"] == "neg"
    assert worst["probability"] == pytest.approx(0.9)
    assert worst["counterfactual_probability"] == pytest.approx(0.4)
    assert worst["change"] == pytest.approx(-0.5)
    assert worst["swaps"] == [
        {"term": "his", "replacement": "her", "start": 0, "pair": "his↔her", "group": "gender"}
    ]


SWAPS = "# test list\nhe\tshe\tgender\nhis\ther\tgender\n"
TEXTS = [
    "he said the film was great",
    "the plot was dull and boring",  # no term
    "his movie is awful",
    'she said "<b>funny</b>" & smart',  # escaped in the page
    "the hero of this story",  # no term: "he" inside words
    "HE thought the music was lovely",
]


def test_bias_cli_end_to_end(trained_run: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "data.csv", [(t, "pos") for t in TEXTS])
    swaps = tmp_path / "terms.tsv"
    swaps.write_text(SWAPS, encoding="utf-8")
    out = tmp_path / "bias"
    argv = ["bias", str(trained_run), "--data", str(data), "--swap", str(swaps), "--output",
            str(out), "--worst", "3"]  # fmt: skip
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "bias.html",
        "bias.json",
        "counterfactuals.jsonl",
    ]

    doc = json.loads((out / "bias.json").read_text(encoding="utf-8"))
    assert doc["schema"] == 1 and doc["direction"] == "both" and doc["labels"] == ["neg", "pos"]
    assert (doc["n_texts"], doc["n_affected"]) == (6, 4)
    assert list(doc["by_pair"]) == ["he↔she", "his↔her"]
    assert len(doc["worst"]) == 3
    rows = [json.loads(x) for x in (out / "counterfactuals.jsonl").read_text().splitlines()]
    assert sorted(r["line"] for r in rows) == [2, 4, 5, 7]
    assert {r["counterfactual"] for r in rows} == {
        "she said the film was great",
        "her movie is awful",
        'he said "<b>funny</b>" & smart',
        "SHE thought the music was lovely",
    }

    # the numbers: the model's own probabilities, one text at a time
    clf = jiyi.load(str(trained_run))
    flips, changes = 0, []
    for r in rows:
        p, q = clf.predict_proba([r["text"]])[0], clf.predict_proba([r["counterfactual"]])[0]
        c = int(p.argmax())
        assert r["change"] == pytest.approx(q[c] - p[c], abs=1e-5)
        flips += int(p.argmax() != q.argmax())
        changes.append(q[c] - p[c])
    assert doc["n_flipped"] == flips
    assert doc["mean_change"] == pytest.approx(float(np.mean(changes)), abs=1e-5)
    assert doc["worst"] == rows[:3]

    html = (out / "bias.html").read_text(encoding="utf-8")
    assert html.count("<mark>") == 2 * sum(len(r["swaps"]) for r in doc["worst"])
    # every affected text shown (which 3 are the worst depends on the tiny model's numbers): the
    # markup in a text is escaped, never live
    every = tmp_path / "bias-all"
    assert main([*argv[:-4], "--output", str(every), "--worst", "4"]) == 0
    html = (every / "bias.html").read_text(encoding="utf-8")
    assert "&lt;b&gt;funny&lt;/b&gt;" in html and "<b>funny" not in html


def test_bias_cli_default_list_and_output(trained_run: Path, tmp_path: Path) -> None:
    run = copy_tree(trained_run, tmp_path / "run")
    data = write_csv(tmp_path / "data.csv", [(t, "pos") for t in TEXTS])
    assert main(["bias", str(run), "--data", str(data)]) == 0
    doc = json.loads((run / "eval" / "bias" / "bias.json").read_text(encoding="utf-8"))
    assert doc["swap_file"].endswith("swaps_en.tsv")
    assert doc["n_affected"] == 5  # the default list also swaps hero -> heroine
    assert (run / "eval" / "bias" / "bias.html").is_file()


def test_bias_cli_errors(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_csv(tmp_path / "data.csv", [("the plot was dull", "neg"), ("the hero", "pos")])
    swaps = tmp_path / "terms.tsv"
    swaps.write_text(SWAPS, encoding="utf-8")
    out = tmp_path / "bias"
    argv = ["bias", str(trained_run), "--data", str(data), "--swap", str(swaps), "--output",
            str(out)]  # fmt: skip
    assert main(argv) == 2
    assert "none of its 2 texts holds a term" in capsys.readouterr().err
    assert not out.exists()

    bad = tmp_path / "bad.tsv"
    bad.write_text("he\tshe\nhim her\n", encoding="utf-8")
    argv = ["bias", str(trained_run), "--data", str(data), "--swap", str(bad), "--output", str(out)]
    assert main(argv) == 2
    assert f"{bad} line 2: no tab" in capsys.readouterr().err
    assert not out.exists()

    for task in ("ner", "qa", "seq2seq", "pretraining"):  # every run that is not a classifier
        model = tmp_path / task / "model"
        model.mkdir(parents=True)
        (model / "config.json").write_text("{}")
        (model / "jiyi.json").write_text(json.dumps({"task": task}))
        assert main(["bias", str(model.parent), "--data", str(data)]) == 2
        err = capsys.readouterr().err
        assert f"jiyi bias applies to classification and multilabel runs, not {task} (" in err
        assert err.count("\n") == 1
