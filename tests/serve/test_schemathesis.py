"""Schemathesis against a live server's /openapi.json: a few hundred generated requests, valid
(positive) and schema-violating (negative), to every operation of the API. None may get a 5xx;
every error must be the JSON error shape; status codes, content types and bodies must be the
ones the spec documents."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from jiyi.serve.classification import ClassificationService
from jiyi.serve.settings import Settings

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

EXAMPLES = 25  # per operation and generation mode
MIN_REQUESTS = 300


@pytest.fixture(scope="module")
def fuzz_server(start_server: Any, classifier: Any, memory_copy: Callable[[], Path]) -> Any:
    """Every endpoint live (a memory too); limits kept small so explanations stay quick."""
    from jiyi.memory.knn import Memory

    settings = Settings(max_texts=8, max_chars=300, max_wait_ms=2, timeout_s=60)
    return start_server(settings, ClassificationService(classifier, Memory.open(memory_copy())))


def test_generated_requests_never_get_a_server_error(fuzz_server: Any) -> None:
    import requests
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable

    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    session = requests.Session()
    statuses: Counter[int] = Counter()
    by_operation: Counter[str] = Counter()
    problems: list[str] = []

    def send(case: Any) -> None:
        response = case.call(base_url=fuzz_server.url, session=session, timeout=60)
        label = f"{case.method} {case.path}"
        statuses[response.status_code] += 1
        by_operation[label] += 1
        try:  # and the documented status codes, content types and response schemas
            case.validate_response(response, checks=CHECKS)
        except Exception as e:
            problems.append(f"{label} -> {response.status_code}: {str(e)[:400]}")
        if response.status_code >= 500:
            problems.append(f"{label} -> {response.status_code}: {response.text[:300]}")
        elif response.status_code >= 400:
            try:
                error = response.json()["error"]
                assert isinstance(error["code"], str) and isinstance(error["message"], str)
            except (ValueError, KeyError, TypeError, AssertionError):
                problems.append(
                    f"{label} -> {response.status_code} not JSON: {response.text[:200]}"
                )

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)
            run = settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(given(case=strategy)(send))
            with suppress(Unsatisfiable):  # e.g. no invalid request to an operation without input
                run()
    total = sum(statuses.values())
    print(f"schemathesis: {total} requests; statuses {dict(sorted(statuses.items()))}")
    print(f"by operation: {dict(sorted(by_operation.items()))}")
    assert not problems, "\n".join(problems[:20])
    assert total >= MIN_REQUESTS, (total, dict(by_operation))
    assert fuzz_server.app.state.batcher.queued == 0
