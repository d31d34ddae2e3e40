"""`jiyi memory build --payload answer --validation` and `jiyi ask` on the tiny model, through the
confidence model: entries are matched by question and answer, and the decisions `ask` makes on
the validation questions are the ones calibration counted."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from conftest import FILLER, NEGATIVE, POSITIVE
from jiyi.cli import main as run_cli

WORDS = POSITIVE + NEGATIVE + FILLER


def phrase(i: int, n: int = 4) -> str:
    """A fixed phrase of tiny-vocabulary words: phrase(0) != phrase(1)."""
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n))


def test_ask_matches_answers_and_reproduces_the_calibrated_decisions(
    tiny_model_dir: Path, tmp_path: Path, capsys
) -> None:
    entries = [(f"e{i}", phrase(2 * i), phrase(2 * i + 1, 6)) for i in range(8)]
    with open(tmp_path / "faq.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("id", "question", "answer"), *entries])
    validation = [(q, i) for i, q, _ in entries]  # the stored question itself: cosine 1
    validation += [(a, i) for i, _, a in entries]  # an answer's words: found through the answer
    validation += [(phrase(100 + k, 3), "") for k in range(8)]  # out of scope
    with open(tmp_path / "val.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("question", "id"), *validation])
    mem = tmp_path / "faq"
    argv = ["memory", "build", str(tiny_model_dir), "--data", str(tmp_path / "faq.csv"),
            "--text-column", "question", "--payload", "answer", "--validation",
            str(tmp_path / "val.csv"), "--output", str(mem)]  # fmt: skip
    assert run_cli(argv) == 0
    assert "confidence = sigmoid(" in capsys.readouterr().err
    tuned = json.loads((mem / "memory.json").read_text())["ask"]
    assert tuned["threshold_on"] == "confidence" and tuned["n_validation"] == 24
    assert tuned["confidence"]["features"] == ["question", "answer", "margin"]
    assert tuned["top1_accuracy_answerable"] == 1.0  # the 8 answer texts find their entries

    questions = tmp_path / "questions.csv"
    with open(questions, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("question",), *[(q,) for q, _ in validation]])
    assert run_cli(["ask", str(mem), "--input", str(questions), "--text-column", "question",
                    "--json"]) == 0  # fmt: skip
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in results[:16]] == [i for _, i in validation[:16]]
    assert all(0.0 <= r["confidence"] <= 1.0 for r in results)
    assert tuned["threshold_from"] == "validation"
    assert all(r["calibrated"] and r["threshold_from"] == "validation" for r in results)
    assert all(r["answered"] == (r["confidence"] >= tuned["threshold"]) for r in results)
    right = [
        (r["id"] == i) if r["answered"] else (r["id"] != i or not i)
        for r, (_, i) in zip(results, validation, strict=True)
    ]
    assert round(sum(right) / len(right), 4) == tuned["accuracy"]
    answer_hit = results[8]  # an answer's text: its cosine to that answer is 1
    assert answer_hit["score"] == 1.0 and answer_hit["answer"] == entries[0][2]
