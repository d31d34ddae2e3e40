"""Which service serves a run: the one place that maps the task registry's `TaskSpec.service`
names to the service classes, and loads a run folder into its service.

>>> service = load_service("runs/ner")            # its jiyi.json says task ner -> NerService
>>> load_service("runs/s2s")                       # task seq2seq: not served
JiyiError: jiyi serve applies to classification, multilabel, ner and qa runs, not seq2seq (...)

A new kind of service: its module (a `jiyi.serve.service.Service` subclass), one line in
`SERVICES`, and its name as the `service` of its task in `jiyi.tasks`.
"""

from pathlib import Path
from typing import Any

from jiyi.errors import JiyiError
from jiyi.serve.classification import ClassificationService
from jiyi.serve.ner import NerService
from jiyi.serve.pools import on_passing_thread
from jiyi.serve.qa import QaService
from jiyi.serve.service import Service
from jiyi.tasks import TaskSpec, refusal_message, task_of_run

SERVICES: dict[str, type[Service]] = {
    "classification": ClassificationService,
    "ner": NerService,
    "qa": QaService,
}


def not_served_message(spec: TaskSpec, run_dir: str | Path) -> str:
    """Why `jiyi serve` refuses a run of `spec`, and what to do with it instead."""
    message = refusal_message(spec, "serve", "jiyi serve")
    if spec.can("predict"):
        message += f" Run `jiyi predict {run_dir}` for its {spec.kind} outputs instead."
    return message


def service_class(run_dir: str | Path, *, memory: bool = False) -> type[Service]:
    """The service of a run (from its task in the registry); a clear refusal (JiyiError, exit
    2) for a task that is not served (seq2seq, pretraining), or for a memory with a run that
    takes none."""
    spec = task_of_run(run_dir)
    if spec.service is None:
        raise JiyiError(not_served_message(spec, run_dir))
    cls = SERVICES[spec.service]
    if memory and not spec.can("memory"):
        raise JiyiError(
            f"--memory: a memory serves classification runs; {run_dir} is a {cls.kind} run. "
            "Serve it without --memory."
        )
    return cls


def load_service(
    run_dir: str | Path,
    memory_dir: str | Path | None = None,
    *,
    threads: int | None = None,
    name: str | None = None,
) -> Service:
    """A run folder (any format; a `jiyi.memory` folder with it where the run takes one)
    loaded, checked and warmed up for `jiyi.serve.app.create_app`, on a passing thread: the
    caller's thread (the server's event loop) keeps no OpenMP pool (`jiyi.serve.pools`)."""
    cls = service_class(run_dir, memory=memory_dir is not None)

    def load() -> Service:
        predictor = cls.load_predictor(str(run_dir), threads)
        memory: Any = None
        if memory_dir is not None:
            from jiyi.memory.knn import Memory

            memory = Memory.open(memory_dir)
        return cls(predictor, memory, name=name)

    return on_passing_thread(load, "jiyi-load")


__all__ = ["SERVICES", "load_service", "not_served_message", "service_class"]
