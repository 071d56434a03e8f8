"""The submit-poll kit through a minimal integration (``poll_app``): its workflows in Temporal's time-skipping
environment with the production sandbox, its real activities on the activity kit, an in-process provider, main's
report API and object storage as fakes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from services.shared.manifest import ProviderLimits
from services.shared.outbound import Outbound
from services.shared.submit_poll import CALLBACK_SIGNAL, REFRESH_UPDATE, CallbackHint, JobRef, PollPolicy
from services.shared.tasks import ReportOutcome, StoredObject, TaskEnvelope, TaskError, TaskReport
from tests.fakes import Reports
from tests.stack import wait_for
from tests.temporal_env import serving

from .poll_app.activities import AppActivities
from .poll_app.provider import LINKS, Provider
from .poll_app.schemas import NAMES, AppInput, ProviderJob, Request
from .poll_app.workflows import KitPollKeyedWorkflow, KitPollTightWorkflow, KitPollWorkflow

FAST = PollPolicy(initial_seconds=5, backoff=2, max_seconds=20, deadline_seconds=3600)
# Polls far apart: only a refresh or a callback makes the workflow look before the test is over.
SLOW = PollPolicy(initial_seconds=3600, backoff=1, max_seconds=3600, deadline_seconds=86400)


class Noted(AppActivities):
    """The real activities, noting when each query was scheduled (workflow time) and by which run."""

    def __init__(self, reports: Reports, provider: Provider) -> None:
        self.outbound = Outbound(LINKS)
        super().__init__(reports.kit(outbound=self.outbound), provider.client(), PollPolicy())
        self.queries: list[tuple[float, str]] = []

    @activity.defn(name=NAMES.query)
    async def query(self, input: JobRef) -> ProviderJob:
        info = activity.info()
        self.queries.append((info.current_attempt_scheduled_time.timestamp(), info.workflow_run_id or ""))
        return await super().query(input)


class App:
    def __init__(
        self,
        env: WorkflowEnvironment,
        provider: Provider,
        poll: PollPolicy = FAST,
        reports: Reports | None = None,
        limits: ProviderLimits | None = None,
    ) -> None:
        self.env = env
        self.limits = limits
        self.provider = provider
        self.poll = poll
        self.reports = reports or Reports()
        self.activities = Noted(self.reports, provider)
        self.queue = str(uuid.uuid4())
        self.handle: WorkflowHandle[object, TaskReport] | None = None

    @contextlib.asynccontextmanager
    async def worker(self) -> AsyncIterator[None]:
        """The worker running, and the provider's result links served."""
        acts = self.activities
        worker = serving(
            self.env.client,
            self.queue,
            [KitPollWorkflow, KitPollKeyedWorkflow, KitPollTightWorkflow],
            [self.reports.report_task, acts.submit, acts.query, acts.cancel, acts.copy_result],
            self.limits,
        )
        try:
            async with self.provider.serving(), worker:
                yield
        finally:
            await self.activities.outbound.aclose()

    async def start(
        self, workflow: str = "KitPollWorkflow", deadline_in: float | None = None
    ) -> WorkflowHandle[object, TaskReport]:
        """Start the workflow; with ``deadline_in``, for a task whose deadline is that many seconds away by the
        test server's clock (negative: already past)."""
        deadline = None
        if deadline_in is not None:
            deadline = (await self.env.get_current_time()).timestamp() + deadline_in
        self.handle = await self.env.client.start_workflow(
            workflow,
            AppInput(TaskEnvelope("t1", deadline=deadline), Request("a kite"), poll=self.poll),
            id=str(uuid.uuid4()),
            task_queue=self.queue,
            result_type=TaskReport,
            execution_timeout=timedelta(days=30),
        )
        return self.handle

    async def run(self, workflow: str = "KitPollWorkflow", deadline_in: float | None = None) -> TaskReport:
        async with self.worker():
            return await asyncio.wait_for((await self.start(workflow, deadline_in)).result(), 120)

    async def submitted(self) -> str:
        async def running() -> str | None:
            reports = self.reports.reports
            return reports[0].provider_task_id if reports and reports[0].status == "running" else None

        return await wait_for(running, 30, "the submit to report running")

    def gaps(self) -> list[float]:
        return [round(b - a) for (a, _), (b, _) in itertools.pairwise(self.activities.queries)]


