"""Provider queries per video task and how long after the provider finishes the platform notices, with and
without Ark's callbacks.

Two parts:

- modelled: the real fangzhouVideoGeneration workflow in Temporal's time-skipping test server, with mock
  activities under the real names. The mock Ark job finishes T seconds (workflow time) after the submit; without
  callbacks the workflow finds out at its next poll, with callbacks the mock sends the callback signal at T.
  Queries are the query activity's calls; the detection delay is the workflow time of the query that saw
  ``succeeded`` minus T. The poll policy is the worker's default (``PollPolicy()``: 5 s, x1.5, capped at 30 s).
- real: a short job on the provider simulator through the whole local stack (main, worker, Temporal), once with
  callbacks reaching main and once with main's callback URL pointing at a closed port. The delay is measured on
  the simulator's control API (sampled every few ms): from the job turning ``succeeded`` to the next query.

Targets (benchmarks issue): at most 15 queries for a 5-minute job; delay at most the backoff cap without
callbacks and at most 1 s with them.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from temporalio import activity
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from integrations.fangzhou_video_generation.schemas import (
    NAMES,
    ArkTaskView,
    VideoCopy,
    VideoInput,
    VideoRequest,
    VideoSubmit,
)
from integrations.fangzhou_video_generation.workflows.workflows import FangzhouVideoWorkflow
from services.async_task.launcher import WORKFLOW_RUNNER
from services.shared.converter import data_converter
from services.shared.reporting import REPORT_ACTIVITY, ReportInput
from services.shared.submit_poll import (
    CALLBACK_SIGNAL,
    CallbackHint,
    CancelOutcome,
    Copied,
    JobRef,
    PollPolicy,
    Submitted,
)
from services.shared.tasks import ReportOutcome, StoredObject, TaskEnvelope

from .harness import Bench, describe_machine, free_port, local_stack, percentile, stop_process, table, wait_until

NAME = "fangzhouVideoGeneration"
JOB_MINUTES = (1, 5, 30)
# Real runs: Ark's queue and run phases on the simulator. An 8 s job ends between the first two polls (5 s and
# 12.5 s after the submit) with room for a slow submit, so without callbacks the second poll finds it.
REAL_QUEUE_SECONDS = 1.0
REAL_RUN_SECONDS = 7.0
REAL_TASKS = 3
SAMPLE_SECONDS = 0.005
QUERY_TARGET_5_MIN = 15
CALLBACK_DELAY_TARGET = 1.0
# Each env.sleep is one RPC to the test server; long ones are split.
SLEEP_STEP = timedelta(minutes=5)


# --- modelled: time-skipping ---------------------------------------------------------------------------------


class MockArk:
    """An Ark job that ends ``job_seconds`` after the submit, or when ``finish`` is called (the callback case)."""

    def __init__(self, job_seconds: float, callbacks: bool) -> None:
        self.job_seconds = job_seconds
        self.callbacks = callbacks
        self.submitted_at: datetime | None = None
        self.finished_at: datetime | None = None
        self.queries: list[tuple[datetime, str]] = []

    def finish_time(self) -> datetime | None:
        if self.callbacks:
            return self.finished_at
        assert self.submitted_at is not None
        return self.submitted_at + timedelta(seconds=self.job_seconds)

    @activity.defn(name=REPORT_ACTIVITY)
    async def report(self, input: ReportInput) -> ReportOutcome:
        return ReportOutcome(applied=True, status=input.report.status)

    @activity.defn(name=NAMES.submit)
    async def submit(self, input: VideoSubmit) -> Submitted:
        self.submitted_at = activity.info().current_attempt_scheduled_time
        return Submitted("cgt-bench", input.poll or PollPolicy())

    @activity.defn(name=NAMES.query)
    async def query(self, input: JobRef) -> ArkTaskView:
        at = activity.info().current_attempt_scheduled_time
        finish = self.finish_time()
        status = "succeeded" if finish is not None and at >= finish else "running"
        self.queries.append((at, status))
        if status == "succeeded":
            return ArkTaskView(id=input.provider_task_id, status=status, video_url="https://ark.example/v.mp4")
        return ArkTaskView(id=input.provider_task_id, status=status)

    @activity.defn(name=NAMES.cancel)
    async def cancel(self, input: JobRef) -> CancelOutcome:
        return CancelOutcome(cancelled=False, status="running")

    @activity.defn(name=NAMES.copy)
    async def copy(self, input: VideoCopy) -> Copied:
        return Copied(objects={"video": StoredObject(f"tasks/{input.task.id}/video.mp4", "video/mp4", 1)})

    def detection_delay(self) -> float:
        finish = self.finish_time()
        detected = next(at for at, status in self.queries if status == "succeeded")
        assert finish is not None
        return (detected - finish).total_seconds()


async def modelled_job(env: WorkflowEnvironment, minutes: int, callbacks: bool) -> MockArk:
    ark = MockArk(minutes * 60.0, callbacks)
    queue = f"bench-polling-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[FangzhouVideoWorkflow],
        activities=[ark.report, ark.submit, ark.query, ark.cancel, ark.copy],
        workflow_runner=WORKFLOW_RUNNER,
    ):
        handle = await env.client.start_workflow(
            FangzhouVideoWorkflow.run,
            VideoInput(TaskEnvelope("bench"), VideoRequest(prompt="a paper boat")),
            id=f"bench-polling-{uuid.uuid4()}",
            task_queue=queue,
            execution_timeout=timedelta(days=3),
        )
        if callbacks:

            async def submitted() -> bool:
                return ark.submitted_at is not None

            await wait_until(submitted, 60, "the submit")
            left = timedelta(seconds=ark.job_seconds)
            while left > timedelta(0):
                step = min(left, SLEEP_STEP)
                await env.sleep(step)
                left -= step
            ark.finished_at = await env.get_current_time()
            await handle.signal(CALLBACK_SIGNAL, CallbackHint(provider_task_id="cgt-bench", status="succeeded"))
        result = await asyncio.wait_for(handle.result(), 600)
        if result.status != "succeeded":
            raise RuntimeError(f"modelled {minutes}-minute job ended {result.status}")
    return ark


async def modelled() -> list[list[object]]:
    server = Path(sys.executable).parent / "temporal-test-server"
    if not server.exists():
        raise RuntimeError(f"{server.name} not found next to the interpreter; install the dev dependencies")
    # The SDK core warns that the test server is older than it likes; only errors are of interest here.
    quiet = Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
        )
    )
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter, test_server_existing_path=str(server), runtime=quiet
    )
    rows: list[list[object]] = []
    try:
        for minutes in JOB_MINUTES:
            for callbacks in (False, True):
                ark = await modelled_job(env, minutes, callbacks)
                rows.append(
                    [
                        f"{minutes} min",
                        "yes" if callbacks else "no",
                        len(ark.queries),
                        f"{ark.detection_delay():.2f}",
                    ]
                )
    finally:
        await env.shutdown()
    return rows


# --- real: the local stack and the simulator -----------------------------------------------------------------


class Observed:
    def __init__(self, delay: float, queries: int, callbacks: int, resolution: float) -> None:
        self.delay = delay
        self.queries = queries
        self.callbacks = callbacks
        # Longest gap between two samples around the finish and the detection: the delay's uncertainty.
        self.resolution = resolution


async def watch(sim: httpx.AsyncClient, provider_task_id: str, within: float) -> Observed:
    """Sample the simulator's view of one Ark task: when it turned succeeded (the midpoint of the last sample
    that saw it running and the first that saw it done) and when the next query after that arrived (the first
    sample whose query count exceeds the count the last running sample saw). Each sample's time is the middle
    of its request."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    previous: tuple[float, int] | None = None
    finished: float | None = None
    before = 0
    gaps: list[float] = []
    while loop.time() < deadline:
        sent = time.monotonic()
        info = (await sim.get(f"/_sim/ark/tasks/{provider_task_id}")).json()
        now = (sent + time.monotonic()) / 2
        queries: int = info["queries"]
        if finished is None:
            if info["task"]["status"] == "succeeded" and previous is not None:
                finished, before = (previous[0] + now) / 2, previous[1]
                gaps.append(now - previous[0])
            elif info["task"]["status"] != "succeeded":
                previous = (now, queries)
        if finished is not None and queries > before:
            assert previous is not None
            gaps.append(now - previous[0])
            delivered = sum(1 for c in info["callbacks"] if c.get("delivered"))
            return Observed(max(0.0, now - finished), queries, delivered, max(gaps))
        if finished is not None:
            previous = (now, queries)
        await asyncio.sleep(SAMPLE_SECONDS)
    raise TimeoutError(f"Ark task {provider_task_id} was not queried after it finished within {within:g}s")


