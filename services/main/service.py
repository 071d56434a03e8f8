"""Task business logic: create, read with query-time sync, cancel, apply reports, and the events they produce."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowHistoryEventFilterType,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from services.shared.discovery import Integration
from services.shared.events import TaskEvent
from services.shared.outbound import OutboundError
from services.shared.storage import ObjectStore
from services.shared.tasks import (
    DEFAULT_PRIORITY,
    ReportOutcome,
    TaskEnvelope,
    TaskError,
    TaskReport,
    TaskResult,
    is_terminal,
    object_key_problem,
    objects_prefix,
    temporal_priority,
    workflow_id_for,
)

from .callback_tokens import callback_token
from .errors import ApiError, not_found, temporal_unreachable
from .kit import IntegrationApi, NewTask
from .relay import OutboxRelay
from .schemas import (
    ActiveTasks,
    Limits,
    ObjectRead,
    OutputRead,
    RequestRate,
    TaskRead,
    WebhookDeliveryRead,
    WebhookSecretRead,
)
from .settings import MainSettings
from .stalls import execution_timeout, is_stalled, last_task_failure
from .store import (
    WEBHOOK_EVENTS,
    Bucket,
    Charge,
    OutboxEvent,
    RateLimitedError,
    SigningSecrets,
    StoreConflictError,
    TaskDeletedError,
    TaskRecord,
    TaskStore,
    TooManyActiveTasksError,
    WebhookEvent,
)
from .webhooks.signing import new_secret
from .webhooks.starter import DeliveryStarter

log = logging.getLogger("main.tasks")

# The wait before a workflow start's second attempt; doubled for each further one.
START_BACKOFF_SECONDS = 0.2


class StartFailedError(Exception):
    """Every attempt to start a task's workflow failed. ``may_have_reached``: some attempt may have reached Temporal
    (and so the workflow may run); False only when the client never connected."""

    def __init__(self, cause: BaseException, may_have_reached: bool) -> None:
        super().__init__(repr(cause))
        self.may_have_reached = may_have_reached


class WebhookOptions(msgspec.Struct, frozen=True):
    """A create's ``webhook_url`` and ``webhook_events`` as the client sent them (None: not sent)."""

    url: str | None = None
    events: list[str] | None = None


@dataclass(frozen=True)
class CreateOptions:
    """main's options of a create, beside the integration's request."""

    priority: int = DEFAULT_PRIORITY
    # None: the integration's default deadline.
    deadline_seconds: float | None = None
    webhook: WebhookOptions = field(default_factory=WebhookOptions)


def request_digest(
    input_json: Any, options: CreateOptions, webhook_url: str | None = None, webhook_events: Sequence[str] = ()
) -> str:
    """What an ``Idempotency-Key`` is bound to: the request and main's options as the client gave them (the webhook
    as validated). An option left out adds nothing, so tasks created before an option existed keep their digest."""
    encoded = msgspec.json.encode(input_json, order="sorted")
    if options.priority != DEFAULT_PRIORITY:
        encoded += b"\npriority=%d" % options.priority
    if options.deadline_seconds is not None:
        encoded += b"\ndeadline_seconds=" + repr(options.deadline_seconds).encode()
    if webhook_url is not None:
        encoded += b"\nwebhook=" + msgspec.json.encode([webhook_url, *webhook_events])
    return hashlib.sha256(encoded).hexdigest()


