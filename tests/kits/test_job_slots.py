"""Job slots: the submit-poll kit's cap on jobs in flight at the provider, through the minimal integration
(``poll_app``) in Temporal's time-skipping environment, served as the launcher serves an integration."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta

import httpx
import msgspec
import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from services.shared.job_slots import Holder, SlotsState, Waiter, next_waiter, slots_workflow_id
from services.shared.manifest import ProviderLimits
from services.shared.submit_poll import PollPolicy
from services.shared.tasks import TaskEnvelope, TaskReport
from tests.stack import wait_for

from .poll_app.provider import Provider
from .poll_app.schemas import AppInput, Request
from .test_submit_poll import App

# Two polls per run: a task holding its slot for a while continues as new more than once.
POLL = PollPolicy(initial_seconds=5, backoff=1, max_seconds=5, deadline_seconds=3600, polls_per_run=2)


def waiter(holder: str, priority: int, key: str, seq: int) -> Waiter:
    return Waiter(holder, priority, key, seq)


def test_a_free_slot_goes_to_the_most_urgent_then_to_the_user_holding_fewest_then_to_who_asked_first() -> None:
    state = SlotsState(
        limit=3,
        held={"a1": Holder("alice"), "a2": Holder("alice")},
        waiting=[waiter("a3", 3, "alice", 1), waiter("b1", 3, "bob", 2), waiter("c1", 3, "carol", 3)],
    )
    assert next_waiter(state) == waiter("b1", 3, "bob", 2)
    state.waiting.append(waiter("a4", 1, "alice", 4))
    assert next_waiter(state) == waiter("a4", 1, "alice", 4)
    state.held["b0"] = Holder("bob")
    assert next_waiter(state) is None


class NamingProvider(Provider):
    """The provider, noting each job's prompt: these tests give every task its id as prompt."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts: dict[str, str] = {}

    async def answer(self, request: httpx.Request) -> httpx.Response:
        response = await super().answer(request)
        if request.method == "POST" and response.status_code == 200:
            self.prompts[msgspec.json.decode(request.content)["prompt"]] = response.json()["id"]
        return response


class Tasks:
    """Submit-poll tasks of one integration capped at ``limit`` jobs (None: no cap); ``provider`` answers every
    one of them."""

    def __init__(self, env: WorkflowEnvironment, limit: int | None) -> None:
        self.env = env
        self.provider = NamingProvider()
        # Served as the submit-poll kit's own tests serve it.
        self.app = App(env, self.provider, POLL, limits=ProviderLimits(max_concurrent_jobs=limit))
        self.reports, self.queue = self.app.reports, self.app.queue

    def worker(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.app.worker()

    async def start(
        self, task_id: str, workflow: str = "KitPollWorkflow", deadline_in: float | None = None
    ) -> WorkflowHandle[object, TaskReport]:
        deadline = None
        if deadline_in is not None:
            deadline = (await self.env.get_current_time()).timestamp() + deadline_in
        return await self.env.client.start_workflow(
            workflow,
            AppInput(TaskEnvelope(task_id, deadline=deadline), Request(task_id), poll=POLL),
            id=f"task-{task_id}-{uuid.uuid4().hex[:6]}",
            task_queue=self.queue,
            result_type=TaskReport,
            execution_timeout=timedelta(days=30),
        )

    def job_of(self, task_id: str) -> str | None:
        """The provider's job of a task, once the task has submitted it."""
        return self.provider.prompts.get(task_id)

    async def submitted(self, task_id: str) -> str:
        async def job() -> str | None:
            return self.job_of(task_id)

        return await wait_for(job, 60, f"task {task_id} to submit its job")

    async def slots(self) -> SlotsState:
        handle = self.env.client.get_workflow_handle(slots_workflow_id(self.queue))
        state: SlotsState = await handle.query("slots", result_type=SlotsState)
        return state

    async def waiting(self, count: int) -> None:
        async def asked() -> bool:
            try:
                return len((await self.slots()).waiting) == count
            except Exception:
                return False

        await wait_for(asked, 60, f"{count} task(s) waiting for a slot")


async def test_a_job_the_provider_cannot_cancel_keeps_its_slot_until_it_ends_there(env: WorkflowEnvironment) -> None:
    tasks = Tasks(env, limit=1)
    async with tasks.worker():
        # The keyed variant's provider has no cancel endpoint.
        first = await tasks.start("t1", "KitPollKeyedWorkflow")
        first_job = await tasks.submitted("t1")
        second = await tasks.start("t2")
        await tasks.waiting(1)
        await first.cancel()

        async def reported_cancelled() -> bool:
            return "cancelled" in tasks.reports.statuses()

        await wait_for(reported_cancelled, 60, "the first task to be reported cancelled")
        reads = tasks.provider.reads

        async def watched() -> bool:
            return tasks.provider.reads >= reads + 3

        await wait_for(watched, 60, "the cancelled task to watch its job")
        assert tasks.job_of("t2") is None
        tasks.provider.jobs[first_job] = "done"
        second_job = await tasks.submitted("t2")
        result = await asyncio.wait_for(first.result(), 60)
        assert result.status == "cancelled"
        assert result.error is not None and "keeps running there" in result.error.message
        tasks.provider.jobs[second_job] = "done"
        assert (await asyncio.wait_for(second.result(), 60)).status == "succeeded"


async def test_the_slot_of_a_task_that_ended_without_giving_it_back_is_taken_back(env: WorkflowEnvironment) -> None:
    tasks = Tasks(env, limit=1)
    async with tasks.worker():
        first = await tasks.start("t1")
        await tasks.submitted("t1")
        second = await tasks.start("t2")
        await tasks.waiting(1)
        await first.terminate("an operator ended it")
        # Waiting on a result lets the test server skip time to the slots workflow's next look at its holders.
        result = asyncio.ensure_future(second.result())
        second_job = await tasks.submitted("t2")
        tasks.provider.jobs[second_job] = "done"
        assert (await asyncio.wait_for(result, 60)).status == "succeeded"


async def test_without_a_cap_no_slot_is_asked_for(env: WorkflowEnvironment) -> None:
    tasks = Tasks(env, limit=None)
    async with tasks.worker():
        handles = [await tasks.start(f"t{i}") for i in range(3)]
        jobs = [await tasks.submitted(f"t{i}") for i in range(3)]
        for job in jobs:
            tasks.provider.jobs[job] = "done"
        assert [(await asyncio.wait_for(h.result(), 60)).status for h in handles] == ["succeeded"] * 3
    with pytest.raises(Exception, match="not found"):
        await tasks.slots()


async def test_a_task_whose_deadline_passes_while_it_waits_for_a_slot_fails_and_stops_waiting(
    env: WorkflowEnvironment,
) -> None:
    tasks = Tasks(env, limit=1)
    async with tasks.worker():
        first = await tasks.start("t1")
        await tasks.submitted("t1")
        second = await tasks.start("t2", deadline_in=60)
        await tasks.waiting(1)
        result = await asyncio.wait_for(second.result(), 60)
        assert result.error is not None
        assert result.error.code == "deadline_exceeded"
        assert result.error.message.endswith("; nothing was submitted to Acme (it waited for a job slot)")
        assert tasks.job_of("t2") is None
        await tasks.waiting(0)
        assert list((await tasks.slots()).held) == [first.id]
        await first.cancel()
