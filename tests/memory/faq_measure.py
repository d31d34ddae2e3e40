"""The FAQ examples measured end to end (test_memory_minilm.py on examples/faq,
test_faq_zh_files.py on examples/faq-zh): build the memory as the README says, ask every test
question, score the answers against the test file's ids."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

from jiyi.cli import main
from jiyi.memory import Memory
from jiyi.memory.faq import ask


class FaqScores(NamedTuple):
    precision: float  # answered questions whose entry is the right one
    abstained: float  # out-of-scope questions (empty id) left unanswered
    top1: float  # answerable questions whose best entry is the right one, answered or not


def build_and_score(model: str, faq: Path, output: Path) -> FaqScores:
    """`jiyi memory build MODEL` on FAQ/faq.csv (the answer as payload, the threshold calibrated
    on FAQ/validation.csv) into `output`, then every question of FAQ/test.csv asked."""
    argv = ["memory", "build", model, "--data", str(faq / "faq.csv"), "--text-column",
            "question", "--payload", "answer", "--validation", str(faq / "validation.csv"),
            "--output", str(output)]  # fmt: skip
    assert main(argv) == 0
    with open(faq / "test.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    results = ask(Memory.open(output), [r["question"] for r in rows])
    answered = [(r, g) for r, g in zip(results, rows, strict=True) if r["answered"]]
    precision = sum(r["id"] == g["id"] for r, g in answered) / len(answered)
    out_of_scope = [r for r, g in zip(results, rows, strict=True) if not g["id"]]
    abstained = sum(not r["answered"] for r in out_of_scope) / len(out_of_scope)
    top1 = [r["id"] == g["id"] for r, g in zip(results, rows, strict=True) if g["id"]]
    return FaqScores(precision, abstained, sum(top1) / len(top1))
