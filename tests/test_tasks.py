"""The task registry's contract, for every registered task: its adapter has every function, a run
folder of the task resolves to it, and every verb it does not support is refused through the real
CLI with one message and exit 2. The capability matrix of docs/tasks.md is the registry's."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from jiyi import runs
from jiyi.cli import main
from jiyi.errors import JiyiError
from jiyi.tasks import (
    ADAPTER_FUNCTIONS,
    CAPABILITIES,
    DEFAULT_TASK,
    PRETRAINING,
    TASKS,
    TaskSpec,
    adapter,
    capability_matrix,
    get_task,
    refusal_message,
    refuse_unless,
    task_of_run,
)

TASKS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "tasks.md"
EVERY_RUN = [*TASKS.values(), PRETRAINING]


def stub_run(root: Path, task: str | None) -> Path:
    """RUN_DIR/model with an empty config.json and a jiyi.json naming `task` (none: no jiyi.json):
    enough for a verb to find what the run is, not to load a model."""
    model = root / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}", encoding="utf-8")
    if task is not None:
        runs.write_meta(model, {"task": task})
    return root


@pytest.mark.parametrize("spec", TASKS.values(), ids=list(TASKS))
def test_the_adapter_has_every_function(spec: TaskSpec) -> None:
    module = adapter(spec)
    for name in ADAPTER_FUNCTIONS:
        assert callable(getattr(module, name, None)), f"{spec.adapter_module} lacks {name}"
    assert list(inspect.signature(module.predict).parameters) == ["args"]
    assert list(inspect.signature(module.evaluate).parameters) == ["args"]
    assert list(inspect.signature(module.show_metrics).parameters) == ["metrics", "title"]


@pytest.mark.parametrize("spec", TASKS.values(), ids=list(TASKS))
def test_a_descriptor_is_consistent(spec: TaskSpec) -> None:
    assert get_task(spec.name) is spec
    assert spec.default_metric in spec.metrics
    assert len(set(spec.metrics)) == len(spec.metrics)
    assert spec.can("train") and spec.can("predict") and spec.can("evaluate")
    from jiyi.config import TrainConfig

    fields = set(TrainConfig.__dataclass_fields__)
    assert set(spec.own_flags) <= fields
    assert TrainConfig(task=spec.name).metric == spec.default_metric


@pytest.mark.parametrize("spec", EVERY_RUN, ids=[s.name for s in EVERY_RUN])
def test_a_run_folder_resolves_to_its_task(spec: TaskSpec, tmp_path: Path) -> None:
    run = stub_run(tmp_path / "run", spec.name)
    assert task_of_run(run) is spec
    assert task_of_run(run / "model") is spec
    assert runs.task_of(run) == spec.name


def test_a_folder_without_jiyi_json_is_a_classifier_and_an_unknown_task_is_named(
    tmp_path: Path,
) -> None:
    assert task_of_run(stub_run(tmp_path / "plain", None)) is DEFAULT_TASK
    run = stub_run(tmp_path / "future", "speech")
    with pytest.raises(JiyiError, match=r"model/jiyi\.json: task 'speech' is not one"):
        task_of_run(run)
    with pytest.raises(JiyiError, match=r"--task 'speech': unknown task; choose one of"):
        get_task("speech")


def refusal_argv(capability: str, spec: TaskSpec, run: Path, tmp_path: Path) -> list[str]:
    """The command line that asks `spec`'s run for `capability`."""
    data = tmp_path / "data.csv"
    data.write_text("text,label,lang\nhe is good,pos,en\n", encoding="utf-8")
    out = str(tmp_path / "out")
    files = ["--train", str(data), "--validation", str(data), "--output", out]
    return {
        "predict": ["predict", str(run), "--input", str(data)],
        "evaluate": ["evaluate", str(run), "--data", str(data)],
        "slice_by": ["evaluate", str(run), "--data", str(data), "--slice-by", "lang"],
        "memory": ["predict", str(run), "--input", str(data), "--memory", out],
        "bias": ["bias", str(run), "--data", str(data)],
        "compress": ["compress", str(run), "--method", "dynamic-int8", "--output", out],
        "curve": ["curve", "--task", spec.name, "--model", str(run), *files],
    }[capability]


VERBS = {  # capability -> how its refusal names the verb
    "predict": "jiyi predict",
    "evaluate": "jiyi evaluate",
    "slice_by": "--slice-by",
    "memory": "--memory",
    "bias": "jiyi bias",
    "compress": "jiyi compress",
    "curve": "jiyi curve",
}
REFUSALS = [
    (spec, capability)
    for spec in EVERY_RUN
    for capability in VERBS
    if not spec.can(capability)
    and not (spec is PRETRAINING and capability in ("slice_by", "memory", "curve"))
]  # a pretraining run is refused by predict / evaluate before their flags; a curve is no run


@pytest.mark.parametrize(
    ("spec", "capability"), REFUSALS, ids=[f"{s.name}-{c}" for s, c in REFUSALS]
)
def test_every_capability_refusal_is_one_message_and_exit_2(
    spec: TaskSpec, capability: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = stub_run(tmp_path / "run", spec.name)
    capsys.readouterr()
    assert main(refusal_argv(capability, spec, run, tmp_path)) == 2
    err = capsys.readouterr().err
    expected = refusal_message(spec, capability, VERBS[capability])
    assert err.endswith(f": error: {expected}\n"), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"not {spec.name} (" in expected
    assert not (tmp_path / "out").exists()


def test_a_refusal_names_what_applies_and_what_the_task_takes() -> None:
    ner = get_task("ner")
    message = refusal_message(ner, "bias", "jiyi bias")
    takers = [s.name for s in TASKS.values() if s.bias]
    assert message.startswith(f"jiyi bias applies to {' and '.join(takers)} runs, not ner (")
    taken = [CAPABILITIES[c] for c in CAPABILITIES if ner.can(c)]
    assert f"a ner run takes: {', '.join(taken)}" in message
    assert "fine-tune it first" in refusal_message(PRETRAINING, "predict", "jiyi predict")
    refuse_unless(get_task("classification"), "bias", "jiyi bias")  # supported: no error
    with pytest.raises(ValueError):
        ner.can("fly")


def test_the_docs_capability_matrix_is_the_registrys() -> None:
    text = TASKS_PAGE.read_text(encoding="utf-8")
    matrix = capability_matrix()
    assert matrix in text, "docs/tasks.md's capability matrix differs: paste capability_matrix()"
    header = [cell.strip(" |`") for cell in matrix.splitlines()[0].split(" | ")]
    assert header == ["task", *CAPABILITIES.values()]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in matrix.splitlines()[2:]}
    assert set(rows) == set(TASKS)
    assert rows["seq2seq"].endswith("| no |")  # not served: refused at start-up


def test_importing_the_registry_and_the_config_imports_no_torch() -> None:
    code = (
        "import sys, jiyi.tasks, jiyi.runs, jiyi.config; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
