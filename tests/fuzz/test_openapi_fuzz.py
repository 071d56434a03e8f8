"""Fuzz main's public API from its own OpenAPI schema: no 5xx, no hang, every 4xx structured.

Bounded for CI (``FUZZ_EXAMPLES``, default 20 per operation); a longer run on demand:
``FUZZ_EXAMPLES=500 ./dev test tests/fuzz``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Err

from deploy.local import LocalStack
from tests.stack import USERS

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))


def check(case: Any, base_url: str, seen: set[int]) -> None:
    response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {USERS['alice']}"}, timeout=15)
    where = f"{case.method} {case.formatted_path} {case.query or ''} body={case.body!r:.200}"
    seen.add(response.status_code)
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text}"
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("code"), str), (where, body)
        assert isinstance(body.get("message"), str), (where, body)
        assert isinstance(body.get("retryable"), bool), (where, body)


def test_no_server_errors_and_structured_client_errors(stack: LocalStack) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.main_url}/docs/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise AssertionError(f"main's OpenAPI schema is invalid: {result.err()}")
        operations.append(result.ok())
    labels = {op.label for op in operations}
    # The fuzzer must reach every public route, including each integration's create route.
    assert {"POST /api/integrations/echo/tasks", "GET /api/tasks", "POST /api/tasks/{task_id}/cancel"} <= labels
    seen: set[int] = set()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def fuzz(case: Any) -> None:
            check(case, stack.main_url, seen)

        fuzz()
    # Generated input both got through (tasks created) and was rejected with a named problem.
    assert {202, 400} <= seen, seen
