"""Create is atomic from the user's side, and the reconciler finishes what a crash or an operator left: main SIGKILLed
between a task's insert and its workflow start (the reconciler starts it at the priority it was created with); a start
that timed out after Temporal accepted it; a running image workflow terminated from the Temporal CLI; a running
workflow whose task row is gone."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from deploy.local import LocalStack
from services.main.store import tasks_table
from services.shared.tasks import objects_prefix, workflow_id_for
from tests.stack import wait_for

from .harness import ECHO, Job, Platform, Task, echo, hooked_main, image

pytestmark = [pytest.mark.integration, pytest.mark.faults]

TEMPORAL_CLI = Path(sys.executable).parent / "temporal"


def marked(text: str) -> tuple[Job, str]:
    """An echo job of alice's, and its message (unique): the mark a fault hook acts on."""
    job = echo("alice", text)
    return job, str(job.body["message"])


async def stored_tasks_with(platform: Platform, user: str, message: str) -> list[str]:
    records, _ = await platform.store.list(owner=user, integration=ECHO, status=None, limit=100, offset=0)
    return [r.id for r in records if r.input.get("message") == message]


async def workflow_runs(platform: Platform, task_id: str) -> int:
    query = f'WorkflowId = "{workflow_id_for(task_id)}"'
    return len([execution async for execution in platform.temporal.list_workflows(query)])


async def test_a_main_killed_between_insert_and_start_leaves_a_task_the_reconciler_runs_once(
    fault_stack: LocalStack, scenario: Platform, tmp_path: Path
) -> None:
    job, mark = marked("killed between insert and start")
    # Not the default priority: the reconciler's start must take the create's from the store.
    job = Job(job.user, job.integration, {**job.body, "priority": 1})
    async with hooked_main(fault_stack, tmp_path / "main.log", KILL_AFTER_INSERT_MARK=mark) as hooked:
        with pytest.raises(httpx.TransportError):
            await scenario.apis["alice"].create(ECHO, job.body)
        assert hooked.proc.wait(10) == -signal.SIGKILL
        # The task was committed, queued; its workflow was never started.
        [task_id] = await stored_tasks_with(scenario, "alice", mark)
        record = await scenario.store.get(task_id)
        assert record is not None and (record.status, record.priority) == ("queued", 1)
        with pytest.raises(RPCError) as missing:
            await scenario.temporal.get_workflow_handle(workflow_id_for(task_id)).describe()
        assert missing.value.status == RPCStatusCode.NOT_FOUND
        scenario.mark("main killed between the insert and the start")
    # The stack's main is back: its reconciler starts the task (the client never learnt its id; the store has it).
    task = Task(task_id, job)
    scenario.created[task_id] = task
    final = (await scenario.check([task]))[task_id]
    assert final["status"] == "succeeded"
    assert await workflow_runs(scenario, task_id) == 1
    assert await stored_tasks_with(scenario, "alice", mark) == [task_id]
    description = await scenario.temporal.get_workflow_handle(workflow_id_for(task_id)).describe()
    assert description.raw_description.workflow_execution_info.priority.priority_key == 1


async def test_a_start_that_timed_out_after_temporal_accepted_it_gives_one_workflow_task_and_result(
    fault_stack: LocalStack, scenario: Platform, tmp_path: Path
) -> None:
    job, mark = marked("a start that timed out")
    async with hooked_main(fault_stack, tmp_path / "main.log", START_TIMES_OUT_MARK=mark) as hooked:
        response = await scenario.apis["alice"].create(ECHO, job.body)
        assert response.status_code == 202, response.text
        task = Task(response.json()["id"], job)
        scenario.created[task.id] = task
        await scenario.apis["alice"].wait_status(task.id, {"succeeded"})
        # The first start did reach the hook's timeout, and the second one found the workflow running.
        assert f"start of task {task.id}'s workflow, attempt 1 of 3" in hooked.output()
    await scenario.check([task])
    assert await workflow_runs(scenario, task.id) == 1
    assert await stored_tasks_with(scenario, "alice", mark) == [task.id]


async def test_an_image_workflow_terminated_from_the_cli_ends_its_task_and_loses_its_objects(
    fault_stack: LocalStack, scenario: Platform
) -> None:
    created = image("alice", "terminated by an operator [sim:slow=30]")
    job = Job(created.user, created.integration, created.body, "failed", "workflow_terminated")
    [task] = await scenario.create([job])
    await scenario.apis["alice"].wait_status(task.id, {"running"})
    # What an upload cut short by the termination leaves under the task's prefix.
    partial = f"{objects_prefix(task.id)}partial.png"
    await scenario.objects.put_bytes(partial, b"\x89PNG half an image", "image/png")
    reason = "stopped by an operator"
    cli = await asyncio.create_subprocess_exec(
        str(TEMPORAL_CLI),
        *("workflow", "terminate", "--address", fault_stack.temporal_address),
        *("--workflow-id", workflow_id_for(task.id), "--reason", reason),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await cli.communicate()
    assert cli.returncode == 0, output.decode()
    scenario.mark("workflow terminated from the CLI")

    # The reconciler (nobody reads the task through main meanwhile): the task ends, its objects go.
    async def ended_and_empty() -> bool:
        record = await scenario.store.get(task.id)
        assert record is not None
        return record.status == "failed" and not await scenario.objects.list_keys(objects_prefix(task.id))

    await wait_for(ended_and_empty, 30, "the reconciler to end the task and remove its objects", interval=0.2)
    record = await scenario.store.get(task.id)
    assert record is not None and record.error is not None
    expected = ("workflow_terminated", f"the task's workflow terminated: {reason}")
    assert (record.error.code, record.error.message) == expected
    await scenario.check([task])


async def test_a_workflow_whose_task_row_is_gone_is_terminated_and_its_objects_removed(scenario: Platform) -> None:
    [task] = await scenario.create([echo("alice", "its row goes missing", delay_seconds=120)])
    await scenario.apis["alice"].wait_status(task.id, {"running"})
    stray = f"{objects_prefix(task.id)}partial.txt"
    await scenario.objects.put_bytes(stray, b"half", "text/plain")
    # The row is lost (a store restored from an older backup, say), with no event.
    async with scenario.store.engine.begin() as conn:
        await conn.execute(tasks_table.delete().where(tasks_table.c.id == task.id))
    del scenario.created[task.id]
    handle = scenario.temporal.get_workflow_handle(workflow_id_for(task.id))

    async def terminated() -> bool:
        return (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED

    await wait_for(terminated, 30, "the reconciler to terminate the workflow", interval=0.2)

    async def removed() -> bool:
        return not await scenario.objects.list_keys(objects_prefix(task.id))

    await wait_for(removed, 30, "the reconciler to remove the task's objects", interval=0.2)
    assert await workflow_runs(scenario, task.id) == 1