async def real_jobs(bench: Bench) -> list[Observed]:
    async with (
        bench.user_client() as http,
        httpx.AsyncClient(base_url=bench.stack.simulator_url, timeout=10) as sim,
    ):
        response = await sim.post(
            "/_sim/config", json={"ark_queue_seconds": REAL_QUEUE_SECONDS, "ark_run_seconds": REAL_RUN_SECONDS}
        )
        response.raise_for_status()

        async def one(i: int) -> Observed:
            created = await http.post(f"/api/integrations/{NAME}/tasks", json={"prompt": f"a paper boat, take {i}"})
            created.raise_for_status()
            task_id = created.json()["id"]

            async def provider_id() -> str | None:
                task = (await http.get(f"/api/tasks/{task_id}")).json()
                found: str | None = task.get("provider_task_id")
                return found

            provider_task_id = await wait_until(provider_id, 60, "the Ark task id", interval=0.05)
            return await watch(sim, provider_task_id, 120)

        return list(await asyncio.gather(*(one(i) for i in range(REAL_TASKS))))


async def real(callbacks: bool) -> list[Observed]:
    # Without callbacks: Ark's callbacks go to a port nobody listens on (the simulator logs and drops them).
    extra = {} if callbacks else {"MAIN_PUBLIC_URL": f"http://127.0.0.1:{free_port()}"}
    async with local_stack(extra) as bench:
        worker = bench.start_worker([NAME], "video-worker")
        try:
            await bench.wait_worker("video-worker")
            return await real_jobs(bench)
        finally:
            stop_process(worker)