async def test_polls_with_backoff_then_copies_the_result_with_a_fresh_link(env: WorkflowEnvironment) -> None:
    app = App(env, Provider(done_after=4))
    result = await app.run()
    (job_id,) = app.provider.jobs
    assert result.status == "succeeded"
    assert result.provider_task_id == job_id
    assert result.result is not None
    assert result.result.objects == {"result": StoredObject("tasks/t1/result.txt", "text/plain", len(job_id) + 10)}
    assert result.result.data == {"job": job_id}
    assert app.reports.store.objects["tasks/t1/result.txt"] == (f"result of {job_id}".encode(), "text/plain")
    # 5 s, then x2 up to the 20 s cap.
    assert app.gaps() == [10, 20, 20]
    assert app.reports.statuses() == ["running", "succeeded"]
    assert app.reports.reports[0] == TaskReport(
        status="running", progress=0.0, provider_task_id=job_id, provider_attempts=1
    )
    assert result.provider_attempts == 1
    assert len(app.provider.links) == 1


async def test_a_failed_download_is_retried_with_a_new_link(env: WorkflowEnvironment) -> None:
    provider = Provider(done_after=1, broken_links=1)
    result = await App(env, provider).run()
    assert result.status == "succeeded"
    # Each attempt of the copy asked for its own link: an expired one is never reused.
    assert len(set(provider.links)) == 2


async def test_a_result_link_into_our_own_networks_fails_the_task_at_once(env: WorkflowEnvironment) -> None:
    # The activities' rules allow plain http to 127.0.0.1 only: the metadata address is refused, never retried.
    provider = Provider(done_after=1, link_to="http://169.254.169.254/latest/meta-data/")
    app = App(env, provider)
    result = await app.run()
    assert result.status == "failed" and result.error is not None
    assert (result.error.code, result.error.retryable) == ("acme_media_url_not_allowed", False)
    assert "169.254.169.254" in result.error.message
    assert len(provider.links) == 1
    assert app.reports.store.objects == {}
    assert app.reports.statuses() == ["running", "failed"]


async def test_without_an_idempotency_key_an_uncertain_submit_is_never_sent_again(env: WorkflowEnvironment) -> None:
    provider = Provider(submits=["lost"])
    app = App(env, provider)
    result = await app.run()
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == ("acme_submit_uncertain", False)
    assert "may or may not have created the task" in result.error.message
    assert provider.posts == 1
    assert app.reports.statuses() == ["failed"]


async def test_with_an_idempotency_key_an_uncertain_submit_is_sent_again_and_one_job_runs(
    env: WorkflowEnvironment,
) -> None:
    provider = Provider(submits=["lost"], done_after=1)
    app = App(env, provider)
    result = await app.run("KitPollKeyedWorkflow")
    assert result.status == "succeeded"
    assert provider.posts == 2
    assert provider.keys == {"t1": result.provider_task_id}
    assert len(provider.jobs) == 1


async def test_a_submit_activity_that_outlives_its_timeout_before_any_answer_is_uncertain(
    env: WorkflowEnvironment,
) -> None:
    # As when the worker running the submit is lost: Temporal times the attempt out.
    provider = Provider(submits=["slow"])
    app = App(env, provider)
    result = await app.run("KitPollTightWorkflow")
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == ("acme_submit_uncertain", False)
    assert result.error.message.startswith("the submit did not finish (worker lost or Acme silent)")
    assert provider.posts == 1


async def test_a_refused_submit_is_retried_after_the_providers_retry_after(env: WorkflowEnvironment) -> None:
    provider = Provider(submits=["429", "429"], done_after=1)
    app = App(env, provider)
    result = await app.run()
    assert result.status == "succeeded"
    assert provider.posts == 3
    assert len(provider.jobs) == 1


