"""Every workflow main starts has an execution timeout: its own longest run (all attempts of its steps, the
waits between them, a submit-poll job's deadline) plus its final report and a margin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.common import RetryPolicy

from integrations.echo.workflows.workflows import with_delay
from services.main.integrations_router import load_api
from services.shared.discovery import discover
from services.shared.settings import Env, SettingsError
from services.shared.submit_poll import DEADLINE_SECONDS, PollPolicy
from services.shared.workflow_kit import EXECUTION_MARGIN, REPORT, Step, execution_timeout

from .poll_app.workflows import JOB
from .sync_app.workflows import CALL, CALL_WITH_DEADLINE, DEADLINE


def test_a_step_lasts_at_most_its_attempts_and_the_waits_between_them() -> None:
    retry = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2, maximum_attempts=4)
    step = Step("a", start_to_close=timedelta(seconds=10), retry=retry)
    assert step.longest == timedelta(seconds=4 * 10 + 1 + 2 + 4)
    capped = Step("a", start_to_close=timedelta(seconds=10), retry=RetryPolicy(maximum_interval=timedelta(seconds=3)))
    with pytest.raises(ValueError, match="unlimited attempts need a schedule_to_close"):
        _ = capped.longest
    assert CALL_WITH_DEADLINE.step.longest == DEADLINE
    # Default maximum interval: 100 times the first.
    many = Step("a", start_to_close=timedelta(seconds=1), retry=RetryPolicy(maximum_attempts=10))
    assert many.longest == timedelta(seconds=10 + 1 + 2 + 4 + 8 + 16 + 32 + 64 + 100 + 100)


def test_a_sync_call_workflow_gets_its_call_a_final_report_and_the_margin() -> None:
    assert CALL.execution_timeout == CALL.step.longest + REPORT.longest + EXECUTION_MARGIN
    assert with_delay(3600).execution_timeout - with_delay(0).execution_timeout == 5 * timedelta(hours=1)


def test_a_submit_poll_workflow_gets_its_submits_the_longest_deadline_and_what_follows() -> None:
    submit, query, cancel, copy = JOB.steps()
    submits = JOB.submit_attempts * submit.longest + timedelta(seconds=2 + 4)
    polling = timedelta(seconds=DEADLINE_SECONDS) + query.longest + max(copy.longest, cancel.longest)
    assert JOB.execution_timeout == execution_timeout(submits + polling)


def test_a_worker_may_not_poll_longer_than_the_execution_timeout_allows() -> None:
    assert PollPolicy.from_env(Env({"ARK_DEADLINE_SECONDS": "60"}), "ARK").deadline_seconds == 60
    with pytest.raises(SettingsError, match="ARK_DEADLINE_SECONDS is 7201: at most 7200"):
        PollPolicy.from_env(Env({"ARK_DEADLINE_SECONDS": "7201"}), "ARK")


def test_every_integration_declares_its_workflows_execution_timeout() -> None:
    for integration in discover(blacklist=()).integrations:
        timeout = load_api(integration).execution_timeout
        assert timeout >= REPORT.longest + EXECUTION_MARGIN, integration.name
