"""The fault-injection harness: batches of tasks across integrations and users, one websocket event log per user,
the workers as separate processes, the simulator's control API, and the checker every scenario ends with."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from minio import Minio
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client, WorkflowExecutionStatus
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from deploy.local import LocalStack
from services.main.store import TaskStore
from services.shared.reporting import REPORT_ACTIVITY
from services.shared.storage import ObjectStore
from services.shared.tasks import TERMINAL_STATUSES, TaskReport, workflow_id_for
from tests.stack import Api, Launcher, wait_for

ECHO = "echo"
IMAGE = "nanobanana2-image"
VIDEO = "fangzhouVideoGeneration"
INTEGRATIONS = (ECHO, IMAGE, VIDEO)
# Ark's error code for a job it refuses to finish (the simulator's default for [sim:fail]).
ARK_REFUSED = "OutputVideoSensitiveContentDetected"


# --- what a scenario runs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One task to create, and how it must end."""

    user: str
    integration: str
    body: dict[str, Any]
    expect: str = "succeeded"
    # For a failed task: the error code it must end with.
    error_code: str | None = None

    @property
    def prompt(self) -> str:
        return str(self.body.get("prompt") or self.body.get("message"))


def unique(text: str) -> str:
    # The simulator counts attempts per exact prompt: every task gets its own.
    return f"{text} ({uuid.uuid4().hex[:8]})"


def image(user: str, prompt: str, *, expect: str = "succeeded", error_code: str | None = None) -> Job:
    return Job(user, IMAGE, {"prompt": unique(prompt), "image_size": "512"}, expect, error_code)


def video(
    user: str, prompt: str, *, last_frame: bool = False, expect: str = "succeeded", error_code: str | None = None
) -> Job:
    body: dict[str, Any] = {"prompt": unique(prompt), "duration": 2, "resolution": "480p"}
    if last_frame:
        body["return_last_frame"] = True
    return Job(user, VIDEO, body, expect, error_code)


def echo(user: str, message: str, delay_seconds: float = 0.0, *, expect: str = "succeeded") -> Job:
    return Job(user, ECHO, {"message": unique(message), "delay_seconds": delay_seconds}, expect)


@dataclass(frozen=True)
class Task:
    id: str
    job: Job


# --- clients -------------------------------------------------------------------------------------------------


def client(stack: LocalStack, user: str) -> Api:
    """``Api`` for one user, whose idle connections expire before main's keep-alive timeout (5 s) closes them: a
    request never goes out on a connection the server is closing at that moment."""
    api = Api(stack, user)
    api.http = httpx.AsyncClient(
        base_url=api.main_url,
        headers=api.http.headers,
        timeout=30,
        limits=httpx.Limits(keepalive_expiry=2.0),
    )
    return api


class EventLog:
    """Every event one user's websocket receives, read in the background. When communication drops the socket, the
    log reconnects with a fresh token from main and ``since=`` the last stream sequence it saw, as a frontend does,
    so it misses nothing. ``connections`` counts the sockets; ``resyncs`` the times communication could not replay
    what was missed. ``urls`` picks the communication replica for each connection (default: the one main names)."""

    def __init__(self, api: Api, urls: Callable[[], str | None] = lambda: None) -> None:
        self.api = api
        self.urls = urls
        self.events: list[dict[str, Any]] = []
        self.connections = 0
        self.resyncs = 0
        self.last_seq: int | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        ws = await self._connect()
        self._reader = asyncio.create_task(self._run(ws), name=f"events:{self.api.user}")

    async def _connect(self) -> ClientConnection:
        response = await self.api.http.post("/api/realtime/token")
        assert response.status_code == 201, response.text
        token = response.json()
        url = f"{self.urls() or token['url']}?token={token['token']}"
        if self.last_seq is not None:
            url += f"&since={self.last_seq}"
        ws = await connect(url, open_timeout=5)
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["event"] == "connected", hello
        if self.last_seq is None:
            self.last_seq = hello["seq"]
        self.connections += 1
        return ws

    async def _run(self, ws: ClientConnection) -> None:
        while True:
            with contextlib.suppress(ConnectionClosed):
                async for message in ws:
                    data = json.loads(message)
                    if data.get("event") == "resync":
                        self.resyncs += 1
                    if isinstance(data.get("seq"), int):
                        self.last_seq = data["seq"]
                    if "task_id" in data:
                        self.events.append(data)
            if self._closing:
                return
            ws = await self._reconnect()

    async def _reconnect(self) -> ClientConnection:
        delay = 0.1
        while True:
            try:
                return await self._connect()
            except (OSError, TimeoutError, httpx.HTTPError, InvalidHandshake, ConnectionClosed, AssertionError):
                # communication (or main, for the token) is not back yet: a client's backoff.
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def of(self, task_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("task_id") == task_id]

    def terminal(self, task_id: str) -> list[str]:
        return [e["status"] for e in self.of(task_id) if e.get("status") in TERMINAL_STATUSES]

    def versions(self, task_id: str) -> list[int]:
        return [int(e["version"]) for e in self.of(task_id)]

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)