class TaskService:
    def __init__(
        self,
        settings: MainSettings,
        store: TaskStore,
        temporal: Client,
        relay: OutboxRelay,
        objects: ObjectStore,
        integrations: Mapping[str, tuple[Integration, IntegrationApi[Any]]] | None = None,
        deliveries: DeliveryStarter | None = None,
    ) -> None:
        self.settings = settings
        # Starts the workflows of the webhook deliveries that applied changes are due to send.
        self.deliveries = deliveries
        # The integrations main serves, by name: how the reconciler starts a stored task.
        self.integrations = dict(integrations or {})
        self.store = store
        self.temporal = temporal
        self.relay = relay
        self.objects = objects
        # The integrations whose providers call back (their API declares a callback route).
        self.callbacks = frozenset(name for name, (_, api) in self.integrations.items() if api.callback is not None)

    # -- create ---------------------------------------------------------------------------------------

    async def create(
        self,
        owner: str,
        integration: Integration,
        api: IntegrationApi[Any],
        request: Any,
        idempotency_key: str | None,
        options: CreateOptions = CreateOptions(),
        *,
        key_id: str,
    ) -> tuple[TaskRecord, bool]:
        """Store a queued task and start its workflow. The create counts against the rate limit of the API key
        ``key_id`` (``take_request``) in the transaction that stores it; a create refused for its input before it
        is stored counts for nothing."""
        priority = options.priority
        webhook_url, webhook_events = self._webhook(options.webhook)
        highest = self.settings.highest_priority_for(owner)
        if priority < highest:
            raise ApiError(
                403,
                "priority_not_allowed",
                f"priority: {priority} is more urgent than you may ask for (at most {highest})",
                details={"field": "priority", "highest": highest},
            )
        deadline_seconds = _deadline_seconds(integration, options.deadline_seconds)
        if api.check is not None:
            api.check(request)
        input_json = msgspec.to_builtins(request)
        digest = request_digest(input_json, options, webhook_url, webhook_events)
        try:
            record, created = await self.store.create(
                integration=integration.name,
                owner=owner,
                input=input_json,
                idempotency_key=idempotency_key,
                request_digest=digest,
                priority=priority,
                deadline_seconds=deadline_seconds,
                event=self._event,
                max_active=self.settings.max_active_tasks_for(owner),
                webhook_url=webhook_url,
                webhook_events=webhook_events,
                charge=Charge(key_id, self._bucket, time.time()),
            )
        except RateLimitedError as exc:
            raise self._rate_limited(exc.wait) from exc
        except StoreConflictError as exc:
            raise ApiError(409, "idempotency_conflict", str(exc)) from exc
        except TaskDeletedError as exc:
            raise ApiError(
                409,
                "task_deleted",
                f"Idempotency-Key {idempotency_key!r} was used for task {exc.record.id}, which was deleted; "
                "create with another key",
            ) from exc
        except TooManyActiveTasksError as exc:
            limit = self.settings.max_active_tasks_for(owner)
            retry_after = self.settings.active_tasks_retry_after_seconds
            raise ApiError(
                429,
                "too_many_active_tasks",
                f"you have {limit} tasks queued or running, as many as you may; create more once some have finished",
                retryable=True,
                details={"limit": limit, "retry_after_seconds": retry_after},
                headers={"Retry-After": str(retry_after)},
            ) from exc
        if not created:
            if record.status == "queued":
                # The create that made it may not have started its workflow: this retry does (harmless if it did).
                record = await self._start_again(record, integration, api, request)
            return record, False
        # The `queued` event is committed with the task, before the workflow starts: an activity's `running`
        # report, however early, commits after it and so follows it in the stream.
        try:
            await self.start(record, integration, api, request)
        except StartFailedError as exc:
            if exc.may_have_reached:
                # The workflow may be running: the task stays, queued, and the reconciler (or an idempotent retry)
                # starts it; a start of a workflow that runs already changes nothing.
                log.warning("workflow of task %s not confirmed started; left to the reconciler: %r", record.id, exc)
                self.relay.wake()
                return record, True
            # Temporal was never reached, so nothing runs: the client gets a retryable error and may retry safely.
            # A relay may have published the task's first event already; the deletion's event follows it.
            await self.store.delete(record.id, self._deleted_event)
            self.relay.wake()
            log.warning("could not start workflow for task %s: %r", record.id, exc)
            raise ApiError(503, "temporal_unavailable", "could not start the task; try again", True) from exc
        self.relay.wake()
        return record, True

    def _webhook(self, options: WebhookOptions) -> tuple[str | None, tuple[WebhookEvent, ...]]:
        """The webhook URL and events of a create, checked: the URL by the webhook outbound rules, the events against
        those there are (``completed`` when none are given). 422 naming the field otherwise."""
        if options.url is None:
            if options.events is not None:
                raise _webhook_error("webhook_events", "needs a webhook_url to be sent to")
            return None, ()
        try:
            self.settings.webhooks.outbound.check_destination(options.url)
        except OutboundError as exc:
            raise _webhook_error("webhook_url", exc.message) from None
        chosen = ["completed"] if options.events is None else options.events
        unknown = sorted(set(chosen) - set(WEBHOOK_EVENTS))
        if unknown or not chosen:
            problem = f"unknown events {unknown}" if unknown else "at least one event is needed"
            raise _webhook_error("webhook_events", f"{problem}; the events are {list(WEBHOOK_EVENTS)}")
        return options.url, tuple(e for e in WEBHOOK_EVENTS if e in chosen)

    async def start(self, record: TaskRecord, integration: Integration, api: IntegrationApi[Any], request: Any) -> bool:
        """Start the task's workflow, at the task's priority: up to MAIN_START_ATTEMPTS attempts of at most
        MAIN_START_TIMEOUT_SECONDS each. The workflow id is the task's, and its policies make a repeated start
        harmless: a running workflow is returned as it is (USE_EXISTING), a closed one is never run again
        (REJECT_DUPLICATE). False when the workflow had already run and closed (started by an earlier attempt or
        call). Raises ``StartFailedError`` when every attempt failed."""
        deadline = record.deadline_at.timestamp() if record.deadline_at is not None else None
        task = TaskEnvelope(record.id, priority=record.priority, user=record.owner, deadline=deadline)
        attempts = self.settings.start_attempts
        reached = False
        for attempt in range(1, attempts + 1):
            try:
                async with asyncio.timeout(self.settings.start_timeout_seconds):
                    await self.temporal.start_workflow(
                        api.workflow,
                        api.build_input(NewTask(task, request)),
                        id=workflow_id_for(record.id),
                        task_queue=integration.task_queue,
                        priority=temporal_priority(task),
                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                        execution_timeout=api.execution_timeout,
                    )
                return True
            except WorkflowAlreadyStartedError:
                return False
            except Exception as exc:
                # Only a client that never connected is sure its request went nowhere.
                reached = reached or not temporal_unreachable(exc)
                if attempt == attempts:
                    raise StartFailedError(exc, reached) from exc
                log.info("start of task %s's workflow, attempt %d of %d: %r", record.id, attempt, attempts, exc)
                await asyncio.sleep(min(START_BACKOFF_SECONDS * 2 ** (attempt - 1), 2.0))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def start_stored(self, record: TaskRecord) -> TaskRecord:
        """Start the workflow of a task that is queued in the store (the reconciler's way): its request is read back
        from the task's stored input, and it runs at the task's stored priority. A task of an integration main no
        longer serves is left as it is."""
        mounted = self.integrations.get(record.integration)
        if mounted is None:
            log.warning("task %s: integration %r is not served here; not started", record.id, record.integration)
            return record
        integration, api = mounted
        request = msgspec.json.decode(msgspec.json.encode(record.input), type=api.request_type)
        # A workflow that ran and closed while the task stayed queued (its reports lost): take its outcome.
        return record if await self.start(record, integration, api, request) else await self.sync(record)

    async def _start_again(
        self, record: TaskRecord, integration: Integration, api: IntegrationApi[Any], request: Any
    ) -> TaskRecord:
        try:
            started = await self.start(record, integration, api, request)
        except StartFailedError as exc:
            log.warning("workflow of task %s still not started; left to the reconciler: %r", record.id, exc)
            return record
        return record if started else await self.sync(record)

    # -- limits ---------------------------------------------------------------------------------------

    @property
    def _bucket(self) -> Bucket:
        return Bucket(self.settings.rate_limit_per_second, self.settings.rate_limit_burst)

    async def take_request(self, key_id: str) -> None:
        """Count a create or a task action against the API key's rate limit; 429 when its bucket is empty."""
        wait = await self.store.take_token(key_id, self._bucket, time.time())
        if wait is not None:
            raise self._rate_limited(wait)

    def _rate_limited(self, wait: float) -> ApiError:
        retry_after = max(1, math.ceil(wait))
        return ApiError(
            429,
            "rate_limited",
            f"too many requests with this API key: at most {self.settings.rate_limit_per_second:g} a second "
            f"(bursts of {self.settings.rate_limit_burst})",
            retryable=True,
            details={"retry_after_seconds": retry_after},
            headers={"Retry-After": str(retry_after)},
        )

    async def limits(self, owner: str, key_id: str) -> Limits:
        bucket = self._bucket
        return Limits(
            active_tasks=ActiveTasks(
                limit=self.settings.max_active_tasks_for(owner), used=await self.store.active_tasks(owner)
            ),
            requests=RequestRate(
                per_second=bucket.per_second,
                burst=bucket.burst,
                available=await self.store.tokens(key_id, bucket, time.time()),
            ),
            highest_priority=self.settings.highest_priority_for(owner),
            default_priority=DEFAULT_PRIORITY,
        )

    async def callback_url(self, task_id: str) -> str | None:
        """Where the task's provider may call back, with the task's token (derived, never stored); None when its
        integration takes no callbacks. Asked by the submit activity, so the URL never enters Temporal's history."""
        record = await self.store.get(task_id)
        if record is None:
            raise not_found(f"task {task_id}")
        if record.integration not in self.callbacks:
            return None
        token = callback_token(self.settings.callback_keys.current, record.id)
        route = f"/api/integrations/{record.integration}/tasks/{record.id}/callback"
        return f"{self.settings.public_url}{route}?secret={token}"

    # -- read -----------------------------------------------------------------------------------------

    async def get_for(self, owner: str, task_id: str, integration: str | None = None, sync: bool = True) -> TaskRecord:
        record = await self.store.get(task_id)
        # Another user's task is reported as missing, so ids leak nothing.
        if record is None or record.owner != owner or (integration is not None and record.integration != integration):
            raise not_found(f"task {task_id}")
        if sync and not is_terminal(record.status):
            record = await self.sync(record)
        return record

    async def sync(self, record: TaskRecord) -> TaskRecord:
        """Bring a non-terminal task up to date from Temporal, so a lost report cannot leave it stuck."""
        try:
            report = await asyncio.wait_for(self._state_from_temporal(record), self.settings.sync_timeout_seconds)
        except (TimeoutError, RPCError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and not temporal_unreachable(exc):
                raise
            log.info("query-time sync of task %s skipped: %r", record.id, exc)
            return record
        if report is None:
            return record
        if isinstance(report, TaskError):
            # Said on this read, not stored: the task is where its workflow left it until that goes on or ends.
            return msgspec.structs.replace(record, error=report)
        if report.result is not None and report.result.objects:
            try:
                problem = await self._objects_problem(record.id, report.result)
            except Exception as exc:
                log.info("query-time sync of task %s skipped: objects not checked: %r", record.id, exc)
                return record
            if problem is not None:
                # The workflow itself claimed an object the task may not have: it does not get it.
                log.warning("task %s: workflow result refused: %s", record.id, problem[1])
                report = TaskReport(status="failed", error=TaskError("invalid_result", problem[1]))
        _, current = await self.apply(record.id, report)
        return current

    async def _state_from_temporal(self, record: TaskRecord) -> TaskReport | TaskError | None:
        """The task's state as its workflow has it; a TaskError when the workflow is stuck (its workflow tasks
        keep failing, so it answers no query); None when there is no workflow."""
        handle = self.temporal.get_workflow_handle(workflow_id_for(record.id))
        try:
            description = await handle.describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        status = description.status
        if status == WorkflowExecutionStatus.RUNNING and is_stalled(description):
            reason = await last_task_failure(self.temporal, description) or "its workflow tasks keep failing"
            return TaskError("stalled", f"stalled: {reason}")
        if status == WorkflowExecutionStatus.RUNNING:
            state: TaskReport = await handle.query("task_state", result_type=TaskReport)
            return state
        if status == WorkflowExecutionStatus.COMPLETED:
            result = await self.temporal.get_workflow_handle(handle.id, result_type=TaskReport).result()
            assert isinstance(result, TaskReport)
            return result
        if status == WorkflowExecutionStatus.CANCELED:
            return TaskReport(status="cancelled", error=TaskError("cancelled", "the task was cancelled"))
        if status == WorkflowExecutionStatus.TIMED_OUT:
            return TaskReport(status="failed", error=await self._timed_out(description))
        name = status.name.lower() if status is not None else "unknown"
        message = f"the task's workflow {name}"
        if status == WorkflowExecutionStatus.TERMINATED:
            message += await _termination_reason(handle)
        return TaskReport(status="failed", error=TaskError(f"workflow_{name}", message, True))

    async def _timed_out(self, description: WorkflowExecutionDescription) -> TaskError:
        timeout = execution_timeout(description)
        message = "the task's workflow did not finish within its execution timeout"
        message += f" ({timeout})" if timeout is not None else ""
        reason = await last_task_failure(self.temporal, description)
        if reason is not None:
            message += f"; it was stalled: {reason}"
        return TaskError("workflow_timed_out", message, True)

    async def list(
        self, owner: str, integration: str | None, status: str | None, limit: int, offset: int
    ) -> tuple[list[TaskRecord], int]:
        return await self.store.list(owner=owner, integration=integration, status=status, limit=limit, offset=offset)

    # -- change ---------------------------------------------------------------------------------------

    async def report(self, task_id: str, report: TaskReport) -> ReportOutcome:
        """A worker's report (the internal API). The objects it names must lie under the task's own prefix and
        exist; otherwise it is refused with 422 naming the key, and nothing is applied or published."""
        if report.result is not None and report.result.objects:
            record = await self.store.get(task_id)
            # A finished task takes no report at all, nor does a deleted one (None here): apply says so, whatever
            # objects it names (and apply answers 404 for a task that does not exist).
            finished = record is None or is_terminal(record.status)
            problem = None if finished else await self._objects_problem(task_id, report.result)
            if problem is not None:
                key, message = problem
                raise ApiError(422, "invalid_object_key", message, details={"key": key})
        outcome, _ = await self.apply(task_id, report)
        return outcome

    async def _objects_problem(self, task_id: str, result: TaskResult) -> tuple[str, str] | None:
        """The first object of ``result`` the task may not name, and why; None when all may be named."""
        for obj in result.objects.values():
            problem = object_key_problem(task_id, obj.key)
            if problem is not None:
                return obj.key, problem
        keys = [obj.key for obj in result.objects.values()]
        found = await asyncio.gather(*(self.objects.exists(key) for key in keys))
        for key, exists in zip(keys, found, strict=True):
            if not exists:
                return key, f"object {key!r} does not exist"
        return None

    async def apply(self, task_id: str, report: TaskReport) -> tuple[ReportOutcome, TaskRecord]:
        """The one path by which task state changes: applied at most once, one event per applied change."""
        try:
            outcome, record, _ = await self.store.apply_report(task_id, report, self._event)
        except KeyError:
            raise not_found(f"task {task_id}") from None
        except TaskDeletedError as exc:
            # Acknowledged, so the worker does not retry it, and nothing changes: a deleted task has no more events.
            # Its last report (the cancellation's, or an activity's that was not cancelled in time) may follow
            # uploads that landed after the delete: they are removed (an object store away fails the report, which
            # the worker retries).
            if is_terminal(report.status):
                await self.discard_objects(task_id, "is deleted")
            return ReportOutcome(applied=False, status=exc.record.status, reason="the task was deleted"), exc.record
        if outcome.applied:
            self.relay.wake()
            # Only a task with a webhook can have had deliveries written: the others cost the starter no read.
            if self.deliveries is not None and record.webhook_url is not None:
                self.deliveries.wake()
        return outcome, record

    async def cancel(self, owner: str, task_id: str) -> TaskRecord:
        record = await self.get_for(owner, task_id, sync=False)
        if is_terminal(record.status):
            raise ApiError(409, "task_terminal", f"task {task_id} is already {record.status}")
        await self._cancel_workflow(task_id)
        return await self.sync(record)

    async def delete(self, owner: str, task_id: str) -> None:
        """Delete a task: a running one is cancelled first (as ``cancel`` does, so the provider's job is cancelled
        where the integration can), its objects are removed, and a tombstone is left, with its input and result
        erased. Afterwards the task is absent to every read, its reports change nothing, and it has no more events
        (the tombstone's ``task.deleted`` is its last)."""
        record = await self.get_for(owner, task_id, sync=False)
        if not is_terminal(record.status):
            await self._cancel_workflow(task_id)
        # Before the tombstone, so an object store that is away fails the delete (503) and a retry deletes it all.
        try:
            await self.discard_objects(task_id, "is being deleted")
        except Exception as exc:
            log.warning("task %s: objects not removed: %r", task_id, exc)
            raise ApiError(503, "storage_unavailable", "could not remove the task's files; try again", True) from exc
        if not await self.store.tombstone(task_id, self._tombstone_event):
            # Deleted meanwhile by another request.
            raise not_found(f"task {task_id}")
        self.relay.wake()
        # An upload that landed between the two: what remains after this is removed with the task's last report,
        # or with the tombstone by retention.
        try:
            await self.discard_objects(task_id, "is deleted")
        except Exception as exc:
            log.warning("task %s: objects after the delete not removed yet: %r", task_id, exc)

    async def discard_objects(self, task_id: str, why: str) -> int:
        """Remove every object under the task's prefix (a task that keeps no objects: deleted, purged, or ended
        without succeeding); how many there were."""
        removed = await self.objects.delete_prefix(objects_prefix(task_id))
        if removed:
            log.info("task %s %s: removed %d object(s)", task_id, why, removed)
        return removed

    async def _cancel_workflow(self, task_id: str) -> None:
        """Ask the task's workflow to cancel (nothing to do when it does not run), and give it a moment to end."""
        handle = self.temporal.get_workflow_handle(workflow_id_for(task_id))
        try:
            await handle.cancel()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise ApiError(503, "temporal_unavailable", "could not cancel the task; try again", True) from exc
        # The workflow reports `cancelled` itself; give it a moment so the answer usually shows it.
        # Any outcome is fine here: whoever goes on reads the real state.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(handle.result(), self.settings.sync_timeout_seconds)

    # -- webhook secrets ------------------------------------------------------------------------------

    async def webhook_secret(self, owner: str) -> WebhookSecretRead:
        """The owner's signing secret, made on first use."""
        return self._secret_read(await self.store.signing_secrets(owner, new_secret()))

    async def rotate_webhook_secret(self, owner: str) -> WebhookSecretRead:
        overlap = timedelta(seconds=self.settings.webhooks.secret_overlap_seconds)
        return self._secret_read(await self.store.rotate_signing_secret(owner, new_secret(), overlap))

    @staticmethod
    def _secret_read(secrets: SigningSecrets) -> WebhookSecretRead:
        now = datetime.now(UTC)
        signs = secrets.previous_until is not None and secrets.previous_until > now
        return WebhookSecretRead(secrets.secret, secrets.created_at, secrets.previous_until if signs else None)

    # -- present --------------------------------------------------------------------------------------

    def read(self, record: TaskRecord) -> TaskRead:
        temporal = self.settings.platform.temporal
        workflow_id = workflow_id_for(record.id)
        return TaskRead(
            id=record.id,
            integration=record.integration,
            status=record.status,
            input=record.input,
            output=self._output(record.result, record.updated_at) if record.result else None,
            error=record.error,
            progress=record.progress,
            provider_task_id=record.provider_task_id,
            workflow_id=workflow_id,
            created_at=record.created_at,
            updated_at=record.updated_at,
            version=record.version,
            links={
                "self": f"/api/tasks/{record.id}",
                "cancel": f"/api/tasks/{record.id}/cancel",
                "integration": f"/api/integrations/{record.integration}/tasks/{record.id}",
                "temporal_ui": f"{temporal.ui_url}/namespaces/{temporal.namespace}/workflows/{workflow_id}",
            },
            deadline_at=record.deadline_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
            provider_attempts=record.provider_attempts,
            webhooks=[
                WebhookDeliveryRead(d.event, d.status, d.attempts, d.last_error, d.delivered_at)
                for d in record.webhooks
            ],
        )

    def _output(self, result: TaskResult, finished_at: datetime) -> OutputRead:
        """The result as clients read it, with presigned URLs that expire after S3_URL_EXPIRY_SECONDS, or when
        retention purges the task finished at ``finished_at``, whichever comes first."""
        now = datetime.now(UTC)
        expires_at = now + timedelta(seconds=self.settings.platform.storage.url_expiry_seconds)
        retention = self.settings.retention
        if retention is not None:
            expires_at = min(expires_at, finished_at + retention)
        # A URL is valid for a second at least (a task past its retention is purged at the sweep's next run).
        expiry = max(1, math.floor((expires_at - now).total_seconds()))
        expires_at = now + timedelta(seconds=expiry)
        return OutputRead(
            objects={
                name: ObjectRead(
                    key=obj.key,
                    content_type=obj.content_type,
                    size=obj.size,
                    url=self.objects.presigned_get(obj.key, expiry),
                    url_expires_at=expires_at,
                )
                for name, obj in result.objects.items()
            },
            data=result.data,
        )

    def _event(self, record: TaskRecord, changes: dict[str, Any], name: str = "task.updated") -> OutboxEvent:
        """The event of an applied change, as the outbox stores it (built inside the store's transaction)."""
        payload: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "result":
                payload["output"] = msgspec.to_builtins(self._output(value, record.updated_at))
            else:
                payload[key] = msgspec.to_builtins(value)
        event = TaskEvent(
            id=str(uuid.uuid4()),
            task_id=record.id,
            integration=record.integration,
            status=record.status,
            changes=payload,
            timestamp=record.updated_at.isoformat(),
            version=record.version,
            event=name,
        )
        return OutboxEvent(id=event.id, payload=msgspec.json.encode(event))

    def _deleted_event(self, record: TaskRecord, _: dict[str, Any]) -> OutboxEvent:
        return self._event(msgspec.structs.replace(record, version=record.version + 1), {}, "task.deleted")

    def _tombstone_event(self, record: TaskRecord, _: dict[str, Any]) -> OutboxEvent:
        # The tombstone's version is counted already.
        return self._event(record, {}, "task.deleted")


def _deadline_seconds(integration: Integration, asked: float | None) -> float:
    """A create's deadline: the one asked for, within the integration's bounds (else 422), or its default."""
    bounds = integration.manifest.deadline
    if asked is None:
        return bounds.default_seconds
    if not 0 < asked <= bounds.max_seconds:
        raise ApiError(
            422,
            "invalid_input",
            f"deadline_seconds: must be more than 0 and at most {bounds.max_seconds:g} for {integration.name}",
            details={"field": "deadline_seconds", "max_seconds": bounds.max_seconds},
        )
    return asked


def _webhook_error(field: str, problem: str) -> ApiError:
    return ApiError(422, "invalid_webhook", f"{field}: {problem}", details={"field": field})


async def _termination_reason(handle: WorkflowHandle[Any, Any]) -> str:
    """``: <reason>`` as whoever terminated the workflow gave it, or nothing."""
    async for event in handle.fetch_history_events(event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT):
        reason = event.workflow_execution_terminated_event_attributes.reason
        if reason:
            return f": {reason}"
    return ""