async def run() -> None:
    modelled_rows = await modelled()
    with_callbacks = await real(callbacks=True)
    without = await real(callbacks=False)
    default = PollPolicy()
    print(f"machine: {describe_machine()}")
    print(
        f"modelled (time-skipping, real workflow, mock Ark): poll policy {default.initial_seconds:g} s, "
        f"x{default.backoff:g}, cap {default.max_seconds:g} s"
    )
    print(table(["job", "callbacks", "queries", "detection delay s"], modelled_rows))
    job = REAL_QUEUE_SECONDS + REAL_RUN_SECONDS
    print(f"real (local stack, simulator): {REAL_TASKS} concurrent {job:g} s jobs each way")
    rows: list[list[object]] = []
    for label, observed in (("yes", with_callbacks), ("no (callback URL unreachable)", without)):
        delays = [o.delay for o in observed]
        rows.append(
            [
                label,
                ", ".join(str(o.queries) for o in observed),
                f"{percentile(delays, 50):.3f}",
                f"{max(delays):.3f}",
                ", ".join(str(o.callbacks) for o in observed),
            ]
        )
    print(table(["callbacks", "queries", "delay p50 s", "delay max s", "callbacks delivered"], rows))
    resolution = max(o.resolution for o in [*with_callbacks, *without])
    print(f"  delays are sampled on the simulator's control API: within +-{resolution * 1000:.0f} ms")
    five = next(r for r in modelled_rows if r[0] == "5 min" and r[1] == "no")
    print(
        f"  targets: <= {QUERY_TARGET_5_MIN} queries for a 5-minute job: "
        f"{'met' if int(str(five[2])) <= QUERY_TARGET_5_MIN else 'missed'} ({five[2]}); "
        f"delay <= cap {default.max_seconds:g} s without callbacks: "
        f"{'met' if all(float(str(r[3])) <= default.max_seconds for r in modelled_rows) else 'missed'}; "
        f"<= {CALLBACK_DELAY_TARGET:g} s with callbacks (real): "
        f"{'met' if max(o.delay for o in with_callbacks) <= CALLBACK_DELAY_TARGET else 'missed'}"
    )


if __name__ == "__main__":
    asyncio.run(run())
