"""Tasks: the registry of descriptors (`registry.py`) and one adapter module per task
(`classification.py` for classification and multilabel, `ner.py`, `qa.py`, `seq2seq.py`).

A fifth task: its package `src/jiyi/<task>/`, an adapter `src/jiyi/tasks/<task>.py` with the
functions of `ADAPTER_FUNCTIONS`, and one `TaskSpec` line in `TASKS`. Importing this package
imports no torch; an adapter is imported by `adapter(spec)` when a verb needs it.
"""

from jiyi.tasks.registry import (
    ADAPTER_FUNCTIONS,
    CAPABILITIES,
    DEFAULT_TASK,
    PRETRAINING,
    TASKS,
    MethodConfig,
    TaskSpec,
    adapter,
    capability_matrix,
    get_task,
    refusal_message,
    refuse_unless,
    task_names,
    task_of_run,
    tasks_with,
)

__all__ = [
    "ADAPTER_FUNCTIONS",
    "CAPABILITIES",
    "DEFAULT_TASK",
    "PRETRAINING",
    "TASKS",
    "MethodConfig",
    "TaskSpec",
    "adapter",
    "capability_matrix",
    "get_task",
    "refusal_message",
    "refuse_unless",
    "task_names",
    "task_of_run",
    "tasks_with",
]
