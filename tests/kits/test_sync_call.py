"""The sync-call kit through a minimal integration (``sync_app``): its workflow in Temporal's time-skipping
environment with the production sandbox, its real activity on the activity kit, a provider that speaks in HTTP
statuses and in 200 envelopes, main's report API and object storage as fakes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from services.shared.sync_call import SyncCallWorkflow
from services.shared.tasks import ReportOutcome, StoredObject, TaskEnvelope, TaskError, TaskReport
from tests.fakes import Reports
from tests.stack import wait_for
from tests.temporal_env import serving

from .sync_app.activities import AppActivities
from .sync_app.provider import Provider
from .sync_app.schemas import CALL_ACTIVITY, AppCallInput, AppInput, Called, Job
from .sync_app.workflows import DEADLINE, KitSyncDeadlineWorkflow, KitSyncWorkflow


class Scheduled(AppActivities):
    """The real activity, noting when each attempt started."""

    def __init__(self, reports: Reports, provider: Provider, report_within: float) -> None:
        super().__init__(reports.kit(report_within=report_within), provider.client())
        self.attempts: list[float] = []

    @activity.defn(name=CALL_ACTIVITY)
    async def call(self, input: AppCallInput) -> Called:
        self.attempts.append(activity.info().started_time.timestamp())
        return await super().call(input)


class App:
    def __init__(
        self, env: WorkflowEnvironment, provider: Provider, reports: Reports | None = None, report_within: float = 10
    ) -> None:
        self.env = env
        self.provider = provider
        self.reports = reports or Reports()
        self.activities = Scheduled(self.reports, provider, report_within)
        self.queue = str(uuid.uuid4())

    def worker(self) -> contextlib.AbstractAsyncContextManager[None]:
        return serving(
            self.env.client,
            self.queue,
            [KitSyncWorkflow, KitSyncDeadlineWorkflow],
            [self.reports.report_task, self.activities.call],
        )

    async def start(
        self, workflow: type[SyncCallWorkflow] = KitSyncWorkflow, deadline_in: float | None = None
    ) -> WorkflowHandle[object, TaskReport]:
        """Start the workflow; with ``deadline_in``, for a task whose deadline is that many seconds away by the
        test server's clock (negative: already past)."""
        deadline = None
        if deadline_in is not None:
            deadline = (await self.env.get_current_time()).timestamp() + deadline_in
        return await self.env.client.start_workflow(
            workflow.__name__,
            AppInput(TaskEnvelope("t1", deadline=deadline), Job("a fox")),
            id=str(uuid.uuid4()),
            task_queue=self.queue,
            result_type=TaskReport,
            execution_timeout=timedelta(days=1),
        )

    async def run(self, workflow: type[SyncCallWorkflow] = KitSyncWorkflow) -> TaskReport:
        async with self.worker():
            return await asyncio.wait_for((await self.start(workflow)).result(), 60)

    def gaps(self) -> list[float]:
        return [round(b - a) for a, b in itertools.pairwise(self.activities.attempts)]


async def test_success_reports_running_from_the_activity_then_the_outcome(env: WorkflowEnvironment) -> None:
    app = App(env, Provider())
    result = await app.run()
    assert result.status == "succeeded"
    assert result.result is not None
    assert result.result.objects == {"text": StoredObject("tasks/t1/text.txt", "text/plain", len(b"made: a fox"))}
    assert result.result.data == {"model": "acme-1", "prompt": "a fox"}
    assert app.reports.store.objects == {"tasks/t1/text.txt": (b"made: a fox", "text/plain")}
    assert app.reports.statuses() == ["running", "succeeded"]
    assert app.reports.reports[0] == TaskReport(status="running", progress=0.0, provider_attempts=1)


async def test_an_error_in_a_200_envelope_is_retried_then_succeeds(env: WorkflowEnvironment) -> None:
    app = App(env, Provider(5003, 5003))
    result = await app.run()
    assert result.status == "succeeded"
    assert app.provider.prompts == ["a fox"] * 3
    # Every attempt says running again, with its number: main counts the attempts.
    assert [(r.status, r.provider_attempts) for r in app.reports.sent] == [
        ("running", 1),
        ("running", 2),
        ("running", 3),
        ("succeeded", None),
    ]


async def test_an_http_error_is_retried_after_the_providers_retry_after(env: WorkflowEnvironment) -> None:
    app = App(env, Provider((429, "7"), 503))
    result = await app.run()
    assert result.status == "succeeded"
    # 7 s as the provider asked (the policy's own first interval is 1 s), then the policy's 2 s for a third try.
    assert app.gaps() == [7, 2]


@pytest.mark.parametrize(("script", "code"), [((1001,), "content_rejected"), ((1002,), "provider_auth")])
async def test_a_final_envelope_error_fails_at_once(env: WorkflowEnvironment, script: tuple[int], code: str) -> None:
    app = App(env, Provider(*script))
    result = await app.run()
    assert result.status == "failed"
    assert result.error == TaskError(code, f"Acme said {script[0]}: no", False)
    assert app.provider.prompts == ["a fox"]
    assert app.reports.statuses() == ["running", "failed"]


