"""Model work outside the batcher's worker runs on passing threads (`jiyi.serve.pools`): a
service loads and warms up off the caller's thread, and each explanation runs on a thread of
its own, so no lasting thread but the batcher's keeps an OpenMP pool."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from jiyi.errors import JiyiError
from jiyi.serve.classification import ClassificationService
from jiyi.serve.pools import on_passing_thread
from jiyi.serve.services import load_service


def test_a_passing_thread_gives_back_the_result_or_the_error() -> None:
    caller = threading.get_ident()
    seen: list[int] = []
    assert on_passing_thread(lambda: seen.append(threading.get_ident()) or 42) == 42
    assert seen and seen[0] != caller

    def fails() -> None:
        raise JiyiError("--model x: not found.")

    with pytest.raises(JiyiError, match="--model x: not found"):
        on_passing_thread(fails)


def test_a_service_loads_and_warms_up_off_the_callers_thread(
    trained_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran_on: list[int] = []
    real_predict = ClassificationService.load_predictor

    def recording(run_dir: str, threads: int | None = None) -> Any:
        predictor = real_predict(run_dir, threads)
        predict = predictor.predict

        def predict_recorded(texts: list[str], *args: Any) -> Any:
            ran_on.append(threading.get_ident())
            return predict(texts, *args)

        predictor.predict = predict_recorded
        return predictor

    monkeypatch.setattr(ClassificationService, "load_predictor", staticmethod(recording))
    service = load_service(trained_run)
    assert ran_on, "the service was not warmed up"
    assert threading.get_ident() not in ran_on  # the warm-up ran on a passing thread
    assert service.labels


def test_each_explanation_runs_on_a_thread_of_its_own() -> None:
    import asyncio

    from jiyi.serve.explainer import ExplainWorker

    worker = ExplainWorker(max_queue=4)
    worker.start()
    try:

        async def two() -> list[threading.Thread]:
            return [await worker.submit(threading.current_thread, deadline_s=10) for _ in range(2)]

        first, second = asyncio.run(two())
    finally:
        worker.close()
    assert first is not second  # a passing thread each, not the worker's lasting one
