"""Record the workflow histories that ``test_replay.py`` replays: ``./dev record-histories [--keep NAME] [PATH ...]``.

Every path of every served workflow runs for real: a local stack (the Temporal dev server, the S3 server, the
provider simulator, main and communication) on free ports in a temporary directory, one worker process per
integration as in production, each task created and driven through main's HTTP API as a client would. When a
task is done, every run of its workflow is checked for what its path is about and written to
``<integration>/<path>.json`` beside this file (a chain that continued as new: ``<path>.1.json``, ``<path>.2.json``
...). ``PATH`` (``<integration>/<path>``) records only those. ``--keep NAME`` first moves the current histories into
``<integration>/NAME/``, where they stay and keep replaying: what a change behind ``workflow.patched(NAME)`` must
still replay (prompt/output/safe-deploys.md says when re-recording is allowed).

The recording takes about two minutes; it is not part of the test run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory

from deploy.local import LocalStack
from deploy.ports import Ports, free_port
from services.main.webhooks.inputs import delivery_workflow_id
from services.shared.settings import TemporalSettings
from services.shared.tasks import workflow_id_for
from services.shared.temporal import connect
from tests.faults.harness import IMAGE, VIDEO, Simulator, Workers, unique
from tests.stack import REPO, USERS, Api, wait_for
from tests.webhook_receiver import Receiver, webhook_env

HERE = Path(__file__).resolve().parent
ECHO = "echo"
PROVIDER_VARIABLES = ("GEMINI_API_KEY", "ARK_API_KEY", "GEMINI_BASE_URL", "ARK_BASE_URL")
SIMULATOR_ENV = {"SIMULATOR_ARK_QUEUE_SECONDS": "0.5", "SIMULATOR_ARK_RUN_SECONDS": "2"}
# Ark polled every 1-2 s, four polls per run, a 12 s deadline: a job of a few seconds continues as new once, and
# one that runs for a minute continues as new and then passes its deadline.
WORKER_ENV = {
    "ARK_POLL_INITIAL_SECONDS": "1",
    "ARK_POLL_BACKOFF": "1.5",
    "ARK_POLL_MAX_SECONDS": "2",
    "ARK_POLLS_PER_RUN": "4",
    "ARK_DEADLINE_SECONDS": "12",
    "ASYNC_TASK_SHUTDOWN_SECONDS": "2",
}
SUBMIT, QUERY, CANCEL, COPY = "fangzhou.submit", "fangzhou.query", "fangzhou.cancel", "fangzhou.copy_result"
CALLS = {ECHO: "echo.process", IMAGE: "nanobanana2_image.generate"}
T = EventType


# --- what a history must show ---------------------------------------------------------------------------------

Events = list[HistoryEvent]
Check = Callable[[Events], str | None]


def has(kind: EventType.ValueType, what: str) -> Check:
    def check(events: Events) -> str | None:
        return None if any(e.event_type == kind for e in events) else f"no {what}"

    return check


def retried(activity: str) -> Check:
    def check(events: Events) -> str | None:
        scheduled = _scheduled(events)
        attempts = [
            e.activity_task_started_event_attributes.attempt
            for e in events
            if e.event_type == T.EVENT_TYPE_ACTIVITY_TASK_STARTED
            and scheduled.get(e.activity_task_started_event_attributes.scheduled_event_id) == activity
        ]
        return None if any(a >= 2 for a in attempts) else f"{activity} never ran a second attempt"

    return check


def scheduled(activity: str) -> Check:
    def check(events: Events) -> str | None:
        return None if activity in _scheduled(events).values() else f"{activity} never scheduled"

    return check


def scheduled_twice(activity: str) -> Check:
    def check(events: Events) -> str | None:
        count = sum(1 for name in _scheduled(events).values() if name == activity)
        return None if count >= 2 else f"{activity} scheduled {count} time(s), not twice"

    return check


def cancelled_during(activity: str | None) -> Check:
    """The cancel request came while ``activity`` was scheduled and not yet done (None: before any activity)."""

    def check(events: Events) -> str | None:
        scheduled = _scheduled(events)
        began: set[int] = set()
        pending: set[int] = set()
        for event in events:
            if event.event_type == T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                began.add(event.event_id)
                pending.add(event.event_id)
            elif event.event_type == T.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED:
                if activity is None:
                    return None if not began else f"cancelled after {sorted({scheduled[i] for i in began})} began"
                names = {scheduled[i] for i in pending}
                return None if activity in names else f"cancelled while {sorted(names) or 'nothing'} was pending"
            elif (closed := _closed_activity(event)) is not None:
                pending.discard(closed)
        return "no cancel request"

    return check


def _scheduled(events: Events) -> dict[int, str]:
    return {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.event_type == T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }


def _closed_activity(event: HistoryEvent) -> int | None:
    for kind, attrs in (
        (T.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, "activity_task_completed_event_attributes"),
        (T.EVENT_TYPE_ACTIVITY_TASK_FAILED, "activity_task_failed_event_attributes"),
        (T.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT, "activity_task_timed_out_event_attributes"),
        (T.EVENT_TYPE_ACTIVITY_TASK_CANCELED, "activity_task_canceled_event_attributes"),
    ):
        if event.event_type == kind:
            scheduled_id: int = getattr(event, attrs).scheduled_event_id
            return scheduled_id
    return None


SIGNALLED = has(T.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, "provider callback (signal)")
UPDATED = has(T.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED, "refresh (update)")
CONTINUED = has(T.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW, "continue-as-new")
CALL_CANCELLED = has(T.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED, "the call in flight cancelled")


# --- the paths ------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One path's task, and what a client (and the world around it) can do to it."""

    path: PathSpec
    api: Api
    temporal: Client
    sim: Simulator
    task_id: str = ""

    async def activity_started(self, activity: str, timeout: float = 60) -> None:
        handle = self.temporal.get_workflow_handle(workflow_id_for(self.task_id))

        async def started() -> bool:
            pending = (await handle.describe()).raw_description.pending_activities
            return any(
                a.activity_type.name == activity and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                for a in pending
            )

        await wait_for(started, timeout, f"{activity} of {self.path.key} to run", interval=0.1)

    async def submitted(self) -> None:
        async def known() -> bool:
            return (await self.api.task(self.task_id))["provider_task_id"] is not None

        await wait_for(known, 60, f"{self.path.key} to be submitted", interval=0.1)

    async def cancel(self) -> None:
        response = await self.api.http.post(f"/api/tasks/{self.task_id}/cancel")
        assert response.status_code == 202, response.text

    async def refresh(self) -> None:
        response = await self.api.http.post(f"/api/integrations/{self.path.integration}/tasks/{self.task_id}/refresh")
        assert response.status_code == 200, response.text