async def test_a_submit_refused_every_time_fails_retryable_after_the_attempts(env: WorkflowEnvironment) -> None:
    provider = Provider(submits=["429"] * 5)
    result = await App(env, provider).run()
    assert result.error == TaskError("http_429", "slow down", True)
    assert provider.posts == 3


class Stalled(Reports):
    """main never answers the running report, so the submit activity outlives its timeout."""

    async def report(self, task_id: str, report: TaskReport) -> ReportOutcome:
        if report.status == "running":
            await asyncio.sleep(3600)
        return await super().report(task_id, report)


async def test_a_submit_lost_after_the_provider_accepted_still_hands_over_the_job(env: WorkflowEnvironment) -> None:
    provider = Provider(done_after=1)
    app = App(env, provider, reports=Stalled())
    result = await app.run("KitPollTightWorkflow")
    # The activity timed out, but its heartbeat carried the job id: polled, not resubmitted, not uncertain.
    assert result.status == "succeeded"
    assert provider.posts == 1
    assert result.provider_task_id in provider.jobs


async def test_the_providers_own_failure_and_cancel_are_the_tasks(env: WorkflowEnvironment) -> None:
    for state, expected in (
        ("error", TaskReport(status="failed", error=TaskError("job_failed", "the job failed"))),
        ("killed", TaskReport(status="cancelled", error=TaskError("cancelled", "was killed at the provider"))),
    ):
        provider = Provider()
        app = App(env, provider)
        async with app.worker():
            handle = await app.start()
            job_id = await app.submitted()
            provider.finish(state)
            result = await asyncio.wait_for(handle.result(), 60)
        assert result.status == expected.status
        assert result.error is not None and expected.error is not None
        assert result.error.code == expected.error.code
        assert expected.error.message in result.error.message
        assert result.provider_task_id == job_id
        assert app.provider.links == []


async def test_refresh_queries_at_once_and_concludes_the_task(env: WorkflowEnvironment) -> None:
    provider = Provider()
    app = App(env, provider, SLOW)
    async with app.worker():
        handle = await app.start()
        await app.submitted()
        assert app.activities.queries == []
        state = await asyncio.wait_for(handle.execute_update(REFRESH_UPDATE, result_type=TaskReport), 30)
        assert state.status == "running"
        provider.finish()
        state = await asyncio.wait_for(handle.execute_update(REFRESH_UPDATE, result_type=TaskReport), 30)
        # The update answers once the task is concluded, and the workflow ends only after it answered.
        assert state.status == "succeeded"
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.status == "succeeded"
    assert len(app.activities.queries) == 2
    assert app.reports.statuses() == ["running", "succeeded"]


async def test_a_callback_only_wakes_the_poller(env: WorkflowEnvironment) -> None:
    provider = Provider()
    app = App(env, provider, SLOW)
    async with app.worker():
        handle = await app.start()
        job_id = await app.submitted()
        # The callback claims the job is done; the provider says it is not: nothing concludes.
        await handle.signal(CALLBACK_SIGNAL, CallbackHint(job_id, "done"))

        async def queried() -> bool:
            return len(app.activities.queries) == 1

        await wait_for(queried, 30, "the callback to cause a query")
        assert (await handle.query("task_state", result_type=TaskReport)).status == "running"
        provider.finish()
        await handle.signal(CALLBACK_SIGNAL, CallbackHint(job_id, "done"))
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.status == "succeeded"
    assert len(app.activities.queries) == 2
    # Both queries came from callbacks, long before the first poll timer.
    assert app.gaps()[0] < 60


async def test_cancel_cancels_the_provider_job(env: WorkflowEnvironment) -> None:
    provider = Provider()
    app = App(env, provider, SLOW)
    async with app.worker():
        handle = await app.start()
        job_id = await app.submitted()
        await handle.cancel()
        result = await asyncio.wait_for(handle.result(), 60)
    assert result == TaskReport(
        status="cancelled",
        error=TaskError("cancelled", "the task was cancelled; Acme cancelled its job"),
        provider_task_id=job_id,
        provider_attempts=1,
    )
    assert provider.deleted == [job_id]
    assert app.reports.statuses() == ["running", "cancelled"]


