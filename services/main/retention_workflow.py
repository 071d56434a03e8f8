"""The retention sweep's workflow, started by the Temporal schedule ``platform-retention`` on the ``platform`` task
queue (``retention.py`` keeps the schedule and runs the activity). Imported by workflow code: sandbox-safe parts
only."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    import msgspec

    from services.shared.workflow_kit import Step, execute

WORKFLOW = "PlatformRetention"
PURGE_ACTIVITY = "retention.purge"
# The schedule's id, and the id its runs are started with (Temporal appends the time of each run). Not ``task-``:
# the reconciler takes workflows whose id starts so for tasks'.
SCHEDULE_ID = "platform-retention"

# One attempt works through every batch (heartbeating after each), so a run that dies resumes where it was: each
# batch's work is committed. Bounded attempts: the next scheduled run tries again anyway.
PURGE = Step(
    PURGE_ACTIVITY,
    start_to_close=timedelta(hours=1),
    heartbeat=timedelta(minutes=2),
    retry=RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=1), maximum_attempts=5),
    provider_call=False,
)


# --- types stored in Temporal history: they accept unknown fields, new fields get defaults -------------------


class Purge(msgspec.Struct, frozen=True):
    """What a run purges: what finished more than ``retention_seconds`` ago, ``batch_size`` tasks at a time."""

    retention_seconds: float
    batch_size: int


class Purged(msgspec.Struct, frozen=True):
    """What a run removed."""

    tasks: int = 0
    objects: int = 0
    events: int = 0


@workflow.defn(name=WORKFLOW)
class RetentionWorkflow:
    @workflow.run
    async def run(self, purge: Purge) -> Purged:
        return await execute(PURGE, purge, Purged)
