"""Test copies of workflows, changed in ways a running workflow cannot survive: replaying the recorded histories
against them must fail (``test_replay.py``), which proves that the replay test can."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from integrations.echo.schemas import EchoInput
    from integrations.echo.workflows.workflows import PROCESS, result
    from services.shared.sync_call import SyncCallWorkflow
    from services.shared.tasks import StoredObject, TaskReport


@workflow.defn(name="EchoWorkflow")
class EchoWaitsFirst(SyncCallWorkflow):
    """Echo with a pause before its call: a timer where the histories have the activity."""

    @workflow.run
    async def run(self, input: EchoInput) -> TaskReport:
        await workflow.sleep(timedelta(seconds=1))
        return await self.call(input, PROCESS, StoredObject, result)