def every_event_once(log: EventLog, task_id: str, final_version: int) -> str | None:
    """A task's events on one socket are each of its versions, once, in order (every applied change makes one
    event); what is wrong otherwise."""
    seen = log.versions(task_id)
    if seen == list(range(final_version + 1)):
        return None
    return f"task {task_id}: versions {seen} on {log.api.user}'s socket, expected 0..{final_version}"


class Simulator:
    """The provider simulator's control API."""

    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=10)
        self._initial_config: dict[str, Any] | None = None

    async def config(self, **patch: Any) -> dict[str, Any]:
        if self._initial_config is None:
            self._initial_config = (await self.http.get("/_sim/config")).json()
        response = await self.http.post("/_sim/config", json=patch)
        assert response.status_code in (200, 201), response.text
        body: dict[str, Any] = response.json()
        return body

    async def queue_faults(self, *faults: Mapping[str, Any]) -> None:
        response = await self.http.post("/_sim/faults", json=list(faults))
        assert response.status_code in (200, 201), response.text

    async def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = (await self.http.get("/_sim/stats")).json()
        return body

    async def requests(self) -> int:
        """Provider requests seen so far, over both providers and every route."""
        counts = (await self.stats())["requests"]
        return sum(int(n) for routes in counts.values() for n in routes.values())

    async def attempts(self, provider: str, prompt: str) -> int:
        return int((await self.stats())["prompt_attempts"].get(provider, {}).get(prompt, 0))

    async def ark_task(self, provider_task_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/_sim/ark/tasks/{provider_task_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def restore(self) -> None:
        """Drop pending faults and put the run-time config back to how the scenario found it."""
        await self.http.delete("/_sim/faults")
        if self._initial_config is not None:
            await self.http.post("/_sim/config", json=self._initial_config)
            self._initial_config = None

    async def close(self) -> None:
        await self.http.aclose()


@contextlib.asynccontextmanager
async def hooked_main(stack: LocalStack, log: Path, **hooks: str) -> AsyncIterator[Launcher]:
    """The stack's main replaced by ``tests.faults.main_create_faults`` (same ports and environment, with the hooks'
    settings added), serving; the stack's own main is started again afterwards."""
    spec = stack.specs(["main"])[0]
    await asyncio.to_thread(stack.stop, "main")
    hooked = Launcher({**stack.environ, **spec.env, **hooks}, [], log, module="tests.faults.main_create_faults")
    try:
        await hooked.wait_answering(f"{stack.main_url}/readyz")
        yield hooked
    finally:
        hooked.kill()
        await asyncio.to_thread(stack.start, "main")


class Workers:
    """One worker process per integration, as each runs in its own container; a scenario may SIGKILL them all."""

    def __init__(self, env: Mapping[str, str], log_dir: Path) -> None:
        self.env = dict(env)
        self.log_dir = log_dir
        self.procs: dict[str, Launcher] = {}
        self.starts = 0

    async def start(self) -> None:
        """Start every integration's worker that is not running, and wait until all serve."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        starting = []
        for name in INTEGRATIONS:
            current = self.procs.get(name)
            if current is not None and current.proc.poll() is None:
                continue
            self.starts += 1
            launcher = Launcher(self.env, [name], self.log_dir / f"{name}-{self.starts}.log")
            self.procs[name] = launcher
            starting.append(launcher)
        await asyncio.gather(*(launcher.wait_serving(60) for launcher in starting))

    def reports_retried(self, tasks: list[Task]) -> int:
        """How many of ``tasks`` have had a final report retried: a local activity, whose attempts only the
        workers' logs show while it runs (``ReportActivities.report_task``)."""
        logs = " ".join(path.read_text(errors="replace") for path in self.log_dir.glob("*.log"))
        return sum(1 for t in tasks if re.search(rf"report \w+ for task {t.id}: attempt \d+", logs))

    def kill(self) -> None:
        """SIGKILL every worker process (and its process group)."""
        for launcher in self.procs.values():
            launcher.kill()
        self.procs.clear()


# --- the checker ---------------------------------------------------------------------------------------------


@dataclass
class Platform:
    """The test's handles on the fault stack: users' clients and event logs, Temporal, the store, the bucket."""

    stack: LocalStack
    temporal: Client
    objects: ObjectStore
    store: TaskStore
    apis: dict[str, Api]
    logs: dict[str, EventLog]
    # Every task created through this platform, and the object keys of those already checked.
    created: dict[str, Task] = field(default_factory=dict)
    checked: dict[str, set[str]] = field(default_factory=dict)
    began: float = field(default_factory=time.monotonic)

    def mark(self, what: str) -> None:
        """A line of the scenario's timeline (shown with pytest -s, and in the report of a failed scenario)."""
        print(f"[{time.monotonic() - self.began:7.1f}s] {what}", flush=True)

    async def create(self, jobs: list[Job]) -> list[Task]:
        """Create the jobs concurrently, as clients would."""

        async def one(job: Job) -> Task:
            response = await self.apis[job.user].create(job.integration, job.body)
            assert response.status_code == 202, response.text
            task = Task(response.json()["id"], job)
            self.created[task.id] = task
            return task

        return list(await asyncio.gather(*(one(job) for job in jobs)))

    async def read(self, task: Task) -> dict[str, Any]:
        return await self.apis[task.job.user].task(task.id)

    async def wait_all(self, tasks: list[Task], statuses: set[str], timeout: float) -> list[dict[str, Any]]:
        """Wait until every task has one of ``statuses`` (as main answers, which syncs with Temporal)."""
        return list(await asyncio.gather(*(self.apis[t.job.user].wait_status(t.id, statuses, timeout) for t in tasks)))

    async def check(self, tasks: list[Task], *, timeout: float = 120) -> dict[str, dict[str, Any]]:
        """The end of every scenario: each task reached exactly one terminal state, the one its job expects; the
        store agrees with Temporal; every client saw every event of its tasks exactly once, in version order (and so
        one terminal event, the last); a succeeded task's objects are all in the bucket and nothing else is.
        Returns the final tasks."""
        self.mark(f"checking {len(tasks)} tasks")
        finals = await self.wait_all(tasks, set(TERMINAL_STATUSES), timeout)
        self.mark("every task is terminal")
        by_id = {t.id: final for t, final in zip(tasks, finals, strict=True)}
        problems = [
            f"{t.job.integration} {t.id} ({t.job.prompt}): {final['status']} {final['error']}, expected {t.job.expect}"
            f"{' ' + t.job.error_code if t.job.error_code else ''}"
            for t, final in zip(tasks, finals, strict=True)
            if final["status"] != t.job.expect
            or (t.job.error_code is not None and (final["error"] or {}).get("code") != t.job.error_code)
        ]
        assert not problems, "tasks ended otherwise than expected:\n  " + "\n  ".join(problems)

        # Events: a new task's first event proves that everything committed before it has been delivered.
        markers = await self._flush_events({t.job.user for t in tasks})
        for task in tasks:
            log = self.logs[task.job.user]
            final = by_id[task.id]
            problem = every_event_once(log, task.id, final["version"])
            assert problem is None, problem
            terminal = log.terminal(task.id)
            assert terminal == [final["status"]], f"task {task.id}: terminal events {terminal}, final {final['status']}"

        self.mark("events delivered")
        await self._agree_with_temporal([*tasks, *markers])
        await self._objects([*tasks, *markers])
        self.mark("checked: states, events, Temporal, objects")
        return by_id

    async def _flush_events(self, users: set[str]) -> list[Task]:
        markers = await self.create([echo(user, "marker") for user in sorted(users)])
        for marker in markers:
            log = self.logs[marker.job.user]

            async def queued(log: EventLog = log, marker: Task = marker) -> bool:
                return any(e.get("status") == "queued" for e in log.of(marker.id))

            await wait_for(queued, 30, f"{marker.job.user}'s marker event", interval=0.05)
        await self.wait_all(markers, {"succeeded"}, 60)
        return markers

    async def _agree_with_temporal(self, tasks: list[Task]) -> None:
        async def one(task: Task) -> str | None:
            handle = self.temporal.get_workflow_handle(workflow_id_for(task.id), result_type=TaskReport)

            async def closed() -> WorkflowExecutionStatus | None:
                status = (await handle.describe()).status
                return None if status in (None, WorkflowExecutionStatus.RUNNING) else status

            status = await wait_for(closed, 60, f"workflow of task {task.id} to close", interval=0.2)
            record = await self.store.get(task.id)
            assert record is not None, f"task {task.id} is not in the store"
            keys: set[str] = set()
            code = None
            if status == WorkflowExecutionStatus.COMPLETED:
                report = await handle.result()
                expected = report.status
                keys = {o.key for o in report.result.objects.values()} if report.result else set()
                code = report.error.code if report.error else None
            elif status == WorkflowExecutionStatus.CANCELED:
                expected = "cancelled"
            else:
                expected = "failed"
            stored_keys = {o.key for o in record.result.objects.values()} if record.result else set()
            stored_code = record.error.code if record.error else None
            if (record.status, stored_keys) != (expected, keys) or (code is not None and stored_code != code):
                return (
                    f"task {task.id}: store {record.status} {sorted(stored_keys)} {stored_code}, "
                    f"Temporal {status.name} {expected} {sorted(keys)} {code}"
                )
            return None

        disagreements = [p for p in await asyncio.gather(*(one(t) for t in tasks)) if p]
        assert not disagreements, "the store disagrees with Temporal:\n  " + "\n  ".join(disagreements)

    async def _sizes(self, prefix: str) -> dict[str, int]:
        """Every object under ``prefix`` with its size, as the S3 server lists them."""
        settings = self.objects.settings
        s3 = Minio(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=settings.secure,
            region=settings.region,
        )

        def run() -> dict[str, int]:
            listed = s3.list_objects(self.objects.bucket, prefix=prefix, recursive=True)
            return {str(o.object_name): int(o.size or 0) for o in listed}

        return await asyncio.to_thread(run)

    async def _objects(self, tasks: list[Task]) -> None:
        problems = []
        for task in tasks:
            record = await self.store.get(task.id)
            assert record is not None
            expected: dict[str, int] = {}
            # Only a succeeded task has objects (no integration documents any for failed or cancelled ones).
            if record.status == "succeeded" and record.result is not None:
                expected = {o.key: o.size for o in record.result.objects.values()}
            found = await self._sizes(f"tasks/{task.id}/")
            if found != expected:
                problems.append(f"task {task.id} ({record.status}): bucket {found}, wanted {expected}")
            self.checked[task.id] = set(expected)
        # Nothing in the bucket that belongs to no task, or that no checked task names (also catches late writes).
        for key in await self.objects.list_keys("tasks/"):
            owner = key.split("/")[1]
            if owner in self.checked:
                if key not in self.checked[owner]:
                    problems.append(f"stray object {key}")
            elif owner not in self.created:
                problems.append(f"object {key} of no task")
        assert not problems, "objects in the bucket:\n  " + "\n  ".join(problems)


# --- conditions scenarios wait on ------------------------------------------------------------------------------


async def all_submitted(platform: Platform, tasks: list[Task], timeout: float = 60) -> dict[str, str]:
    """Wait until every video task is running on Ark; its provider task id by task id."""
    videos = [t for t in tasks if t.job.integration == VIDEO]

    async def ids() -> dict[str, str] | None:
        found = {}
        for task in videos:
            read = await platform.read(task)
            if read["provider_task_id"] is None:
                return None
            found[task.id] = str(read["provider_task_id"])
        return found

    return await wait_for(ids, timeout, "every video task to be submitted to Ark", interval=0.2)


async def retried_activities(platform: Platform, task: Task) -> dict[str, int]:
    """The workflow's pending activities that are past their first attempt: attempt by activity type."""
    handle = platform.temporal.get_workflow_handle(workflow_id_for(task.id))
    pending = (await handle.describe()).raw_description.pending_activities
    return {a.activity_type.name: a.attempt for a in pending if a.attempt >= 2}


async def work_pending(platform: Platform, task: Task) -> bool:
    """The workflow still has a pending activity other than its reports."""
    handle = platform.temporal.get_workflow_handle(workflow_id_for(task.id))
    pending = (await handle.describe()).raw_description.pending_activities
    return any(a.activity_type.name != REPORT_ACTIVITY for a in pending)


async def attempt_running(platform: Platform, task: Task) -> bool:
    """A retry of the workflow's work (an activity other than its reports) is running on a worker (its state is
    STARTED). A retried report does not count: it means the work is done and main has not taken the outcome yet."""
    handle = platform.temporal.get_workflow_handle(workflow_id_for(task.id))
    pending = (await handle.describe()).raw_description.pending_activities
    return any(
        a.activity_type.name != REPORT_ACTIVITY
        and a.attempt >= 2
        and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
        for a in pending
    )


async def workflow_tasks_completed(platform: Platform, tasks: list[Task]) -> int:
    """Workflow tasks completed so far over the tasks' workflows (current runs): only a live worker completes one."""

    async def one(task: Task) -> int:
        handle = platform.temporal.get_workflow_handle(workflow_id_for(task.id))
        completed = [
            event
            async for event in handle.fetch_history_events()
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        ]
        return len(completed)

    return sum(await asyncio.gather(*(one(t) for t in tasks)))


async def activity_attempts(platform: Platform, task: Task) -> list[int]:
    """The attempt number of each activity of the task's workflow (current run) that finished: an activity that
    was retried shows attempt 2 or more."""
    handle = platform.temporal.get_workflow_handle(workflow_id_for(task.id))
    return [
        event.activity_task_started_event_attributes.attempt
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
