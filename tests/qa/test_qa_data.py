"""Reading QA data: SQuAD JSON, HF-style JSONL, CSV; unanswerable questions; answers checked
against their contexts, with errors that name the file, the line and the question id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jiyi.errors import JiyiError
from jiyi.qa.data import Answer, Columns, read_qa

CONTEXT = "Paris is the capital of France."


def squad(path: Path, qas: list[dict]) -> Path:
    doc = {"version": "v2.0", "data": [{"title": "France", "paragraphs": [
        {"context": CONTEXT, "qas": qas}]}]}  # fmt: skip
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


def test_squad_json_with_an_unanswerable_question(tmp_path: Path) -> None:
    path = squad(tmp_path / "dev.json", [
        {"id": "q1", "question": "What is the capital of France?",
         "answers": [{"text": "Paris", "answer_start": 0}, {"text": "Paris", "answer_start": 0}],
         "is_impossible": False},
        {"id": "q2", "question": "What is the capital of Spain?", "answers": [],
         "plausible_answers": [{"text": "Paris", "answer_start": 0}], "is_impossible": True},
    ])  # fmt: skip
    data = read_qa(path)
    first, second = data.examples
    assert (first.id, first.context, first.answers) == ("q1", CONTEXT, [Answer("Paris", 0)] * 2)
    assert first.gold_texts == ["Paris", "Paris"]
    assert (second.id, second.answers, second.gold_texts) == ("q2", [], [])
    lines = path.read_text().splitlines()
    assert '"id": "q2"' in lines[int(second.source.rsplit(" ", 1)[1]) - 1]  # the id's own line


def test_hf_jsonl_and_list_forms(tmp_path: Path) -> None:
    rows = [
        {"id": 7, "question": "capital?", "context": CONTEXT,
         "answers": {"text": ["France"], "answer_start": [24]}},
        {"question": "capital?", "context": CONTEXT,
         "answers": [{"text": "capital", "answer_start": 13}]},
        {"question": "river?", "context": CONTEXT, "answers": {"text": [], "answer_start": []}},
    ]  # fmt: skip
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    examples = read_qa(path).examples
    assert [ex.id for ex in examples] == ["7", "2", "3"]  # no id: the line number
    assert [ex.answers for ex in examples] == [[Answer("France", 24)], [Answer("capital", 13)], []]
    assert examples[0].source == f"{path} line 1"


def test_csv_with_json_answers_and_renamed_columns(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    answers = json.dumps({"text": ["Paris"], "answer_start": [0]}).replace('"', '""')
    path.write_text(
        f'q,passage,gold\ncapital?,{CONTEXT},"{answers}"\nriver?,{CONTEXT},\n', encoding="utf-8"
    )
    data = read_qa(path, columns=Columns(question="q", context="passage", answers="gold"))
    assert [ex.answers for ex in data.examples] == [[Answer("Paris", 0)], []]
    with pytest.raises(JiyiError, match=r'no column "question".*--question-column'):
        read_qa(path)


def test_answer_start_mismatch_names_file_line_and_id(tmp_path: Path) -> None:
    path = squad(tmp_path / "bad.json", [
        {"id": "ok", "question": "a?", "answers": [{"text": "Paris", "answer_start": 0}]},
        {"id": "off-by-one", "question": "b?", "answers": [{"text": "France", "answer_start": 23}]},
    ])  # fmt: skip
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "off-by-one" in t)
    with pytest.raises(JiyiError) as err:
        read_qa(path)
    message = str(err.value)
    assert message.startswith(f"{path} line {line} (id off-by-one): answer 1 'France'")
    assert "answer_start 23 (the context there reads ' Franc')" in message
    assert "the text occurs at character 24" in message and "--on-bad-rows skip" in message
    data = read_qa(path, on_bad_rows="skip")
    assert [ex.id for ex in data.examples] == ["ok"]
    [(where, reason)] = data.skipped
    assert where == f"{path} line {line} (id off-by-one)" and reason.startswith("answer 1 'France'")


def test_bad_rows_in_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    rows = [
        '{"id": "a", "question": "q?", "context": "c1", "answers": []}',
        '{"id": "b", "question": "", "context": "c1", "answers": []}',
        '{"id": "c", "question": "q?", "context": "c1", "answers": {"text": ["x1"]}}',
        '{"id": "d", "question": "q?", "context": "c1", "answers": [], "is_impossible": false}',
        '{"id": "e", "question": "q?", "context": "c1", "answers": [{"text": "c1", "answer_start": 0}], "is_impossible": true}',
        "not json",
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(JiyiError, match=rf'{path} line 2 \(id b\): "question" is empty'):
        read_qa(path)
    data = read_qa(path, on_bad_rows="skip")
    assert [ex.id for ex in data.examples] == ["a", "d"]
    reasons = dict(data.skipped)
    assert 'needs both "text" and "answer_start"' in reasons[f"{path} line 3 (id c)"]
    assert '"is_impossible" is true' in reasons[f"{path} line 5 (id e)"]
    assert "not valid JSON" in reasons[f"{path} line 6"]


def test_prediction_input_needs_no_answers(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(f"question,context\ncapital?,{CONTEXT}\n", encoding="utf-8")
    [ex] = read_qa(path, labelled=False).examples
    assert (ex.question, ex.answers) == ("capital?", None)
    with pytest.raises(JiyiError, match=r'no column "answers".*--answers-column'):
        read_qa(path)
    with pytest.raises(JiyiError, match="no such file"):
        read_qa(tmp_path / "missing.jsonl")
