"""Schemathesis against a live server's /openapi.json: a few hundred generated requests, valid
(positive) and schema-violating (negative), to every operation of the API. None may get a 5xx;
every error must be the JSON error shape; status codes, content types and bodies must be the
ones the spec documents."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import fuzz

from jiyi.serve.classification import ClassificationService
from jiyi.serve.settings import Settings

pytest.importorskip("schemathesis")

EXAMPLES = 25  # per operation and generation mode
MIN_REQUESTS = 300


@pytest.fixture(scope="module")
def fuzz_server(start_server: Any, classifier: Any, memory_copy: Callable[[], Path]) -> Any:
    """Every endpoint live (a memory too); limits kept small so explanations stay quick."""
    from jiyi.memory.knn import Memory

    settings = Settings(max_texts=8, max_chars=300, max_wait_ms=2, timeout_s=60)
    return start_server(settings, ClassificationService(classifier, Memory.open(memory_copy())))


def test_generated_requests_never_get_a_server_error(fuzz_server: Any) -> None:
    found = fuzz(fuzz_server.url, EXAMPLES)
    assert found.operations >= 12
    total = sum(found.statuses.values())
    print(f"schemathesis: {total} requests; statuses {dict(sorted(found.statuses.items()))}")
    print(f"by operation: {dict(sorted(found.by_operation.items()))}")
    assert not found.problems, "\n".join(found.problems[:20])
    assert total >= MIN_REQUESTS, (total, dict(found.by_operation))
    assert fuzz_server.app.state.batcher.queued == 0