async def test_without_a_cancel_endpoint_a_cancel_says_the_job_keeps_running(env: WorkflowEnvironment) -> None:
    provider = Provider()
    app = App(env, provider, SLOW)
    async with app.worker():
        handle = await app.start("KitPollKeyedWorkflow")
        job_id = await app.submitted()
        await handle.cancel()
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.status == "cancelled"
    assert result.error == TaskError(
        "cancelled", "the task was cancelled; Acme has no way to cancel a job: it keeps running there"
    )
    assert provider.deleted == []
    assert provider.jobs == {job_id: "working"}


async def test_past_the_deadline_the_job_is_cancelled_and_the_task_fails(env: WorkflowEnvironment) -> None:
    provider = Provider()
    app = App(env, provider, PollPolicy(initial_seconds=10, backoff=1.5, max_seconds=30, deadline_seconds=300))
    result = await app.run()
    (job_id,) = provider.jobs
    message = "Acme did not finish within 300 s; Acme cancelled its job"
    assert result.error == TaskError("deadline_exceeded", message, True)
    assert provider.deleted == [job_id]
    # No poll after the deadline.
    elapsed = app.activities.queries[-1][0] - app.activities.queries[0][0]
    assert 250 <= elapsed <= 300


async def test_continuing_as_new_bounds_each_runs_history_and_main_reaches_the_current_run(
    env: WorkflowEnvironment,
) -> None:
    provider = Provider(done_after=12)
    app = App(env, provider, PollPolicy(initial_seconds=5, backoff=1, max_seconds=5, polls_per_run=3))
    result = await app.run()
    assert result.status == "succeeded"
    runs = [run for _, run in app.activities.queries]
    assert len(set(runs)) == 4 and len(runs) == 12
    assert app.handle is not None
    lengths = []
    run_id = app.handle.result_run_id
    while run_id:
        history = await env.client.get_workflow_handle(app.handle.id, run_id=run_id).fetch_history()
        lengths.append(len(history.events))
        last = history.events[-1]
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
            else None
        )
    assert len(lengths) == 4
    # Three polls a run: every run's history is about as short as the first's.
    assert max(lengths) < 2 * lengths[0], lengths
    assert app.reports.statuses() == ["running", "succeeded"]


async def test_past_the_tasks_deadline_the_job_is_cancelled_and_the_task_fails(env: WorkflowEnvironment) -> None:
    # The worker's poll deadline is an hour away: the task's own, a minute from its create, comes first.
    provider = Provider()
    app = App(env, provider)
    result = await app.run(deadline_in=60)
    (job_id,) = provider.jobs
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == ("deadline_exceeded", True)
    assert result.error.message.startswith("the task was not done by its deadline (")
    assert result.error.message.endswith("; Acme cancelled its job")
    assert provider.deleted == [job_id]
    assert (result.provider_task_id, result.provider_attempts) == (job_id, 1)
    elapsed = app.activities.queries[-1][0] - app.activities.queries[0][0]
    assert elapsed <= 60


async def test_a_task_past_its_deadline_before_the_submit_submits_nothing(env: WorkflowEnvironment) -> None:
    provider = Provider()
    result = await App(env, provider).run(deadline_in=-1)
    assert result.error is not None
    assert result.error.code == "deadline_exceeded"
    assert result.error.message.endswith("; nothing was submitted to Acme")
    assert provider.posts == 0
    assert result.provider_attempts is None


async def test_the_tasks_deadline_ends_the_submits_retries(env: WorkflowEnvironment) -> None:
    # Refused every time, 3 s apart as the provider asks: the deadline comes before the attempts run out.
    provider = Provider(submits=["429"] * 5)
    result = await App(env, provider).run(deadline_in=5)
    assert result.error is not None
    assert result.error.code == "deadline_exceeded"
    assert result.error.message.endswith("; nothing was submitted to Acme")
    assert 1 <= provider.posts < 5
    assert result.provider_attempts == provider.posts
