from __future__ import annotations

from typing import TypeAlias

import msgspec
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from services.shared.sync_call import SyncCallWorkflow, TaskInput
    from services.shared.tasks import TaskReport

BROKEN = "the workflow's code is broken"


class Request(msgspec.Struct, frozen=True):
    prompt: str


AppInput: TypeAlias = TaskInput[Request]


@workflow.defn(name="KitStalledWorkflow")
class StalledWorkflow(SyncCallWorkflow):
    @workflow.run
    async def run(self, input: AppInput) -> TaskReport:
        # Not a Temporal failure: the SDK fails the workflow task, and Temporal retries it without end.
        raise RuntimeError(BROKEN)