Drive = Callable[[Run], Awaitable[None]]


@dataclass(frozen=True)
class PathSpec:
    integration: str
    name: str
    body: dict[str, Any]
    expect: str = "succeeded"
    code: str | None = None
    # What the client does once the task exists.
    drive: Drive | None = None
    # What the histories (all runs together) must show.
    shows: tuple[Check, ...] = ()
    # Created (and driven) before any worker runs.
    before_workers: bool = False
    # Faults queued for this task alone (matched by its prompt).
    faults: tuple[dict[str, Any], ...] = ()
    # Simulator settings for this path: it then runs while no other path does.
    sim_config: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return f"{self.integration}/{self.name}"


def cancel_when_started(activity: str) -> Drive:
    async def drive(run: Run) -> None:
        await run.activity_started(activity)
        await run.cancel()

    return drive


async def cancel_at_once(run: Run) -> None:
    await run.cancel()


async def cancel_while_polling(run: Run) -> None:
    await run.submitted()
    await run.cancel()


async def refresh_while_polling(run: Run) -> None:
    await run.submitted()
    await run.refresh()


def echo(name: str, expect: str = "succeeded", code: str | None = None, **kw: Any) -> PathSpec:
    body = {"message": unique(f"echo {name}"), **kw.pop("body", {})}
    return PathSpec(ECHO, name, body, expect, code, **kw)


def image(name: str, tags: str = "", expect: str = "succeeded", code: str | None = None, **kw: Any) -> PathSpec:
    body = {"prompt": unique(f"a lighthouse ({name}) {tags}"), "image_size": "512", **kw.pop("body", {})}
    return PathSpec(IMAGE, name, body, expect, code, **kw)


def video(name: str, tags: str = "", expect: str = "succeeded", code: str | None = None, **kw: Any) -> PathSpec:
    body = {
        "prompt": unique(f"waves at dusk ({name}) {tags}"),
        "duration": 2,
        "resolution": "480p",
        **kw.pop("body", {}),
    }
    return PathSpec(VIDEO, name, body, expect, code, **kw)


