"""An FAQ memory built without validation questions (tiny model, through the CLI): `memory build`
records an uncalibrated threshold, the lower quartile of each stored question's score on its
nearest entry with another answer, and `jiyi ask` applies it and says it is uncalibrated."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import FILLER, NEGATIVE, POSITIVE
from jiyi.cli import main as run_cli
from jiyi.memory import Memory

WORDS = POSITIVE + NEGATIVE + FILLER


def phrase(i: int, n: int = 4) -> str:
    """A fixed phrase of tiny-vocabulary words: phrase(0) != phrase(1)."""
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n))


ENTRIES = [(f"e{i}", phrase(2 * i), f"Answer {i}") for i in range(10)]


def write_faq(path: Path, entries: list[tuple[str, str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("id", "question", "answer"), *entries])
    return path


def build(model: Path, faq: Path, out: Path, *extra: str) -> Path:
    argv = ["memory", "build", str(model), "--data", str(faq), "--text-column", "question",
            "--payload", "answer", "--output", str(out), *extra]  # fmt: skip
    assert run_cli(argv) == 0
    return out


def ask_json(mem: Path, questions: list[str], capsys, *extra: str) -> list[dict]:
    capsys.readouterr()
    assert run_cli(["ask", str(mem), *questions, "--json", *extra]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def lower_quartile_of_nearest_other(mem: Path) -> float:
    """The reference: every stored question against every question with another answer (numpy
    on the stored vectors, not the index)."""
    rows = Memory.open(mem).state.rows
    answers = np.array([p["answer"] for p in rows.payloads])
    cosines = rows.vectors() @ rows.vectors().T  # (N, N)
    cosines[answers[:, None] == answers[None, :]] = -np.inf
    return float(np.quantile(cosines.max(axis=1), 0.25))


@pytest.fixture
def faq_memory(tiny_model_dir: Path, tmp_path: Path, capsys) -> Path:
    mem = build(tiny_model_dir, write_faq(tmp_path / "faq.csv", ENTRIES), tmp_path / "faq")
    assert "UNCALIBRATED (no --validation)" in capsys.readouterr().err
    return mem


def test_build_records_the_lower_quartile_of_nearest_other_entry_scores(faq_memory: Path) -> None:
    settings = json.loads((faq_memory / "memory.json").read_text())["ask"]
    assert settings["threshold_from"] == "entries" and settings["threshold_on"] == "score"
    assert settings["confidence"] is None and settings["n_entries"] == 10
    assert settings["threshold"] == pytest.approx(lower_quartile_of_nearest_other(faq_memory))
    spread = settings["nearest_other"]
    assert spread["min"] <= settings["threshold"] <= spread["median"] <= spread["max"] < 1.0


def test_ask_answers_above_the_uncalibrated_threshold_and_abstains_below(
    faq_memory: Path, capsys
) -> None:
    threshold = json.loads((faq_memory / "memory.json").read_text())["ask"]["threshold"]
    stored = [q for _, q, _ in ENTRIES]
    others = [phrase(100 + k, 3) for k in range(20)] + ["unrelated words", "zzz qqq xxx"]
    results = ask_json(faq_memory, stored + others, capsys)
    assert all(r["threshold"] == threshold for r in results)
    assert all(r["threshold_from"] == "entries" and r["calibrated"] is False for r in results)
    assert all(r["answered"] == (r["score"] >= threshold) for r in results)
    # a stored question is its own entry (cosine 1): answered with that entry's answer
    assert [r["answer"] for r in results[:10]] == [a for _, _, a in ENTRIES]
    abstained = [r for r in results if not r["answered"]]
    assert abstained and all(r["answer"] is None for r in abstained)

    # the plain output says "no confident answer" and that the threshold is uncalibrated
    assert run_cli(["ask", str(faq_memory), abstained[0]["question"], stored[0]]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["no confident answer", "Answer 0"]
    assert err.count("uncalibrated: from the FAQ's own questions") == 2

    given = ask_json(faq_memory, [abstained[0]["question"]], capsys, "--threshold", "-1")
    assert given[0]["answered"] and given[0]["threshold_from"] == "given"


def test_rows_sharing_an_answer_are_one_entry(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Each question stored twice (two ids, one answer): its nearest OTHER entry is still
    another answer's question, not its own copy (cosine 1), so the threshold is unchanged."""
    once = build(tiny_model_dir, write_faq(tmp_path / "once.csv", ENTRIES), tmp_path / "once")
    twice = [(f"{i}-{copy}", q, a) for i, q, a in ENTRIES for copy in ("a", "b")]
    mem = build(tiny_model_dir, write_faq(tmp_path / "twice.csv", twice), tmp_path / "twice")
    settings = json.loads((mem / "memory.json").read_text())["ask"]
    assert settings["n_entries"] == 10 and settings["n_measured"] == 20
    assert settings["threshold"] == pytest.approx(lower_quartile_of_nearest_other(mem))
    # the same spread as once, each value counted twice
    once_spread = json.loads((once / "memory.json").read_text())["ask"]["nearest_other"]
    for key in ("min", "median", "max"):
        assert settings["nearest_other"][key] == pytest.approx(once_spread[key], abs=1e-4)
    assert settings["nearest_other"]["max"] < 0.999  # not a copy of itself


