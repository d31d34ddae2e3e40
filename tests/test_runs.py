"""jiyi.runs: the run folder's layout, jiyi.json, RUN_DIR -> model/, the task of a run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jiyi import runs
from jiyi.errors import JiyiError


def make_run(root: Path, meta: dict | None, *, nested: bool = True) -> Path:
    folder = root / "model" if nested else root
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}", encoding="utf-8")
    if meta is not None:
        (folder / runs.META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    return root


def test_run_dir_and_model_folder_resolve_to_the_same_folder(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", {"task": "ner"})
    assert runs.model_dir(run) == run / "model"
    assert runs.model_dir(run / "model") == run / "model"
    assert runs.task_of(run) == runs.task_of(run / "model") == "ner"
    assert runs.RUN_FORMAT["meta"] == "model/jiyi.json"


def test_a_folder_without_jiyi_json_has_no_task(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "hf", None, nested=False)
    assert runs.task_of(folder) is None
    assert runs.read_meta(folder) == {}
    assert runs.task_of(tmp_path / "missing") is None


def test_model_dir_refuses_a_folder_without_a_model(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(JiyiError, match=r"^--model .*empty: not a jiyi run directory"):
        runs.model_dir(tmp_path / "empty", flag="--model")
    with pytest.raises(JiyiError, match=r"^RUN_DIR .*nowhere: no such folder"):
        runs.model_dir(tmp_path / "nowhere")


def test_broken_jiyi_json_names_the_file(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", None)
    (run / "model" / runs.META_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(JiyiError, match=r"model/jiyi\.json: not valid JSON"):
        runs.task_of(run)
    (run / "model" / runs.META_FILE).write_text("[1]", encoding="utf-8")
    with pytest.raises(JiyiError, match="expected a JSON object"):
        runs.read_meta(run / "model")


def test_write_meta_round_trips_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    runs.write_meta(tmp_path, {"task": "qa", "max_length": 64})
    assert runs.read_meta(tmp_path) == {"task": "qa", "max_length": 64}
    assert [p.name for p in tmp_path.iterdir()] == [runs.META_FILE]


def test_open_run_refuses_another_tasks_run(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", {"task": "qa", "labels": []})
    folder, meta = runs.open_run(run, "qa", "question-answering")
    assert folder == run / "model" and meta["task"] == "qa"
    with pytest.raises(JiyiError, match=r"not a NER run \(its jiyi.json says task 'qa'\)"):
        runs.open_run(run, "ner", "NER")


def test_runs_and_tasks_import_no_torch() -> None:
    code = (
        "import sys, jiyi.runs, jiyi.tasks; "
        "print(sorted(m for m in ('torch', 'numpy', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