def media_fault(kind: str, count: int = 1) -> tuple[dict[str, Any], ...]:
    # "match" is filled in with the path's prompt.
    return ({"provider": "ark", "route": "media", "kind": kind, "count": count},)


PATHS: tuple[PathSpec, ...] = (
    echo("success"),
    echo(
        "task-deadline",
        "failed",
        "deadline_exceeded",
        body={"delay_seconds": 60, "deadline_seconds": 3},
        shows=(CALL_CANCELLED,),
    ),
    echo("retried", body={"fail_attempts": 2}, shows=(retried(CALLS[ECHO]),)),
    echo("failed", "failed", "echo_failed", body={"fail_attempts": 5}, shows=(retried(CALLS[ECHO]),)),
    echo("cancel-before-call", "cancelled", before_workers=True, drive=cancel_at_once, shows=(cancelled_during(None),)),
    echo(
        "cancel-during-call",
        "cancelled",
        body={"delay_seconds": 60},
        drive=cancel_when_started(CALLS[ECHO]),
        shows=(cancelled_during(CALLS[ECHO]),),
    ),
    image("success"),
    image(
        "task-deadline",
        "[sim:slow=60]",
        "failed",
        "deadline_exceeded",
        body={"deadline_seconds": 3},
        shows=(CALL_CANCELLED,),
    ),
    image("retried", "[sim:503x2]", shows=(retried(CALLS[IMAGE]),)),
    image("failed", "[sim:blocked]", "failed", "blocked_prompt"),
    image("retries-exhausted", "[sim:503]", "failed", "provider_unavailable", shows=(retried(CALLS[IMAGE]),)),
    image(
        "cancel-before-call",
        "",
        "cancelled",
        before_workers=True,
        drive=cancel_at_once,
        shows=(cancelled_during(None),),
    ),
    image(
        "cancel-during-call",
        "[sim:slow=60]",
        "cancelled",
        drive=cancel_when_started(CALLS[IMAGE]),
        shows=(cancelled_during(CALLS[IMAGE]),),
    ),
    video("success", shows=(SIGNALLED,)),
    video("refresh", "[sim:slow=5]", drive=refresh_while_polling, shows=(UPDATED,)),
    video("continue-as-new", "[sim:slow=8]", shows=(CONTINUED,)),
    video("deadline", "[sim:slow=60]", "failed", "deadline_exceeded", shows=(CONTINUED, scheduled(CANCEL))),
    video("submit-retried", "[sim:429x2]", shows=(scheduled_twice(SUBMIT),)),
    video(
        "task-deadline",
        "[sim:slow=60]",
        "failed",
        "deadline_exceeded",
        body={"deadline_seconds": 3},
        shows=(scheduled(CANCEL),),
    ),
    video(
        "query-retried",
        "[sim:slow=3]",
        faults=({"provider": "ark", "route": "get_task", "kind": "503", "count": 5},),
        shows=(retried(QUERY),),
    ),
    video("failed", "[sim:fail]", "failed", "OutputVideoSensitiveContentDetected"),
    video("submit-rejected", "", "failed", "InvalidEndpointOrModel.NotFound", body={"model": "no-such-model"}),
    video("copy-failed", "", "failed", "ark_media_unreachable", faults=media_fault("503", 5), shows=(retried(COPY),)),
    video(
        "cancel-before-submit",
        "",
        "cancelled",
        before_workers=True,
        drive=cancel_at_once,
        shows=(cancelled_during(None),),
    ),
    video(
        "cancel-during-submit",
        "",
        "cancelled",
        sim_config={"ark_latency_ms": 3000},
        drive=cancel_when_started(SUBMIT),
        # The submit is shielded: once it answers, the job it created is cancelled.
        shows=(cancelled_during(SUBMIT), scheduled(CANCEL)),
    ),
    video(
        "cancel-while-polling",
        "[sim:slow=60]",
        "cancelled",
        drive=cancel_while_polling,
        shows=(has(T.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED, "cancel request"), scheduled(CANCEL)),
    ),
    video(
        "cancel-during-copy",
        "",
        "cancelled",
        faults=media_fault("hang"),
        drive=cancel_when_started(COPY),
        shows=(cancelled_during(COPY),),
    ),
)


