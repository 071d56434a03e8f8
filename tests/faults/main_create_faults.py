"""``python -m tests.faults.main_create_faults``: main with fault hooks on the create path, for the tests. Each acts on
tasks whose input holds its mark:

- ``KILL_AFTER_INSERT_MARK``: right after the insert of such a task (and its first event) commits, before its
  workflow is started, the process SIGKILLs itself.
- ``START_TIMES_OUT_MARK``: the first start of such a task's workflow reaches Temporal, which starts the workflow, and
  then fails as a start RPC whose deadline passed."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import msgspec
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from services.main.__main__ import main
from services.main.store import TaskRecord, TaskStore

KILL_MARK = os.environ.get("KILL_AFTER_INSERT_MARK")
TIMEOUT_MARK = os.environ.get("START_TIMES_OUT_MARK")
create = TaskStore.create
start_workflow = Client.start_workflow
timed_out: set[str] = set()


async def create_then_die(self: TaskStore, **kwargs: Any) -> tuple[TaskRecord, bool]:
    record, created = await create(self, **kwargs)
    if created and KILL_MARK is not None and KILL_MARK in msgspec.json.encode(record.input).decode():
        os.kill(os.getpid(), signal.SIGKILL)
    return record, created


async def start_then_time_out(self: Client, workflow: Any, arg: Any, **kwargs: Any) -> Any:
    handle = await start_workflow(self, workflow, arg, **kwargs)
    workflow_id = kwargs["id"]
    if TIMEOUT_MARK is not None and TIMEOUT_MARK in msgspec.json.encode(arg).decode() and workflow_id not in timed_out:
        timed_out.add(workflow_id)
        raise RPCError("Deadline Exceeded (after the server accepted the start)", RPCStatusCode.DEADLINE_EXCEEDED, b"")
    return handle


TaskStore.create = create_then_die  # type: ignore[method-assign]
Client.start_workflow = start_then_time_out  # type: ignore[assignment]

if __name__ == "__main__":
    sys.exit(main())