def test_with_a_query_prompt_the_questions_are_asked_as_queries(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Rows embedded with one prompt and questions with another (as for e5 models): each stored
    question is re-embedded as `ask` would embed it, then scored against the stored rows."""
    faq = write_faq(tmp_path / "faq.csv", ENTRIES)
    prompts = ("--prompt", "passage: ", "--query-prompt", "query: ")
    mem = build(tiny_model_dir, faq, tmp_path / "faq", *prompts)
    memory = Memory.open(mem)
    rows = memory.state.rows
    cosines = memory.embed(rows.texts) @ rows.vectors().T  # (N, N) query x row
    np.fill_diagonal(cosines, -np.inf)
    expected = float(np.quantile(cosines.max(axis=1), 0.25))
    threshold = json.loads((mem / "memory.json").read_text())["ask"]["threshold"]
    assert threshold == pytest.approx(expected, abs=1e-6)
    assert threshold != pytest.approx(lower_quartile_of_nearest_other(mem), abs=1e-6)


def test_one_answer_gives_no_threshold(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    faq = write_faq(tmp_path / "faq.csv", [("a", phrase(0), "Same"), ("b", phrase(2), "Same")])
    mem = build(tiny_model_dir, faq, tmp_path / "faq")
    assert "ask threshold: none" in capsys.readouterr().err
    [r] = ask_json(mem, ["unrelated words"], capsys)
    assert r["answered"] and r["threshold"] is None and r["threshold_from"] is None


def test_tune_with_validation_replaces_the_uncalibrated_threshold(
    faq_memory: Path, tmp_path: Path, capsys
) -> None:
    val = tmp_path / "val.csv"
    with open(val, "w", newline="", encoding="utf-8") as f:
        rows = [(q, i) for i, q, _ in ENTRIES] + [(phrase(100 + k, 3), "") for k in range(4)]
        csv.writer(f).writerows([("question", "id"), *rows])
    argv = [
        "memory",
        "tune",
        str(faq_memory),
        "--validation",
        str(val),
        "--text-column",
        "question",
    ]
    assert run_cli(argv) == 0
    settings = json.loads((faq_memory / "memory.json").read_text())["ask"]
    assert settings["threshold_from"] == "validation" and settings["n_validation"] == 14
    [r] = ask_json(faq_memory, [ENTRIES[0][1]], capsys)
    assert r["calibrated"] is True and r["threshold_from"] == "validation"
    assert r["threshold"] == settings["threshold"]


def test_the_server_answer_says_the_threshold_is_uncalibrated(
    faq_memory: Path, trained_run: Path
) -> None:
    """POST /v1/ask's answer (the service's `ask`, checked against its response schema)."""
    pytest.importorskip("fastapi")
    from jiyi.predict import load
    from jiyi.serve.classification import ClassificationService
    from jiyi.serve.schemas import AskResponse

    service = ClassificationService(load(trained_run), Memory.open(faq_memory))
    answer = AskResponse.model_validate(service.ask(ENTRIES[3][1], 1)).model_dump()
    assert answer["answered"] and answer["answer"] == "Answer 3"
    assert answer["threshold_from"] == "entries" and answer["calibrated"] is False
    assert (
        answer["threshold"]
        == json.loads((faq_memory / "memory.json").read_text())["ask"]["threshold"]
    )