# Webhook deliveries, on main's platform task queue: the echo task of each sends its `completed` webhook to the
# receiver's path in `body`, and `expect` is how the delivery's workflow ends. Three attempts in all.
PLATFORM = "platform"
DELIVER, GIVE_UP = "webhook.deliver", "webhook.give_up"
WEBHOOK_ATTEMPTS = 3
WEBHOOK_PATHS = (
    PathSpec(PLATFORM, "delivered", {"path": "/hook"}, expect="delivered"),
    PathSpec(PLATFORM, "retried", {"path": "/flaky"}, expect="delivered", shows=(retried(DELIVER),)),
    PathSpec(PLATFORM, "gone", {"path": "/gone"}, expect="gone"),
    PathSpec(PLATFORM, "failed", {"path": "/fail"}, expect="failed", shows=(retried(DELIVER), scheduled(GIVE_UP))),
)


# --- recording ------------------------------------------------------------------------------------------------


async def start(run: Run) -> None:
    """Create the path's task (its faults queued first) and drive it as its client would."""
    prompt = str(run.path.body.get("prompt") or run.path.body.get("message"))
    if run.path.faults:
        await run.sim.queue_faults(*({**fault, "match": prompt} for fault in run.path.faults))
    response = await run.api.create(run.path.integration, run.path.body)
    assert response.status_code == 202, f"{run.path.key}: {response.status_code} {response.text}"
    run.task_id = response.json()["id"]
    if run.path.drive is not None:
        await run.path.drive(run)


async def finish(run: Run) -> list[WorkflowHistory]:
    """Wait until the task and its workflow are done; every run of the workflow, checked, oldest first."""
    path = run.path
    task = await run.api.wait_status(run.task_id, {"succeeded", "failed", "cancelled"}, timeout=180)
    code = (task["error"] or {}).get("code")
    ended = task["status"] == path.expect and (path.code is None or code == path.code)
    assert ended, f"{path.key}: ended {task['status']} {task['error']}, not {path.expect} {path.code or ''}"
    workflow_id = workflow_id_for(run.task_id)

    async def closed() -> bool:
        status = (await run.temporal.get_workflow_handle(workflow_id).describe()).status
        return status is not None and status != WorkflowExecutionStatus.RUNNING

    await wait_for(closed, 120, f"the workflow of {path.key} to close", interval=0.2)
    histories: list[WorkflowHistory] = []
    run_id: str | None = None
    while True:
        history = await run.temporal.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        histories.insert(0, history)
        run_id = history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
        if not run_id:
            break
    events = [event for history in histories for event in history.events]
    problems = [problem for check in path.shows if (problem := check(events)) is not None]
    assert not problems, f"{path.key}: the history does not show what the path is about: {'; '.join(problems)}"
    return histories


async def webhook_history(path: PathSpec, api: Api, temporal: Client, receiver: Receiver) -> list[WorkflowHistory]:
    """Create the path's echo task and record the workflow of its webhook delivery, checked."""
    route = str(path.body["path"])
    body = {"message": unique(f"webhook {path.name}"), "webhook_url": receiver.url(route)}
    response = await api.create(ECHO, body)
    assert response.status_code == 202, f"{path.key}: {response.status_code} {response.text}"

    async def sent() -> str | None:
        return next((m for m, p in zip(receiver.requests, receiver.paths, strict=True) if p == route), None)

    message_id = await wait_for(sent, 60, f"the webhook of {path.key}", interval=0.1)
    handle = temporal.get_workflow_handle(delivery_workflow_id(message_id))
    ended = await handle.result()
    assert ended == path.expect, f"{path.key}: the delivery ended {ended}, not {path.expect}"
    history = await handle.fetch_history()
    problems = [problem for check in path.shows if (problem := check(list(history.events))) is not None]
    assert not problems, f"{path.key}: the history does not show what the path is about: {'; '.join(problems)}"
    return [history]


