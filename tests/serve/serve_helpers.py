"""Helpers the serve tests share: the JSON error of a response, Prometheus samples, forward passes
so far, and a schemathesis run over a live server's own /openapi.json.

    from serve_helpers import batches, error_of, fuzz, metric
"""

from __future__ import annotations

import re
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

CHROMIUM = Path("/usr/bin/chromium")  # the page tests drive Debian's chromium through playwright


def error_of(response: httpx.Response, status: int) -> dict[str, str]:
    """The JSON error of a response that must have `status`: {"code", "message"}, no traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body["error"]


def metric(text: str, name: str) -> float:
    """The value of one sample line of a Prometheus text page."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def batches(live: Any) -> tuple[float, float]:
    """(forward passes, items in them) so far, from the live server's /metrics."""
    text = httpx.get(f"{live.url}/metrics").text
    return metric(text, "jiyi_batch_size_count"), metric(text, "jiyi_batch_size_sum")


@dataclass
class Fuzzed:
    """What `fuzz` sent and found."""

    operations: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


def fuzz(url: str, examples: int, *, expected_5xx: frozenset[int] = frozenset()) -> Fuzzed:
    """Schemathesis on the server at `url`, from its own /openapi.json: `examples` positive and
    as many negative requests per operation (derandomized). A problem is a response outside its
    documented status codes, content types or schema, a 5xx other than `expected_5xx` (a NER
    run's documented 501s), or a 4xx that is not the JSON error shape."""
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [status_code_conformance, content_type_conformance, response_schema_conformance]
    if not expected_5xx:
        checks.insert(0, not_a_server_error)
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    session = requests.Session()
    found = Fuzzed()

    def send(case: Any) -> None:
        response = case.call(base_url=url, session=session, timeout=60)
        label = f"{case.method} {case.path}"
        found.statuses[response.status_code] += 1
        found.by_operation[label] += 1
        try:  # and the documented status codes, content types and response schemas
            case.validate_response(response, checks=checks)
        except (Exception, BaseExceptionGroup) as e:  # schemathesis raises a FailureGroup
            found.problems.append(f"{label} -> {response.status_code}: {str(e)[:400]}")
        if response.status_code >= 500 and response.status_code not in expected_5xx:
            found.problems.append(f"{label} -> {response.status_code}: {response.text[:300]}")
        elif response.status_code >= 400:
            try:
                error = response.json()["error"]
                assert isinstance(error["code"], str) and isinstance(error["message"], str)
            except (ValueError, KeyError, TypeError, AssertionError):
                found.problems.append(
                    f"{label} -> {response.status_code} not JSON: {response.text[:200]}"
                )

    operations = [result.ok() for result in schema.get_all_operations()]
    found.operations = len(operations)
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            run = settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(given(case=operation.as_strategy(generation_mode=mode))(send))
            with suppress(Unsatisfiable):  # e.g. no invalid request to an operation without input
                run()
    return found