async def test_a_final_http_answer_fails_at_once_under_the_default_code(env: WorkflowEnvironment) -> None:
    # provider_rejected is not among the integration's final codes, but it is non-retryable.
    app = App(env, Provider(400))
    result = await app.run()
    assert result.error == TaskError("call_failed", "HTTP 400 unavailable", False)
    assert app.provider.prompts == ["a fox"]


async def test_retries_are_bounded_and_the_task_fails_naming_the_last_cause(env: WorkflowEnvironment) -> None:
    app = App(env, Provider(5003, 503, 5007, 5008))
    result = await app.run()
    assert result.error == TaskError(
        "provider_unavailable", "gave up after 3 attempts; last error: Acme said 5007: not now", True
    )
    assert len(app.provider.prompts) == 3
    # Each attempt's running report counts it.
    assert app.reports.statuses() == ["running"] * 3 + ["failed"]


async def test_past_the_deadline_the_task_fails_deadline_exceeded(env: WorkflowEnvironment) -> None:
    # The provider asks for two minutes' patience every time: the third attempt would start past the deadline.
    app = App(env, Provider(*[(503, "120")] * 10))
    result = await app.run(KitSyncDeadlineWorkflow)
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == ("deadline_exceeded", True)
    assert result.error.message.startswith(f"not done within {DEADLINE}; last error: HTTP 503")
    assert len(app.provider.prompts) < 4


# A task with a deadline far ahead waits for its call another way (until it is done or the deadline passes).
@pytest.mark.parametrize("deadline_in", [None, 600])
async def test_cancel_stops_the_call_and_reports_cancelled(env: WorkflowEnvironment, deadline_in: float | None) -> None:
    provider = Provider()
    provider.hold = asyncio.Event()
    app = App(env, provider)
    async with app.worker():
        handle = await app.start(deadline_in=deadline_in)

        async def calling() -> bool:
            return bool(provider.prompts)

        await wait_for(calling, 30, "the provider call")
        assert (await handle.query("task_state", result_type=TaskReport)).status == "running"
        await handle.cancel()
        result = await asyncio.wait_for(handle.result(), 60)
    assert result == TaskReport(status="cancelled", error=TaskError("cancelled", "the task was cancelled"))
    assert app.reports.statuses() == ["running", "cancelled"]
    assert app.reports.store.objects == {}


class Unreachable(Reports):
    """main down: every report from an activity fails, the workflow's final report gets through later."""

    def __init__(self) -> None:
        super().__init__()
        self.tries = 0

    async def report(self, task_id: str, report: TaskReport) -> ReportOutcome:
        if report.status == "running":
            self.tries += 1
            raise ConnectionRefusedError("main is down")
        return await super().report(task_id, report)


async def test_a_running_report_that_cannot_be_delivered_does_not_hold_up_or_fail_the_call(
    env: WorkflowEnvironment,
) -> None:
    reports = Unreachable()
    app = App(env, Provider(), reports, report_within=1.5)
    result = await app.run()
    assert result.status == "succeeded"
    assert app.provider.prompts == ["a fox"]
    # Tried about once a second for its bound, then given up: the task read syncs running from task_state.
    assert 1 <= reports.tries <= 3
    assert reports.statuses() == ["succeeded"]


class Slow(Reports):
    """main slow to answer the running report."""

    async def report(self, task_id: str, report: TaskReport) -> ReportOutcome:
        if report.status == "running":
            await asyncio.sleep(0.5)
        return await super().report(task_id, report)


async def test_the_running_report_is_applied_before_the_final_one_even_when_main_is_slow(
    env: WorkflowEnvironment,
) -> None:
    reports = Slow()
    app = App(env, Provider(), reports)
    assert (await app.run()).status == "succeeded"
    assert reports.statuses() == ["running", "succeeded"]


async def test_past_the_tasks_deadline_the_call_in_flight_is_cancelled_and_the_task_fails(
    env: WorkflowEnvironment,
) -> None:
    provider = Provider()
    provider.hold = asyncio.Event()
    app = App(env, provider)
    async with app.worker():
        handle = await app.start(deadline_in=3)
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == ("deadline_exceeded", True)
    assert result.error.message.startswith("the task was not done by its deadline (")
    assert result.error.message.endswith("; the provider call in flight was cancelled")
    assert provider.prompts == ["a fox"]
    # The attempt stopped before the final report: it stored nothing.
    assert app.reports.store.objects == {}
    assert app.reports.statuses() == ["running", "failed"]


async def test_a_task_whose_deadline_passed_before_its_workflow_started_never_calls(env: WorkflowEnvironment) -> None:
    app = App(env, Provider())
    async with app.worker():
        result = await asyncio.wait_for((await app.start(deadline_in=-1)).result(), 60)
    assert result.error is not None
    assert result.error.code == "deadline_exceeded"
    assert result.error.message.endswith("; the provider was not called")
    assert app.provider.prompts == []
    assert app.reports.statuses() == ["failed"]


async def test_a_call_done_within_the_tasks_deadline_succeeds(env: WorkflowEnvironment) -> None:
    app = App(env, Provider(503))
    async with app.worker():
        result = await asyncio.wait_for((await app.start(deadline_in=600)).result(), 60)
    assert result.status == "succeeded"
    assert len(app.provider.prompts) == 2