def scrubbed(value: Any) -> Any:
    """History as JSON without what names this machine: worker identities, their sticky task queues and failures'
    stack traces (none matters to a replay)."""
    if isinstance(value, dict):
        if value.get("kind") == "TASK_QUEUE_KIND_STICKY":
            return {**value, "name": "recorder-sticky"}
        return {
            key: "recorder" if key == "identity" else "" if key == "stackTrace" else scrubbed(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [scrubbed(item) for item in value]
    return value


def write(path: PathSpec, histories: list[WorkflowHistory], out: Path) -> list[Path]:
    folder = out / path.integration
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{path.name}.*json"):
        old.unlink()
    if len(histories) == 1:
        files = [folder / f"{path.name}.json"]
    else:
        files = [folder / f"{path.name}.{n}.json" for n in range(1, len(histories) + 1)]
    for file, history in zip(files, histories, strict=True):
        text = json.dumps(scrubbed(history.to_json_dict()), indent=1) + "\n"
        for local in (str(REPO), sys.prefix, f"{Path.home()}/", socket.gethostname()):
            assert local not in text, f"{path.key}: the history names {local}"
        file.write_text(text)
    return files


def keep(out: Path, name: str) -> None:
    """Move the current histories of every integration into ``<integration>/<name>/``."""
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("_")):
        current = sorted(folder.glob("*.json"))
        if not current:
            continue
        kept = folder / name
        if kept.exists():
            raise SystemExit(f"{kept} exists already: choose another name")
        kept.mkdir()
        for file in current:
            file.rename(kept / file.name)
        print(f"kept {len(current)} histories in {kept.relative_to(REPO)}")


async def record(paths: list[PathSpec], out: Path) -> list[Path]:
    receiver_port = free_port()
    environ = {k: v for k, v in os.environ.items() if k not in PROVIDER_VARIABLES}
    environ.update(SIMULATOR_ENV)
    environ.update(webhook_env(receiver_port, max_attempts=WEBHOOK_ATTEMPTS))
    environ["API_KEYS"] = ",".join(f"{key}:{user}" for user, key in USERS.items())
    hooks = [path for path in paths if path.integration == PLATFORM]
    paths = [path for path in paths if path.integration != PLATFORM]
    with tempfile.TemporaryDirectory(prefix="histories-") as tmp:
        state = Path(tmp) / "state"
        with LocalStack(state, Ports.free(), components=["middleware", "services"], environ=environ) as stack:
            temporal = await connect(TemporalSettings(address=stack.temporal_address))
            api = Api(stack, "alice")
            sim = Simulator(stack.simulator_url)
            workers = Workers({**stack.service_env(), **WORKER_ENV}, Path(tmp) / "workers")
            runs = [Run(path, api, temporal, sim) for path in paths]
            done: dict[str, list[WorkflowHistory]] = {}

            async def finished(run: Run) -> None:
                done[run.path.key] = await finish(run)

            async def whole(run: Run) -> None:
                await start(run)
                await finished(run)

            try:
                early = [run for run in runs if run.path.before_workers]
                await asyncio.gather(*(start(run) for run in early))
                await workers.start()
                await asyncio.gather(*(finished(run) for run in early))
                for run in (run for run in runs if run.path.sim_config is not None and not run.path.before_workers):
                    await sim.config(**(run.path.sim_config or {}))
                    try:
                        await start(run)
                    finally:
                        await sim.restore()
                    await finished(run)
                await asyncio.gather(
                    *(whole(run) for run in runs if not run.path.before_workers and run.path.sim_config is None)
                )
                if hooks:
                    secret = (await api.http.get("/api/webhooks/secret")).json()["secret"]
                    receiver = Receiver(receiver_port, secrets=[secret])
                    await receiver.start()
                    try:
                        for path in hooks:
                            done[path.key] = await webhook_history(path, api, temporal, receiver)
                    finally:
                        await receiver.stop()
            finally:
                workers.kill()
                await api.close()
                await sim.close()
    recorded = [file for run in runs for file in write(run.path, done[run.path.key], out)]
    return recorded + [file for path in hooks for file in write(path, done[path.key], out)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev record-histories", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", metavar="PATH", help="<integration>/<path> to record (default: all)")
    parser.add_argument("--keep", metavar="NAME", help="first move the current histories into <integration>/NAME/")
    args = parser.parse_args(argv)
    known = {path.key: path for path in (*PATHS, *WEBHOOK_PATHS)}
    unknown = [key for key in args.paths if key not in known]
    if unknown:
        parser.error(f"unknown path(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if args.keep:
        keep(HERE, args.keep)
    files = asyncio.run(record([known[key] for key in args.paths] or list(known.values()), HERE))
    for file in files:
        print(f"recorded {file.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
