"""Active learning (`jiyi select`, `jiyi.active`): the strategies on hand-computed cases, and the
verb end to end on the tiny run (probabilities) and the tiny model (vectors only)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import make_texts, write_csv
from jiyi.active.run import normalise_text
from jiyi.active.strategies import (
    entropy,
    hybrid_order,
    k_center_greedy,
    least_confidence,
    margin,
    uncertainty_order,
)
from jiyi.cli import main

# Three rows on which the three uncertainty measures disagree (worked by hand):
#   row  probabilities     least confidence  margin  entropy (nats)
#   0    0.5  0.5  0.0     0.5               0.0     ln 2 = 0.6931
#   1    0.6  0.2  0.2     0.4               0.4     0.6*0.5108 + 0.4*1.6094 = 0.9503
#   2    0.4  0.3  0.3     0.6               0.1     0.4*0.9163 + 0.6*1.2040 = 1.0889
PROBS = np.array([[0.5, 0.5, 0.0], [0.6, 0.2, 0.2], [0.4, 0.3, 0.3]])


def test_uncertainty_measures_by_hand() -> None:
    assert least_confidence(PROBS) == pytest.approx([0.5, 0.4, 0.6])
    assert margin(PROBS) == pytest.approx([0.0, 0.4, 0.1])
    assert entropy(PROBS) == pytest.approx([0.6931, 0.9503, 1.0889], abs=1e-4)
    assert uncertainty_order(PROBS, "uncertainty").tolist() == [2, 0, 1]
    assert uncertainty_order(PROBS, "margin").tolist() == [0, 2, 1]
    assert uncertainty_order(PROBS, "entropy").tolist() == [2, 1, 0]


def test_ties_keep_the_pool_order_and_two_classes_agree() -> None:
    probs = np.array([[0.7, 0.3], [0.5, 0.5], [0.3, 0.7], [0.9, 0.1], [0.45, 0.55]])
    for strategy in ("uncertainty", "margin", "entropy"):  # binary: one order for all three
        assert uncertainty_order(probs, strategy).tolist() == [1, 4, 0, 2, 3]


def test_multilabel_measures_ask_about_the_least_sure_label() -> None:
    probs = np.array([[0.9, 0.45], [0.6, 0.6], [0.99, 0.01]])  # yes/no per label
    assert least_confidence(probs, multilabel=True) == pytest.approx([0.45, 0.4, 0.01])
    assert margin(probs, multilabel=True) == pytest.approx([0.1, 0.2, 0.98])
    h = lambda p: -(p * np.log(p) + (1 - p) * np.log(1 - p))  # noqa: E731
    assert entropy(probs, multilabel=True) == pytest.approx(
        [h(0.9) + h(0.45), 2 * h(0.6), 2 * h(0.01)]
    )
    assert uncertainty_order(probs, "margin", multilabel=True).tolist() == [0, 1, 2]


# Five 2-D points; their mean is (2.2, 2).
POINTS = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [5.0, 5.0], [0.0, 5.0]])


def test_k_center_greedy_on_points_by_hand() -> None:
    # nothing labelled: (1,0) is nearest the mean (2.33 away); then the farthest from it,
    # (5,5) at sqrt(41); then (0,5): 5 from (5,5), nearer than sqrt(26) from (1,0); then
    # (5,0), 4 from (1,0); last (0,0), 1 from (1,0)
    order, dist = k_center_greedy(POINTS, 5, metric="euclidean")
    assert order.tolist() == [1, 3, 4, 2, 0]
    assert dist == pytest.approx([np.sqrt(1.2**2 + 4), np.sqrt(41), 5.0, 4.0, 1.0])
    # (0,0) labelled: (5,5) first (sqrt 50 away), then (5,0) and (0,5) tie at 5 -> the earlier
    order, dist = k_center_greedy(POINTS, 3, labelled=np.array([[0.0, 0.0]]), metric="euclidean")
    assert order.tolist() == [3, 2, 4]
    assert dist == pytest.approx([np.sqrt(50), 5.0, 5.0])


def test_k_center_greedy_cosine_ignores_length_and_keeps_away_from_labelled() -> None:
    deg = np.radians([0.0, 5.0, 90.0, 95.0, 180.0])
    unit = np.c_[np.cos(deg), np.sin(deg)]
    scaled = unit * np.array([[1.0], [7.0], [0.2], [3.0], [2.0]])  # lengths do not matter
    labelled = np.array([[np.cos(np.radians(80)), np.sin(np.radians(80))]]) * 4
    # distance = 1 - cos(angle): 180 deg is 100 from the labelled 80; then 0 deg (80 away);
    # then 95 deg (15 from 80), farther than 5 deg (5 from 0) and 90 deg (10 from 80)
    a, da = k_center_greedy(unit, 3, labelled=labelled)
    b, db = k_center_greedy(scaled, 3, labelled=labelled)
    assert a.tolist() == b.tolist() == [4, 0, 3]
    assert da == pytest.approx(db)
    assert da == pytest.approx(1 - np.cos(np.radians([100.0, 80.0, 15.0])))
    assert np.all(np.diff(da) <= 1e-12)  # with labelled rows, each pick is no farther than the last


def test_k_center_greedy_rejects_a_budget_beyond_the_rows() -> None:
    with pytest.raises(ValueError, match="budget 6"):
        k_center_greedy(POINTS, 6)
    assert k_center_greedy(POINTS, 0)[0].tolist() == []


def test_hybrid_chooses_diverse_rows_among_the_uncertain_only() -> None:
    # margins 0, 0.04, 0.1, 0.16 (rows 0 and 1 point the same way), then two confident rows
    probs = np.array(
        [[0.5, 0.5], [0.52, 0.48], [0.55, 0.45], [0.58, 0.42], [0.99, 0.01], [0.98, 0.02]]
    )
    vectors = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0], [0, -1.0]])
    # 2 candidates for 2 picks: the two most uncertain, however alike
    picks, _, cands = hybrid_order(probs, vectors[:2], 2, 2)
    assert cands.tolist() == [0, 1] and sorted(picks.tolist()) == [0, 1]
    # 4 candidates for 3 picks: 45 deg (nearest their mean) first, then 0 and 90 deg; row 1,
    # 0.57 deg from row 0, is left out, and so are the far but confident rows 4 and 5
    picks, dist, cands = hybrid_order(probs, vectors[:4], 3, 4)
    assert cands.tolist() == [0, 1, 2, 3]
    assert picks[0] == 3 and sorted(picks.tolist()) == [0, 2, 3]
    assert dist[1:] == pytest.approx([1 - np.cos(np.radians(45))] * 2)
    with pytest.raises(ValueError, match="one vector per candidate"):
        hybrid_order(probs, vectors, 3, 4)


def test_normalised_text_matches_case_and_spaces() -> None:
    assert normalise_text("  A\u00a0Moving\t FILM ") == normalise_text("a moving film")
    assert normalise_text("a moving film") != normalise_text("a moving films")


# ---- the verb ----------------------------------------------------------------------------------


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def select(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    rc = main(["select", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_select_margin_picks_the_smallest_margins_of_the_run(
    trained_run: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import jiyi

    pool = tiny_data_dir / "test.csv"
    out = tmp_path / "to_label.csv"
    rc, stdout, err = select(
        capsys, "--pool", pool, "--run", trained_run, "--budget", 8, "--strategy", "margin",
        "--output", out,
    )  # fmt: skip
    assert rc == 0, err
    rows = read_rows(out)
    assert list(rows[0]) == ["rank", "row", "text", "score", "reason", "predicted", "label"]
    assert [r["rank"] for r in rows] == [str(i) for i in range(1, 9)]
    assert all(r["label"] == "" for r in rows)
    # pinned against the run's own calibrated probabilities of the whole pool
    pool_rows = read_rows(pool)
    probs = jiyi.load(trained_run).predict_proba([r["text"] for r in pool_rows])
    top2 = np.sort(probs, axis=1)
    margins = top2[:, -1] - top2[:, -2]
    expected = np.argsort(margins, kind="stable")[:8]
    assert [int(r["row"]) for r in rows] == [int(i) + 2 for i in expected]  # line = index + 2
    assert [float(r["score"]) for r in rows] == pytest.approx(margins[expected], abs=1e-5)
    labels = ["neg", "pos"]
    for r, i in zip(rows, expected, strict=True):
        assert r["text"] == pool_rows[i]["text"]
        assert r["predicted"] == labels[int(np.argmax(probs[i]))]
        assert r["reason"].startswith(f"uncertain: margin {margins[i]:.3f} between ")
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["selected"] == 8 and summary["pool"] == 60 and summary["strategy"] == "margin"
    assert sum(summary["predicted"].values()) == 8
    assert "select: 8 of 60 pool rows by margin" in err and f"written: {out}" in err


@pytest.mark.parametrize("strategy", ["uncertainty", "entropy", "diversity", "hybrid"])
def test_select_each_strategy_with_a_run(
    strategy: str,
    trained_run: Path,
    tiny_data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "pick.csv"
    argv = ["--pool", tiny_data_dir / "test.csv", "--run", trained_run, "--budget", 6]
    rc, _, err = select(capsys, *argv, "--strategy", strategy, "--output", out)
    assert rc == 0, err
    rows = read_rows(out)
    assert len(rows) == 6 and len({r["row"] for r in rows}) == 6
    prefix = {"uncertainty": "uncertain: top probability", "entropy": "uncertain: entropy"}
    if strategy in prefix:
        assert all(r["reason"].startswith(prefix[strategy]) for r in rows)
        scores = [float(r["score"]) for r in rows]
        assert scores == sorted(scores, reverse=True)
    elif strategy == "diversity":
        assert rows[0]["reason"].startswith("diverse: the most typical row")
        assert all("diverse: distance" in r["reason"] for r in rows[1:])
    else:  # hybrid: uncertain by margin, then diverse among the 24 candidates
        assert all(r["reason"].startswith("uncertain: margin") for r in rows)
        assert all("; diverse:" in r["reason"] for r in rows)
        assert "the 24 most uncertain by margin" in err


def test_select_diversity_with_a_model_only(
    tiny_model_dir: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jiyi.inspect.embeddings import embed_texts

    pool = tiny_data_dir / "test.csv"
    out = tmp_path / "first.csv"
    rc, _, err = select(capsys, "--pool", pool, "--model", tiny_model_dir, "--budget", 5,
                        "--output", out)  # fmt: skip
    assert rc == 0, err
    rows = read_rows(out)
    assert list(rows[0]) == ["rank", "row", "text", "score", "reason", "label"]  # no predicted
    # the same picks as k-center greedy on the model's normalised mean-pooled vectors
    texts = [r["text"] for r in read_rows(pool)]
    vectors = embed_texts(str(tiny_model_dir), texts, normalize=True, max_length=256)
    order, dist = k_center_greedy(vectors, 5)
    assert [int(r["row"]) - 2 for r in rows] == order.tolist()
    assert [float(r["score"]) for r in rows] == pytest.approx(dist, abs=1e-5)
    assert "by diversity" in err


def test_select_labelled_rounds_exclude_and_keep_away(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pool_rows = make_texts(30, seed=11)
    pool = write_csv(tmp_path / "pool.csv", pool_rows)
    first, second = tmp_path / "r1.csv", tmp_path / "r2.csv"
    base = ["--pool", pool, "--model", tiny_model_dir, "--budget", 6]
    assert select(capsys, *base, "--output", first)[0] == 0
    # the annotator's file: labels filled in, the texts' case and spacing changed on the way
    done = read_rows(first)
    labelled = tmp_path / "labelled.csv"
    write_csv(labelled, [("  " + r["text"].upper() + " ", "pos") for r in done])
    rc, stdout, err = select(capsys, *base, "--labelled", labelled, "--output", second)
    assert rc == 0, err
    again = read_rows(second)
    assert not {r["row"] for r in done} & {r["row"] for r in again}
    assert all(r["reason"].startswith("diverse: distance") for r in again)  # seeded: no "typical"
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["excluded"] == 6 and summary["pool"] == 30
    assert "left out 6 already in --labelled" in err
    # everything labelled: nothing left; more asked than is left: the count is named
    everything = write_csv(tmp_path / "all.csv", pool_rows)
    rc, _, err = select(capsys, *base, "--labelled", everything, "--output", second)
    assert rc == 2 and "nothing is left to label" in err
    rc, _, err = select(capsys, "--pool", pool, "--model", tiny_model_dir, "--budget", 25,
                        "--labelled", labelled, "--output", second)  # fmt: skip
    assert rc == 2 and "--budget 25: only 24 rows of --pool are left" in err


def test_select_leaves_out_repeated_pool_texts(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = make_texts(6, seed=5)
    pool = write_csv(tmp_path / "pool.csv", [*rows, (rows[0][0].title(), "neg")])
    out = tmp_path / "o.csv"
    rc, stdout, _ = select(capsys, "--pool", pool, "--model", tiny_model_dir, "--budget", 6,
                           "--output", out)  # fmt: skip
    assert rc == 0
    assert json.loads(stdout.strip().splitlines()[-1])["duplicates"] == 1
    assert sorted(int(r["row"]) for r in read_rows(out)) == list(range(2, 8))


def test_select_to_stdout_and_text_column(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pool = write_csv(tmp_path / "pool.csv", make_texts(10, seed=6), header=("body", "queue"))
    rc, _, err = select(capsys, "--pool", pool, "--model", tiny_model_dir, "--budget", 3,
                        "--output", "-")  # fmt: skip
    assert rc == 2
    assert f'--pool {pool}: no column "text"' in err and "--text-column NAME" in err
    rc, out, err = select(capsys, "--pool", pool, "--model", tiny_model_dir, "--budget", 3,
                          "--text-column", "body", "--output", "-")  # fmt: skip
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == "rank,row,body,score,reason,label" and len(lines) == 4


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--budget", "0"], "--budget 0: choose at least 1 row"),
        (["--budget", "61"], "--budget 61: only 60 rows of --pool are left; choose at most 60"),
        (["--budget", "3", "--strategy", "margin"], "gives context vectors only. Pass --run RUN"),
        (["--budget", "3", "--candidates", "9"], "--candidates applies to --strategy hybrid"),
    ],
)
def test_select_bad_input_with_a_model(
    extra: list[str],
    message: str,
    tiny_model_dir: Path,
    tiny_data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "o.csv"
    argv = ["--pool", tiny_data_dir / "test.csv", "--model", tiny_model_dir, *extra]
    rc, _, err = select(capsys, *argv, "--output", out)
    assert rc == 2 and message in err, err
    assert "Traceback" not in err and not out.exists()


def test_select_bad_input_with_a_run(
    trained_run: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o.csv"
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n", encoding="utf-8")
    rc, _, err = select(capsys, "--pool", empty, "--run", trained_run, "--budget", 2,
                        "--output", out)  # fmt: skip
    assert rc == 2 and f"--pool {empty}: the file has a header line but no rows" in err
    rc, _, err = select(capsys, "--pool", tmp_path / "nope.csv", "--run", trained_run,
                        "--budget", 2, "--output", out)  # fmt: skip
    assert rc == 2 and "nope.csv: no such file" in err
    rc, _, err = select(capsys, "--pool", tiny_data_dir / "test.csv", "--run", trained_run,
                        "--budget", 5, "--strategy", "hybrid", "--candidates", 4,
                        "--output", out)  # fmt: skip
    assert rc == 2 and "--candidates 4: hybrid chooses --budget 5 rows" in err
    rc, _, err = select(capsys, "--pool", tiny_data_dir / "test.csv", "--run", tmp_path / "x",
                        "--budget", 2, "--output", out)  # fmt: skip
    assert rc == 2 and "--run" in err and "no such folder" in err
    assert not out.exists()
