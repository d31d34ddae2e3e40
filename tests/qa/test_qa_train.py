"""`jiyi train --task qa` end to end on a tiny model: it learns a synthetic extractive task,
writes SQuAD metrics and per-question predictions; `jiyi predict` answers with exact character
offsets and `jiyi evaluate` reproduces the run's test metrics.

The synthetic task (tests/task_data.py): the answer to "what is the code?" is the word after
"the code is" somewhere in a context of filler words; the run is conftest's shared `qa_run`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from jiyi.cli import main
from task_data import CODES, QUESTION, make_rows, write_jsonl


def test_qa_learns_and_writes_its_run(qa_run: Path) -> None:
    assert {p.name for p in qa_run.iterdir()} == {
        "config.yaml",
        "model",
        "metrics.jsonl",
        "eval",
        "logs",
        "README.md",
    }  # fmt: skip  (no checkpoints/: a finished run keeps none unless --keep-final-checkpoint)
    assert {p.name for p in (qa_run / "eval").iterdir()} == {"metrics.json", "predictions.jsonl"}
    metrics = json.loads((qa_run / "eval" / "metrics.json").read_text())
    assert metrics["exact_match"] >= 0.9 and metrics["f1"] >= 0.9, metrics
    assert metrics["n"] == 60 and metrics["has_ans_n"] + metrics["no_ans_n"] == 60
    assert metrics["no_ans_n"] == 7 and metrics["skipped"] == 0
    rows = [json.loads(line) for line in (qa_run / "eval" / "predictions.jsonl").open()]
    assert len(rows) == 60 and set(rows[0]) == {"id", "question", "prediction", "gold", "em", "f1"}
    assert rows[0]["id"] == "q3-0" and rows[0]["question"] == QUESTION
    assert sum(r["em"] for r in rows) / 60 == metrics["exact_match"]
    assert all(r["prediction"] == "" for r in rows if r["gold"] == [] and r["em"] == 1)
    meta = json.loads((qa_run / "model" / "jiyi.json").read_text())
    assert meta["task"] == "qa"
    assert (meta["max_length"], meta["stride"]) == (48, 10)  # stride default: (48 - 24 - 3) // 2
    assert (meta["max_answer_length"], meta["null_threshold"]) == (30, 0.0)
    events = [json.loads(line) for line in (qa_run / "metrics.jsonl").open()]
    assert events[0]["event"] == "start" and events[0]["train_windows"] > 300  # long contexts
    evals = [e for e in events if e["event"] == "eval"]
    assert len(evals) == 4 and {"exact_match", "f1", "has_ans_f1", "no_ans_f1"} <= set(evals[0])
    assert meta["validation"]["f1"] == max(e["f1"] for e in evals)
    from transformers import AutoModelForQuestionAnswering

    loaded = AutoModelForQuestionAnswering.from_pretrained(qa_run / "model")
    assert loaded.qa_outputs.out_features == 2


def test_predict_answers_with_exact_offsets(
    qa_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    long_context = " ".join(["the film was a story with plot and actors"] * 5)
    contexts = [
        "the film was quite really and the code is kilo and the music was very.",
        long_context + " then the code is tango.",  # the answer in a later window
        "the film was quite really and the music was very.",  # no answer
    ]
    path = tmp_path / "in.jsonl"
    path.write_text(
        "".join(json.dumps({"question": QUESTION, "context": c}) + "\n" for c in contexts)
    )
    capsys.readouterr()
    assert main(["predict", str(qa_run), "--input", str(path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [set(r) for r in rows] == [{"question", "answer", "start", "end", "score"}] * 3
    assert [r["answer"] for r in rows] == ["kilo", "tango", ""]
    assert {"kilo", "tango"} <= set(CODES)
    for row, context in zip(rows[:2], contexts[:2], strict=True):
        assert context[row["start"] : row["end"]] == row["answer"]
        assert 0 < row["score"] <= 1
    assert (rows[2]["start"], rows[2]["end"]) == (None, None)
    # CSV input, to a file; the Python API gives the same rows
    csv = tmp_path / "in.csv"
    csv.write_text("question,context\n" + "".join(f'"{QUESTION}","{c}"\n' for c in contexts))
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(qa_run), "--input", str(csv), "--output", str(out)]) == 0
    assert [json.loads(line) for line in out.open()] == rows
    # JSON Lines on stdin
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(path.read_bytes())))
    assert main(["predict", str(qa_run)]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == rows
    from jiyi.qa.predict import QuestionAnswerer

    assert QuestionAnswerer(qa_run).answer([QUESTION] * 3, contexts) == rows
    forced = QuestionAnswerer(qa_run, null_threshold=1e9).answer([QUESTION], contexts[2:])
    assert (
        forced[0]["answer"] != ""
        and forced[0]["answer"] == contexts[2][forced[0]["start"] : forced[0]["end"]]
    )


def test_evaluate_matches_the_test_metrics(
    qa_run: Path, qa_setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, data = qa_setup
    at_training = json.loads((qa_run / "eval" / "metrics.json").read_text())
    again = tmp_path / "again"
    argv = ["evaluate", str(qa_run), "--data", str(data / "test.jsonl"), "--output", str(again)]
    assert main(argv) == 0
    assert "exact match" in capsys.readouterr().err
    assert json.loads((again / "metrics.json").read_text()) == at_training
    assert (again / "predictions.jsonl").read_text() == (
        qa_run / "eval" / "predictions.jsonl"
    ).read_text()


def test_squad_json_training_with_a_carved_validation(
    qa_setup: tuple[Path, Path], tmp_path: Path
) -> None:
    model, _ = qa_setup
    rows = make_rows(40, 5)
    doc = {"data": [{"title": "t", "paragraphs": [
        {"context": r["context"], "qas": [{"id": r["id"], "question": r["question"],
         "answers": [{"text": t, "answer_start": s} for t, s in
                     zip(r["answers"]["text"], r["answers"]["answer_start"], strict=True)],
         "is_impossible": not r["answers"]["text"]}]} for r in rows]}]}  # fmt: skip
    squad = tmp_path / "train.json"
    squad.write_text(json.dumps(doc), encoding="utf-8")
    out = tmp_path / "run"
    argv = ["train", "--task", "qa", "--model", str(model), "--train", str(squad)]
    argv += ["--output", str(out), "--max-steps", "3", "--batch-size", "8", "--max-length", "48"]
    argv += ["--threads", "1", "--stride", "6", "--max-answer-length", "5"]
    assert main(argv) == 0
    start = json.loads((out / "metrics.jsonl").open().readline())
    assert (start["n_train"], start["n_validation"]) == (36, 4)
    meta = json.loads((out / "model" / "jiyi.json").read_text())
    assert (meta["stride"], meta["max_answer_length"]) == (6, 5)


def test_bad_answer_start_names_the_row(
    qa_setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, _ = qa_setup
    rows = make_rows(20, 6)
    rows[4]["answers"]["answer_start"] = [rows[4]["answers"]["answer_start"][0] + 1]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    argv = ["train", "--task", "qa", "--model", str(model), "--train", str(path)]
    argv += ["--max-steps", "2", "--max-length", "48", "--threads", "1"]
    assert main([*argv, "--output", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert (
        f"{path} line 5 (id q6-4): answer 1 '{rows[4]['answers']['text'][0]}' does not match" in err
    )
    assert "Traceback" not in err and not (tmp_path / "a").exists()
    assert main([*argv, "--output", str(tmp_path / "b"), "--on-bad-rows", "skip"]) == 0
    assert "skipped 1 bad questions of train" in capsys.readouterr().err


def test_bad_qa_flags_are_named(
    qa_setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, data = qa_setup
    argv = ["train", "--task", "qa", "--model", str(model), "--train", str(data / "train.jsonl")]
    argv += ["--output", str(tmp_path / "x")]
    for extra, flag in (
        (["--max-length", "48", "--stride", "21"], "--stride 21 must be smaller than 21"),
        (["--max-answer-length", "0"], "--max-answer-length"),
        (["--null-threshold", "nan"], "--null-threshold"),
        (["--metric", "accuracy"], "--metric"),
        (["--augment", "all"], "--augment"),
        (["--answers-column", "gold"], "--answers-column"),
    ):
        assert main([*argv, *extra]) == 2, extra
        assert flag in capsys.readouterr().err
