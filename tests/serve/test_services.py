"""Which service serves a run: `jiyi.serve.services` asks the task registry (`TaskSpec.service`)
and nothing else. Stub run folders (a jiyi.json and an empty config.json, no weights) are enough:
the choice, and every refusal, happens before anything is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jiyi.cli import main as run_cli
from jiyi.errors import JiyiError
from jiyi.serve import cli as serve_cli
from jiyi.serve.classification import ClassificationService
from jiyi.serve.ner import NerService
from jiyi.serve.qa import QaService
from jiyi.serve.service import Service
from jiyi.serve.services import SERVICES, service_class
from jiyi.tasks import PRETRAINING, TASKS


def stub_run(root: Path, task: str | None) -> Path:
    """RUN_DIR/model with an empty config.json and, unless `task` is None, a jiyi.json."""
    (root / "model").mkdir(parents=True)
    (root / "model" / "config.json").write_text("{}", encoding="utf-8")
    if task is not None:
        (root / "model" / "jiyi.json").write_text(json.dumps({"task": task}), encoding="utf-8")
    return root


def test_every_registered_service_has_its_class() -> None:
    served = {spec.service for spec in TASKS.values() if spec.service is not None}
    assert served == set(SERVICES)
    for name, cls in SERVICES.items():
        assert issubclass(cls, Service) and cls is not Service, name
        for method in ("load_predictor", "predict", "info", "describe", "add_routes"):
            assert getattr(cls, method) is not getattr(Service, method), (name, method)


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("classification", ClassificationService),
        ("multilabel", ClassificationService),
        ("ner", NerService),
        ("qa", QaService),
        (None, ClassificationService),  # a plain Hugging Face folder: a text classifier
    ],
)
def test_a_run_is_served_by_its_tasks_service(
    task: str | None, expected: type, tmp_path: Path
) -> None:
    assert service_class(stub_run(tmp_path / "run", task)) is expected


@pytest.mark.parametrize(("task", "kind"), [("ner", "NER"), ("qa", "QA")])
def test_a_memory_is_refused_for_a_run_that_takes_none(
    task: str, kind: str, tmp_path: Path
) -> None:
    run = stub_run(tmp_path / "run", task)
    with pytest.raises(JiyiError, match=f"--memory: .* is a {kind} run") as e:
        service_class(run, memory=True)
    assert "without --memory" in str(e.value)
    assert service_class(run) is SERVICES[task]


@pytest.mark.parametrize(
    ("task", "advice"),
    [
        ("seq2seq", "Run `jiyi predict {run}` for its seq2seq outputs"),
        (PRETRAINING.name, "jiyi train --model"),
    ],
)
def test_cli_refuses_a_run_whose_task_is_not_served(
    task: str, advice: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """seq2seq and pretraining runs have no service: one message naming the task, what jiyi
    serve does serve, and what to do instead; exit 2, before anything is loaded."""
    run = stub_run(tmp_path / "run", task)
    assert run_cli(["serve", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"not {task}" in err and advice.format(run=run) in err, err
    assert "classification, multilabel, ner and qa runs" in err
    assert serve_cli.main([str(run), "--memory", str(tmp_path)]) == 2  # the task comes first
    assert f"not {task}" in capsys.readouterr().err
