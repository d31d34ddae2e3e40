"""jiyi audit: confident learning against hand-computed cases, the near-duplicate finder against
brute force, and the verb end to end on the tiny model (flipped labels must come out on top)."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from conftest import FILLER, NEGATIVE, POSITIVE
from jiyi.audit.confident import (
    confident_joint,
    confident_labels,
    estimate_joint,
    find_label_issues,
    label_quality,
    noise_rates,
    prune_by_noise_rate,
    thresholds,
)
from jiyi.audit.duplicates import (
    exact_conflicts,
    label_conflicts,
    near_conflicts,
    normalize_text,
)
from jiyi.cli import main

# Eight rows, three classes. By hand, from the definitions:
#   t_0 = (0.80 + 0.55 + 0.10) / 3 = 0.48333, t_1 = (0.90 + 0.50) / 2 = 0.7,
#   t_2 = (0.60 + 0.30 + 0.30) / 3 = 0.4
#   r0 (0): only p_0 >= t_0                           -> 0
#   r1 (0): p_0 = .55 >= t_0 and p_2 = .45 >= t_2     -> argmax of the two: 0
#   r2 (0): p_1 = .80 >= t_1                          -> 1   (a label error)
#   r3 (1): p_1 = .90                                  -> 1
#   r4 (1): p_0 = .50 >= t_0, p_1 = .50 < t_1          -> 0   (a label error)
#   r5 (2): p_2 = .60                                  -> 2
#   r6 (2): p_0 = .60 >= t_0, p_2 = .30 < t_2          -> 0   (a label error)
#   r7 (2): .20 < t_0, .50 < t_1, .30 < t_2            -> above no threshold: not counted
PROBS = np.array(
    [
        [0.80, 0.10, 0.10],
        [0.55, 0.00, 0.45],
        [0.10, 0.80, 0.10],
        [0.10, 0.90, 0.00],
        [0.50, 0.50, 0.00],
        [0.30, 0.10, 0.60],
        [0.60, 0.10, 0.30],
        [0.20, 0.50, 0.30],
    ]
)
LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2])


def test_thresholds_and_confident_joint_by_hand() -> None:
    np.testing.assert_allclose(thresholds(PROBS, LABELS), [1.45 / 3, 0.7, 0.4])
    assert confident_labels(PROBS, LABELS).tolist() == [0, 0, 1, 1, 0, 2, 0, -1]
    # rows: given label; columns: confident label; r7 is in no cell
    assert confident_joint(PROBS, LABELS).tolist() == [[2, 1, 0], [1, 1, 0], [1, 0, 1]]


def test_calibrated_joint_noise_and_pruning_by_hand() -> None:
    # row 2 sums to 2 but 3 rows carry label 2: scaled by 3/2 -> [1.5, 0, 1.5]; total 8
    joint = estimate_joint(confident_joint(PROBS, LABELS), np.array([3, 2, 3]))
    expected = np.array([[2, 1, 0], [1, 1, 0], [1.5, 0, 1.5]]) / 8
    np.testing.assert_allclose(joint, expected)
    per_class, overall = noise_rates(joint)
    # 1 - Q[i][i] / row i: 1 - 2/3, 1 - 1/2, 1 - 1.5/3; off-diagonal: (1 + 1 + 1.5) / 8
    np.testing.assert_allclose(per_class, [1 / 3, 0.5, 0.5])
    assert overall == pytest.approx(3.5 / 8)
    # N·Q: (0,1) -> 1 of label 0 with the largest p_1 - p_0: r2; (1,0) -> 1: r4 (margin 0 vs
    # -0.8); (2,0) -> round(1.5) = 2 of label 2 by p_0 - p_2: r6 (+0.3), r7 (-0.1) before r5 (-0.3)
    assert np.flatnonzero(prune_by_noise_rate(PROBS, LABELS, joint)).tolist() == [2, 4, 6, 7]


def test_empty_confident_row_keeps_its_labels() -> None:
    # class 1 has 2 rows but no confident count: its mass goes on the diagonal (no noise)
    joint = estimate_joint(np.array([[3, 1], [0, 0]]), np.array([4, 2]))
    np.testing.assert_allclose(joint, [[0.5, 1 / 6], [0, 2 / 6]])
    assert noise_rates(joint)[0].tolist() == pytest.approx([0.25, 0.0])


def test_ranking_scores_order_and_suggestions_by_hand() -> None:
    np.testing.assert_allclose(
        label_quality(PROBS, LABELS, "self_confidence"), [0.8, 0.55, 0.1, 0.9, 0.5, 0.6, 0.3, 0.3]
    )
    # (p_given - best other + 1) / 2: r2 (0.1 - 0.8 + 1) / 2, r7 (0.3 - 0.5 + 1) / 2
    margin = label_quality(PROBS, LABELS, "normalized_margin")
    np.testing.assert_allclose(margin[[0, 2, 4, 7]], [0.85, 0.15, 0.5, 0.4])
    found = find_label_issues(PROBS, LABELS)
    # suspects by score (r7 ties r6 at 0.3: the earlier row first), then the rest by score
    assert found.order.tolist() == [2, 6, 7, 4, 1, 5, 0, 3]
    # suspects: the best other label; the others: the argmax
    assert found.suggested.tolist() == [0, 0, 1, 1, 0, 2, 0, 1]
    assert found.noise_rate == pytest.approx(0.4375)


def test_clean_labels_raise_no_suspect() -> None:
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])
    found = find_label_issues(probs, np.array([0, 0, 1, 1]))
    assert found.confident_joint.tolist() == [[1, 0], [0, 1]]  # t = 0.85, 0.8: r1, r2 below
    assert not found.suspected.any() and found.noise_rate == 0


def test_conflicts_exact_and_near_in_blocks() -> None:
    assert normalize_text("  The  FILM, great! ") == "the film great"
    texts = ["Great film!", "great film", "a dull plot", "great   FILM", "other"]
    labels = np.array([1, 0, 0, 1, 0])
    pairs = exact_conflicts(texts, labels)
    # rows 0, 1, 3 are one text; each later row pairs with the first earlier one of another label
    assert [(p.a, p.b, p.kind) for p in pairs] == [(0, 1, "exact"), (1, 3, "exact")]
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8))
    vectors[10] = vectors[3] + 0.01  # near copies
    vectors[40] = vectors[3] * 2  # same direction: cosine 1
    labels = rng.integers(0, 2, size=50)
    labels[[3, 10, 40]] = [0, 1, 1]
    found = near_conflicts(vectors, labels, 0.97, block=7)  # several blocks
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit @ unit.T
    brute = {
        (i, j)
        for i in range(50)
        for j in range(i + 1, 50)
        if sims[i, j] >= 0.97 and labels[i] != labels[j]
    }
    assert {(p.a, p.b) for p in found} == brute and {(3, 10), (3, 40)} <= brute
    # above 1: exact duplicates only; exact pairs are not reported again as near ones
    texts = ["same text"] * 2 + [f"text {i}" for i in range(48)]
    labels[[0, 1]] = [1, 1]  # equal texts, equal labels: no conflict
    assert [p.kind for p in label_conflicts(texts, labels, vectors, 2.0)] == []
    vectors[1] = vectors[0]
    labels[[0, 1]] = [0, 1]
    kinds = [(p.a, p.b, p.kind) for p in label_conflicts(texts, labels, vectors, 0.97)]
    assert kinds[0] == (0, 1, "exact") and (0, 1, "near") not in kinds


# ---- the verb, end to end on the tiny model -------------------------------------------------


def _separable_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """Three sentiment words of the label and two filler words per text: easy to separate."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(POSITIVE if label == "pos" else NEGATIVE, 3) + rng.sample(FILLER, 2)
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_audit_cli_finds_flipped_labels(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _separable_rows(200, seed=5)
    flipped = set(np.random.default_rng(0).choice(len(rows), 20, replace=False).tolist())
    table = []
    for i, (text, label) in enumerate(rows):
        if i in flipped:
            label = "neg" if label == "pos" else "pos"
        table.append([f"id{i}", text, label])
    table[0][1] = "<script>alert(1)</script> " + table[0][1]  # escaped in the page
    table.append(["dup", table[0][1].upper() + "!", "neg" if table[0][2] == "pos" else "pos"])
    data = _write(tmp_path / "train.csv", ["id", "text", "label"], table)
    out, clean = tmp_path / "audit", tmp_path / "train.clean.csv"
    argv = ["audit", str(tiny_model_dir), "--data", str(data), "--output", str(out)]
    assert main([*argv, "--write-clean", str(clean)]) == 0
    printed = capsys.readouterr().out
    assert "suspected of a wrong label" in printed and "estimated noise rate" in printed

    assert sorted(p.name for p in out.iterdir()) == ["audit.html", "audit.jsonl", "summary.json"]
    records = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    assert len(records) == 201 and [r["rank"] for r in records] == list(range(1, 202))
    assert set(records[0]) == {
        "rank", "line", "row", "text", "label", "suggested", "score", "suspected", "conflicts",
        "reason",
    }  # fmt: skip
    # the flipped rows (CSV line = row + 2) rank at the top: 20 flipped in 200, chance is 10%
    top = {r["row"] for r in records[:20]}
    assert len(top & flipped) >= 15, sorted(top & flipped)
    suspects = [r for r in records if r["suspected"]]
    assert all(r["suggested"] != r["label"] and r["reason"] for r in suspects)
    # the upper-cased copy of row 0 under the other label is reported as an exact conflict
    last = next(r for r in records if r["row"] == 200)
    assert 2 in last["conflicts"] and "line 2" in last["reason"]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == 201 and summary["suspected"] == len(suspects)
    assert 0.03 < summary["noise_rate"] < 0.25 and summary["conflicts"]["exact"] >= 1
    assert np.sum(summary["joint"]) == pytest.approx(1.0, abs=1e-4)

    html = (out / "audit.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)" in html  # row 0 or its copy
    assert "Estimated joint" in html and "Per class" in html

    with open(clean, newline="", encoding="utf-8") as f:
        kept = list(csv.DictReader(f))
    assert list(kept[0]) == ["id", "text", "label"]  # every column kept
    dropped = {r["line"] for r in suspects}
    assert len(kept) == 201 - len(dropped)
    assert {row["id"] for row in kept} == {
        t[0] for line, t in enumerate(table, start=2) if line not in dropped
    }


def test_audit_bad_input_messages(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def error(*argv: str) -> str:
        out = tmp_path / "out"
        assert main(["audit", str(tiny_model_dir), "--output", str(out), *argv]) == 2
        return capsys.readouterr().err

    rows = [[t, lab] for t, lab in _separable_rows(12, seed=1)]
    data = _write(tmp_path / "d.csv", ["text", "label"], rows)
    assert 'no column "category"' in error("--data", str(data), "--label-column", "category")
    rare = _write(tmp_path / "rare.csv", ["text", "label"], [*rows, ["good great", "meh"]])
    message = error("--data", str(rare))
    assert "'meh' (1)" in message and "--folds" in message and "add examples" in message
    tiny = _write(tmp_path / "tiny.csv", ["text", "label"], rows[:3])
    assert "fewer than --folds 5" in error("--data", str(tiny))
    one = _write(tmp_path / "one.csv", ["text", "label"], [[t, "pos"] for t, _ in rows])
    assert "at least two classes" in error("--data", str(one))
    wrong = error("--data", str(data), "--write-clean", str(tmp_path / "clean.jsonl"))
    assert "--write-clean" in wrong and "format" in wrong
    assert "--train-args" in error("--data", str(data), "--train-args", "--epochs 1")
    assert "at least 2 folds" in error("--data", str(data), "--folds", "1")
    assert "--duplicate-threshold 0.0" in error("--data", str(data), "--duplicate-threshold", "0")
    assert not (tmp_path / "out").exists()  # nothing written on a refusal


def test_audit_finetune_per_fold(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import TRAIN_FLAGS

    rows = _separable_rows(120, seed=3)
    flipped = {5, 20, 33, 48, 61, 70, 99, 110}
    table = [
        [t, ("neg" if lab == "pos" else "pos") if i in flipped else lab]
        for i, (t, lab) in enumerate(rows)
    ]
    data = _write(tmp_path / "train.csv", ["text", "label"], table)
    out = tmp_path / "audit"
    argv = ["audit", str(tiny_model_dir), "--data", str(data), "--output", str(out)]
    bad = [*argv, "--method", "finetune", "--train-args", "--epochz 2"]
    assert main(bad) == 2 and "--epochz" in capsys.readouterr().err
    flags = " ".join(TRAIN_FLAGS).replace("--epochs 4", "--epochs 10")
    assert main([*argv, "--method", "finetune", "--folds", "2", "--train-args", flags]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "finetune" and summary["out_of_fold"]["accuracy"] > 0.75
    records = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    assert len({r["row"] for r in records[:8]} & flipped) >= 5
    assert not any(p.name.startswith(".jiyi-audit-") for p in tmp_path.iterdir())  # cleaned up


def test_summary_warns_when_the_held_out_model_learnt_nothing() -> None:
    from jiyi.audit.run import AuditOptions, LabelledRows, summarize, summary_lines

    rows = LabelledRows(["a", "b", "c", "d"], np.array([0, 0, 0, 1]), ["x", "y"], [2, 3, 4, 5], 0)
    probs = np.full((4, 2), 0.5)
    found = find_label_issues(probs, rows.labels)
    options = AuditOptions()
    weak = summarize(rows, found, [], {"accuracy": 0.75}, options, "m", "d.csv")
    assert any(
        "no better than always saying the commonest label" in line for line in summary_lines(weak)
    )
    strong = summarize(rows, found, [], {"accuracy": 0.9}, options, "m", "d.csv")
    assert strong["warnings"] == [] and not any("warning" in line for line in summary_lines(strong))


def test_write_clean_keeps_format_columns_and_the_other_rows(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jiyi.audit.clean import check_clean_target, write_clean

    csv_file = tmp_path / "d.csv"
    csv_file.write_text('text;label;id\n"a; b";x;1\n"two\nlines";y;2\nc;x;3\n', encoding="utf-8")
    target = check_clean_target(csv_file, tmp_path / "d.clean.csv")
    assert write_clean(csv_file, target, drop={3}) == 2  # the row on line 3 spans lines 3-4
    assert Path(target).read_text() == 'text;label;id\n"a; b";x;1\nc;x;3\n'
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "a", "label": "x", "n": 1}\n\n{"text": "b", "label": "y"}\n')
    assert write_clean(jsonl, tmp_path / "c.jsonl", drop={1}) == 1
    assert (tmp_path / "c.jsonl").read_text() == '{"text": "b", "label": "y"}\n'
    parquet = tmp_path / "d.parquet"
    pq.write_table(
        pa.table({"text": ["a", "b", "c"], "label": ["x", "y", "x"], "w": [1, 2, 3]}), parquet
    )
    assert write_clean(parquet, tmp_path / "c.parquet", drop={2}) == 2
    assert pq.read_table(tmp_path / "c.parquet").to_pydict() == {
        "text": ["a", "c"], "label": ["x", "x"], "w": [1, 3]
    }  # fmt: skip
    with pytest.raises(Exception, match="the --data file itself"):
        check_clean_target(csv_file, csv_file)


def test_audit_of_a_run_uses_its_encoder(
    trained_run: Path, tiny_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "audit"
    data = str(tiny_data_dir / "validation.csv")
    argv = ["audit", str(trained_run), "--data", data, "--output", str(out), "--folds", "3"]
    assert main([*argv, "--ranking", "normalized_margin"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == 60 and summary["ranking"] == "normalized_margin"
    assert summary["label_counts"] == {"neg": 30, "pos": 30}
    records = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    suspects = [r["score"] for r in records if r["suspected"]]
    assert suspects == sorted(suspects) and all(0 <= s <= 1 for s in suspects)
    assert "rows suspected" in capsys.readouterr().out
