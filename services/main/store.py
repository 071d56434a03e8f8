"""The task store: every task, persisted, and the outbox of events its changes produce. SQLAlchemy Core, so SQLite
(the default) and PostgreSQL (several main replicas) run the same code: each write transaction is a function of a
connection, which ``TaskStore._transaction`` runs on the async engine (PostgreSQL) or the store's SQLite thread;
reads use the async engine. The schema comes from Alembic migrations (``migrate.py``). State changes use
compare-and-set on ``version``, which makes concurrent reports for one task apply once on either database, and each
applied change writes its event to the outbox in the same transaction: an event exists exactly when its change was
committed."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, get_args

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.shared.tasks import (
    DEFAULT_PRIORITY,
    TRANSITIONS,
    ReportOutcome,
    TaskError,
    TaskReport,
    TaskResult,
    TaskStatus,
    is_terminal,
)

from . import migrate

metadata = sa.MetaData()
# The terminal statuses, as the partial index of finished tasks spells them (the retention purge's query).
_FINISHED = sa.text("status IN ('succeeded', 'failed', 'cancelled')")

tasks_table = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("integration", sa.String(64), nullable=False),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("input", sa.LargeBinary, nullable=False),
    sa.Column("result", sa.LargeBinary, nullable=True),
    sa.Column("error", sa.LargeBinary, nullable=True),
    sa.Column("progress", sa.Float, nullable=True),
    sa.Column("provider_task_id", sa.String(256), nullable=True),
    sa.Column("idempotency_key", sa.String(256), nullable=True),
    sa.Column("request_digest", sa.String(64), nullable=True),
    # NULL for tasks created before the column existed: they have the default priority.
    sa.Column("priority", sa.SmallInteger, nullable=True),
    # The timeline (migration 0008_timeline); NULL in tasks created before it: not known.
    sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("provider_attempts", sa.Integer, nullable=True),
    # Where the task's webhooks go (NULL: none), and for which events (comma-separated).
    sa.Column("webhook_url", sa.String(2048), nullable=True),
    sa.Column("webhook_events", sa.String(64), nullable=True),
    sa.Column("version", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # Set when its owner deleted the task: a tombstone, read as absent (see ``TaskStore.tombstone``).
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("owner", "integration", "idempotency_key", name="uq_tasks_idempotency"),
    sa.Index("ix_tasks_owner_created", "owner", "created_at"),
    sa.Index(
        "ix_tasks_queued",
        "created_at",
        postgresql_where=sa.text("status = 'queued'"),
        sqlite_where=sa.text("status = 'queued'"),
    ),
    sa.Index("ix_tasks_finished", "updated_at", postgresql_where=_FINISHED, sqlite_where=_FINISHED),
)


outbox_table = sa.Table(
    "outbox",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("task_id", sa.String(36), nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # Nothing reads a new row's seq back: no RETURNING on every insert.
    implicit_returning=False,
    sqlite_autoincrement=True,
)
# Kept by create, apply_report and delete in the transactions that change a task's status.
usage_table = sa.Table(
    "user_usage",
    metadata,
    sa.Column("owner", sa.String(128), primary_key=True),
    sa.Column("active_tasks", sa.Integer, nullable=False),
)

rate_buckets_table = sa.Table(
    "rate_buckets",
    metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("tokens", sa.Float, nullable=False),
    sa.Column("counted_at", sa.Float, nullable=False),
)

leases_table = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)
# One row per webhook a task's change is due to send; written in the transaction of the change (and its outbox event).
deliveries_table = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("task_id", sa.String(36), nullable=False),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.String(512), nullable=True),
    sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    # False until its workflow was started (services/main/webhooks/starter.py).
    sa.Column("workflow_started", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_webhook_deliveries_task", "task_id", "created_at"),
    sa.Index(
        "ix_webhook_deliveries_unstarted",
        "created_at",
        postgresql_where=sa.text("NOT workflow_started"),
        sqlite_where=sa.text("NOT workflow_started"),
    ),
)
# Each user's webhook signing secret, and the one it replaced while that still signs.
webhook_secrets_table = sa.Table(
    "webhook_secrets",
    metadata,
    sa.Column("owner", sa.String(128), primary_key=True),
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("previous_secret", sa.String(128), nullable=True),
    sa.Column("previous_until", sa.DateTime(timezone=True), nullable=True),
)
# Any constant shared by every main process: the key of the PostgreSQL advisory lock one relay holds at a time.
RELAY_LOCK_KEY = 0x6D61696E0002
# The limit of create's ``max_active=None``: the count is kept all the same.
_NO_LIMIT = 2**31 - 1
# On SQLite, sent events are deleted together, at most this many or this late.
SENT_FLUSH_ROWS = 500
SENT_FLUSH_SECONDS = 0.2

# Built once: building SQLAlchemy expressions costs more CPU per call than executing these cached statements.
_INSERT = tasks_table.insert()
_BY_ID = sa.select(tasks_table).where(tasks_table.c.id == sa.bindparam("task_id"))
_DELETE = tasks_table.delete().where(tasks_table.c.id == sa.bindparam("task_id"))
# The SET clause comes from the parameters given with each execution.
_COMPARE_AND_SET = tasks_table.update().where(
    tasks_table.c.id == sa.bindparam("where_id"), tasks_table.c.version == sa.bindparam("where_version")
)
_ENQUEUE = outbox_table.insert()
_UNSENT = (
    sa.select(outbox_table.c.seq, outbox_table.c.event_id, outbox_table.c.owner, outbox_table.c.payload)
    .where(outbox_table.c.seq > sa.bindparam("after"))
    .order_by(outbox_table.c.seq)
    .limit(sa.bindparam("limit"))
)
# One conditional UPDATE takes from an allowance: on PostgreSQL a concurrent writer waits for the row and the
# condition is evaluated again on the row it committed, on SQLite writers take turns; either way no two take the same.
_TAKE_ACTIVE = (
    usage_table.update()
    .where(usage_table.c.owner == sa.bindparam("for_owner"), usage_table.c.active_tasks < sa.bindparam("limit"))
    .values(active_tasks=usage_table.c.active_tasks + 1)
    .returning(usage_table.c.active_tasks)
)
_RELEASE_ACTIVE = (
    usage_table.update()
    .where(usage_table.c.owner == sa.bindparam("for_owner"), usage_table.c.active_tasks > 0)
    .values(active_tasks=usage_table.c.active_tasks - 1)
)
_ACTIVE = sa.select(usage_table.c.active_tasks).where(usage_table.c.owner == sa.bindparam("for_owner"))
_NOW = sa.bindparam("now", type_=sa.Float)
_RATE = sa.bindparam("rate", type_=sa.Float)
_BURST = sa.bindparam("burst", type_=sa.Float)
_LATER = rate_buckets_table.c.counted_at < _NOW
# A clock behind the last refill (another replica's) adds nothing rather than taking tokens away.
_ELAPSED = sa.case((_LATER, _NOW - rate_buckets_table.c.counted_at), else_=0.0)
_REFILLED = sa.case(
    (rate_buckets_table.c.tokens + _ELAPSED * _RATE > _BURST, _BURST),
    else_=rate_buckets_table.c.tokens + _ELAPSED * _RATE,
)
_TAKE_TOKEN = (
    rate_buckets_table.update()
    .where(rate_buckets_table.c.key_id == sa.bindparam("for_key"), _REFILLED >= 1)
    .values(tokens=_REFILLED - 1, counted_at=sa.case((_LATER, _NOW), else_=rate_buckets_table.c.counted_at))
    .returning(rate_buckets_table.c.tokens)
)
_TOKENS = sa.select(_REFILLED).where(rate_buckets_table.c.key_id == sa.bindparam("for_key"))
# Taken by whoever holds it already or when it has expired; the row itself comes with the migration.
_TAKE_LEASE = (
    leases_table.update()
    .where(
        leases_table.c.name == sa.bindparam("lease"),
        sa.or_(leases_table.c.holder == sa.bindparam("me"), leases_table.c.expires_at < sa.bindparam("now")),
    )
    .values(holder=sa.bindparam("me"), expires_at=sa.bindparam("until"))
)
_RELEASE_LEASE = (
    leases_table.update()
    .where(leases_table.c.name == sa.bindparam("lease"), leases_table.c.holder == sa.bindparam("me"))
    .values(expires_at=sa.bindparam("now"))
)
_QUEUED_BEFORE = (
    sa.select(tasks_table)
    .where(tasks_table.c.status == "queued", tasks_table.c.created_at < sa.bindparam("before"))
    .order_by(tasks_table.c.created_at)
    .limit(sa.bindparam("limit"))
)
_EXISTING = sa.select(tasks_table.c.id).where(tasks_table.c.id.in_(sa.bindparam("ids", expanding=True)))
_FINISHED_BEFORE = (
    sa.select(tasks_table.c.id)
    .where(_FINISHED, tasks_table.c.updated_at < sa.bindparam("before"))
    .order_by(tasks_table.c.updated_at)
    .limit(sa.bindparam("limit"))
)
# Checked again in the DELETE: a task is purged only while it is still what the purge selected.
_PURGE = tasks_table.delete().where(
    tasks_table.c.id.in_(sa.bindparam("ids", expanding=True)),
    _FINISHED,
    tasks_table.c.updated_at < sa.bindparam("before"),
)
# The unsent events of those of the tasks that are gone.
_PURGE_EVENTS_OF = outbox_table.delete().where(
    outbox_table.c.task_id.in_(sa.bindparam("ids", expanding=True)),
    ~sa.exists().where(tasks_table.c.id == outbox_table.c.task_id),
)
# Their webhook deliveries: a delivery still pending finds its task gone and ends without sending.
_PURGE_DELIVERIES_OF = deliveries_table.delete().where(
    deliveries_table.c.task_id.in_(sa.bindparam("ids", expanding=True)),
    ~sa.exists().where(tasks_table.c.id == deliveries_table.c.task_id),
)
_PURGE_EVENTS_BEFORE = outbox_table.delete().where(
    outbox_table.c.seq.in_(
        sa.select(outbox_table.c.seq)
        .where(outbox_table.c.created_at < sa.bindparam("before"))
        .order_by(outbox_table.c.seq)
        .limit(sa.bindparam("limit"))
        .scalar_subquery()
    )
)
_DELIVERY_INSERT = deliveries_table.insert()
_DELIVERIES_OF = (
    sa.select(deliveries_table)
    .where(deliveries_table.c.task_id.in_(sa.bindparam("task_ids", expanding=True)))
    .order_by(deliveries_table.c.created_at, deliveries_table.c.id)
)
_DELIVERY = sa.select(deliveries_table).where(deliveries_table.c.id == sa.bindparam("delivery_id"))
_UNSTARTED = (
    sa.select(deliveries_table.c.id)
    .where(sa.not_(deliveries_table.c.workflow_started))
    .order_by(deliveries_table.c.created_at)
    .limit(sa.bindparam("limit"))
)
_STARTED = (
    deliveries_table.update()
    .where(deliveries_table.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(workflow_started=True)
)
# A delivery that ended stays as it ended.
_DELIVERY_UPDATE = deliveries_table.update().where(
    deliveries_table.c.id == sa.bindparam("delivery_id"), deliveries_table.c.status == "pending"
)
_SECRET = sa.select(webhook_secrets_table).where(webhook_secrets_table.c.owner == sa.bindparam("for_owner"))
# Marking an event sent and pruning it are one statement: a sent event has no reason to stay.
_SENT = outbox_table.delete().where(outbox_table.c.seq.in_(sa.bindparam("seqs", expanding=True)))


class TaskRecord(msgspec.Struct, frozen=True):
    id: str
    integration: str
    owner: str
    status: TaskStatus
    input: dict[str, Any]
    result: TaskResult | None
    error: TaskError | None
    progress: float | None
    provider_task_id: str | None
    idempotency_key: str | None
    request_digest: str | None
    # The priority the client gave at create (1 runs first): the one its workflow is started with.
    priority: int
    version: int
    created_at: datetime
    updated_at: datetime
    # When the task must be done (its create plus its deadline); None for tasks created before deadlines.
    deadline_at: datetime | None = None
    # When main first learned the task was running, and when it reached its terminal state.
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Attempts at the provider work, as the attempts reported them; None for tasks created before it was counted.
    provider_attempts: int | None = None
    # Where its webhooks go (None: nowhere), for which events, and the deliveries so far (read with the task when it
    # has a webhook URL).
    webhook_url: str | None = None
    webhook_events: tuple[WebhookEvent, ...] = ()
    webhooks: tuple[DeliveryRecord, ...] = ()


WebhookEvent = Literal["started", "completed", "progress"]
WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = get_args(WebhookEvent)
# pending: not delivered yet, attempts go on; delivered: a 2xx answer; gone: the receiver answered 410, nothing more
# is sent; failed: every attempt failed; dropped: the task no longer exists, nothing was sent.
DeliveryStatus = Literal["pending", "delivered", "gone", "failed", "dropped"]


class DeliveryRecord(msgspec.Struct, frozen=True):
    id: str
    task_id: str
    event: WebhookEvent
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


class SigningSecrets(msgspec.Struct, frozen=True):
    """A user's webhook secret, and the previous one with the moment it stops signing (after a rotation)."""

    secret: str
    created_at: datetime
    previous: str | None
    previous_until: datetime | None

    def signing(self, now: datetime) -> list[str]:
        """The secrets that sign a message sent at ``now``: the current one first."""
        if self.previous is not None and self.previous_until is not None and self.previous_until > now:
            return [self.secret, self.previous]
        return [self.secret]


class StoreConflictError(Exception):
    """An idempotency key was reused with a different request."""


class TooManyActiveTasksError(Exception):
    """The owner already has as many active tasks as they may."""


class RateLimitedError(Exception):
    """The API key's bucket is empty: a token is back in ``wait`` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"no token for {wait:.3f} s")
        self.wait = wait


class TaskDeletedError(Exception):
    """The task was deleted by its owner: only its tombstone is left (``record``, its input and result erased)."""

    def __init__(self, record: TaskRecord) -> None:
        super().__init__(f"task {record.id} was deleted")
        self.record = record


@dataclass(frozen=True)
class Bucket:
    """A token bucket's refill rate (tokens a second) and capacity."""

    per_second: float
    burst: int


@dataclass(frozen=True)
class Charge:
    """A request counted against the bucket of the API key ``key_id``, at ``now`` (seconds since the epoch)."""

    key_id: str
    bucket: Bucket
    now: float


class OutboxEvent(msgspec.Struct, frozen=True):
    """An event as the outbox keeps it: its id (JetStream's message id, so a republished event is dropped as a
    duplicate) and its encoded body."""

    id: str
    payload: bytes


# Builds the event of a change from the task as it is after the change and the fields that changed. Called inside
# the write transaction, so it must not do I/O.
EventOf = Callable[[TaskRecord, dict[str, Any]], OutboxEvent]


class OutboxRow(msgspec.Struct, frozen=True):
    seq: int
    event_id: str
    owner: str
    payload: bytes


@dataclass(frozen=True)
class OutboxBatch:
    """The oldest unsent events, in the order their changes were committed, and how to mark a prefix sent (which
    deletes it)."""

    rows: list[OutboxRow]
    mark_sent: Callable[[Sequence[int]], Awaitable[None]]


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _record(row: sa.Row[Any]) -> TaskRecord:
    m = row._mapping
    return TaskRecord(
        id=m["id"],
        integration=m["integration"],
        owner=m["owner"],
        status=m["status"],
        input=msgspec.json.decode(m["input"]),
        result=msgspec.json.decode(m["result"], type=TaskResult) if m["result"] else None,
        error=msgspec.json.decode(m["error"], type=TaskError) if m["error"] else None,
        progress=m["progress"],
        provider_task_id=m["provider_task_id"],
        idempotency_key=m["idempotency_key"],
        request_digest=m["request_digest"],
        priority=DEFAULT_PRIORITY if m["priority"] is None else m["priority"],
        version=m["version"],
        created_at=_aware(m["created_at"]),
        updated_at=_aware(m["updated_at"]),
        deadline_at=_aware_or_none(m["deadline_at"]),
        started_at=_aware_or_none(m["started_at"]),
        finished_at=_aware_or_none(m["finished_at"]),
        provider_attempts=m["provider_attempts"],
        webhook_url=m["webhook_url"],
        webhook_events=_events(m["webhook_events"]),
    )


def _aware_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _aware(value)


def _events(raw: str | None) -> tuple[WebhookEvent, ...]:
    return tuple(e for e in WEBHOOK_EVENTS if e in (raw or "").split(","))


def _delivery(row: sa.Row[Any]) -> DeliveryRecord:
    m = row._mapping
    return DeliveryRecord(
        id=m["id"],
        task_id=m["task_id"],
        event=m["event"],
        status=m["status"],
        attempts=m["attempts"],
        last_error=m["last_error"],
        delivered_at=_aware(m["delivered_at"]) if m["delivered_at"] else None,
        created_at=_aware(m["created_at"]),
    )


def webhooks_due(record: TaskRecord, changes: dict[str, Any]) -> list[WebhookEvent]:
    """The webhook events an applied change sends, of those the task asked for: ``started`` when it becomes running,
    ``completed`` when it ends, ``progress`` when its progress moves while it runs."""
    if record.webhook_url is None:
        return []
    due: list[WebhookEvent] = []
    status = changes.get("status")
    if status == "running":
        due.append("started")
    if "progress" in changes and record.status == "running":
        due.append("progress")
    if status is not None and is_terminal(status):
        due.append("completed")
    return [event for event in due if event in record.webhook_events]


def decide(record: TaskRecord, report: TaskReport, now: datetime) -> tuple[dict[str, Any], str]:
    """The changed fields a report applied at ``now`` would make to a task (empty when it must be ignored) and why
    not. The timeline follows the status: ``started_at`` when it first becomes running, ``finished_at`` when it
    ends; ``provider_attempts`` only goes up (attempts report out of order)."""
    if is_terminal(record.status):
        return {}, f"task is already {record.status}"
    if report.status not in TRANSITIONS[record.status]:
        return {}, f"transition {record.status} -> {report.status} is not allowed"
    changes: dict[str, Any] = {}
    if report.status != record.status:
        changes["status"] = report.status
    if report.progress is not None and (record.progress is None or report.progress > record.progress):
        changes["progress"] = report.progress
    if report.provider_task_id and report.provider_task_id != record.provider_task_id:
        changes["provider_task_id"] = report.provider_task_id
    attempts = report.provider_attempts
    if attempts is not None and (record.provider_attempts is None or attempts > record.provider_attempts):
        changes["provider_attempts"] = attempts
    if report.status == "running" and record.started_at is None:
        changes["started_at"] = now
    if is_terminal(report.status):
        changes["finished_at"] = now
        if report.result is not None:
            changes["result"] = report.result
        if report.error is not None:
            changes["error"] = report.error
    if not changes:
        return {}, "nothing changed"
    return changes, ""


T = TypeVar("T")


class SqliteThread:
    """Where a SQLite store writes (and its relay reads): one thread with a connection of its own (the stdlib
    driver) runs each transaction from BEGIN to COMMIT. A transaction costs one hop between the event loop and a
    thread, where the async driver costs one per statement and more: about 1.8 ms of CPU per applied report against
    0.5. The one thread also queues this process's writers (SQLite has one at a time; waiting in its busy handler
    sleeps in steps of milliseconds). A write transaction takes the write lock when it begins (BEGIN IMMEDIATE), so
    one that reads before it writes never has to upgrade its lock while another process writes."""

    def __init__(self, url: sa.URL) -> None:
        self.engine = sa.create_engine(url.set(drivername="sqlite"), connect_args={"timeout": 30})
        sa.event.listen(self.engine, "connect", _tune_sqlite)
        sa.event.listen(self.engine, "begin", _begin_sqlite)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")

    def _run(self, body: Callable[[sa.Connection], T], begin: str) -> T:
        with self.engine.connect() as conn:
            conn.execution_options(sqlite_begin=begin)
            with conn.begin():
                return body(conn)

    async def write(self, body: Callable[[sa.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._run, body, "BEGIN IMMEDIATE")

    async def read(self, body: Callable[[sa.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._run, body, "BEGIN")

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self.engine.dispose()


def _tune_sqlite(dbapi_connection: Any, _: Any) -> None:
    # WAL lets reads run beside the writer; NORMAL sync is durable across process crashes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
    # The driver would BEGIN on its own before the first write; `_begin_sqlite` says which BEGIN.
    dbapi_connection.isolation_level = None


def _begin_sqlite(conn: sa.Connection) -> None:
    conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))


class TaskStore:
    def __init__(self, engine: AsyncEngine, sqlite: SqliteThread | None = None) -> None:
        # Reads (and, on PostgreSQL, everything) go through the async engine.
        self.engine = engine
        self._sqlite = sqlite
        # SQLite only: the events this process's relay has published and not deleted yet, and the highest of them.
        self._sent: list[int] = []
        self._sent_through = 0
        self._sent_flushed = time.monotonic()

    async def _transaction(self, body: Callable[[sa.Connection], T]) -> T:
        """Run ``body`` in one write transaction: committed when it returns, rolled back when it raises."""
        if self._sqlite is not None:
            return await self._sqlite.write(body)
        async with self.engine.begin() as conn:
            return await conn.run_sync(body)

    @classmethod
    def from_url(cls, url: str) -> TaskStore:
        if not url.startswith("sqlite"):
            return cls(create_async_engine(url, pool_pre_ping=True))
        # A busy timeout instead of "database is locked" errors while another process writes. Connections end
        # every transaction themselves (reads roll back on close), so the pool need not roll back again.
        engine = create_async_engine(url, connect_args={"timeout": 30}, pool_reset_on_return=None)
        sa.event.listen(engine.sync_engine, "connect", _tune_sqlite)
        sa.event.listen(engine.sync_engine, "begin", _begin_sqlite)
        return cls(engine, SqliteThread(sa.make_url(url)))

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (safe while other main processes do the same)."""
        await self._transaction(migrate.upgrade)

    async def close(self) -> None:
        # Unreachable now: the next relay publishes those events again, and JetStream drops the duplicates.
        with contextlib.suppress(Exception):
            await self.flush_sent()
        if self._sqlite is not None:
            await asyncio.to_thread(self._sqlite.close)
        await self.engine.dispose()

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception:
            return False
        return True

    async def create(
        self,
        *,
        integration: str,
        owner: str,
        input: dict[str, Any],
        idempotency_key: str | None,
        request_digest: str,
        priority: int,
        event: EventOf,
        max_active: int | None = None,
        deadline_seconds: float | None = None,
        webhook_url: str | None = None,
        webhook_events: Sequence[WebhookEvent] = (),
        charge: Charge | None = None,
    ) -> tuple[TaskRecord, bool]:
        """Insert a queued task and its first event; with an idempotency key already used, return that task (and
        ``False``). The task counts against its owner's active tasks; with ``max_active`` of them already, nothing
        is inserted (TooManyActiveTasksError). Its deadline is ``deadline_seconds`` from now (none without it). The
        create takes a token of ``charge``, in the same transaction; with none left, RateLimitedError."""
        now = _now()
        deadline_at = None if deadline_seconds is None else now + timedelta(seconds=deadline_seconds)
        events = tuple(webhook_events) if webhook_url else ()
        values = {
            "id": str(uuid.uuid4()),
            "integration": integration,
            "owner": owner,
            "status": "queued",
            "input": msgspec.json.encode(input),
            "progress": 0.0,
            "idempotency_key": idempotency_key,
            "request_digest": request_digest,
            "priority": priority,
            "version": 0,
            "created_at": now,
            "updated_at": now,
            "deadline_at": deadline_at,
            "provider_attempts": 0,
            "webhook_url": webhook_url,
            "webhook_events": ",".join(events) if webhook_url else None,
        }
        record = TaskRecord(
            id=str(values["id"]),
            integration=integration,
            owner=owner,
            status="queued",
            input=input,
            result=None,
            error=None,
            progress=0.0,
            provider_task_id=None,
            idempotency_key=idempotency_key,
            request_digest=request_digest,
            priority=priority,
            version=0,
            created_at=now,
            updated_at=now,
            deadline_at=deadline_at,
            provider_attempts=0,
            webhook_url=webhook_url,
            webhook_events=events,
        )

        def insert(conn: sa.Connection) -> None:
            if charge is not None and (wait := _take_token(conn, charge)) is not None:
                raise RateLimitedError(wait)
            _insert_absent(conn, usage_table, {"owner": owner, "active_tasks": 0})
            limit = _NO_LIMIT if max_active is None else max_active
            if conn.execute(_TAKE_ACTIVE, {"for_owner": owner, "limit": limit}).first() is None:
                raise TooManyActiveTasksError(owner)
            conn.execute(_INSERT, values)
            _enqueue(conn, record, event(record, {"status": record.status}))

        try:
            await self._transaction(insert)
        except (IntegrityError, TooManyActiveTasksError):
            # The rollback gave its token back, but a refused or retried create is a request all the same.
            if charge is not None:
                wait = await self.take_token(charge.key_id, charge.bucket, charge.now)
                if wait is not None:
                    raise RateLimitedError(wait) from None
            # A retried create returns its task even when the owner is at the limit now.
            row = await self._by_idempotency_key(owner, integration, idempotency_key)
            if row is None:
                raise
            existing = _record(row)
            if row.deleted_at is not None:
                # The key stays bound to its deleted task until retention purges the tombstone: a retried create
                # neither brings the task back nor makes a new one the client would take for it.
                raise TaskDeletedError(existing) from None
            if existing.request_digest != request_digest:
                raise StoreConflictError(
                    f"Idempotency-Key {idempotency_key!r} was already used with a different request"
                ) from None
            return existing, False
        return record, True

    async def active_tasks(self, owner: str) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(_ACTIVE, {"for_owner": owner})).scalar() or 0)

    async def take_token(self, key_id: str, bucket: Bucket, now: float) -> float | None:
        """Take a token from the bucket of ``key_id`` (full when first used): None when one was taken, else the
        seconds until one is back."""
        charge = Charge(key_id, bucket, now)
        return await self._transaction(lambda conn: _take_token(conn, charge))

    async def tokens(self, key_id: str, bucket: Bucket, now: float) -> float:
        """The tokens in the bucket of ``key_id`` now."""
        params = {"for_key": key_id, "now": now, "rate": bucket.per_second, "burst": float(bucket.burst)}
        async with self.engine.connect() as conn:
            tokens = (await conn.execute(_TOKENS, params)).scalar()
        return float(bucket.burst) if tokens is None else float(tokens)

    async def _by_idempotency_key(self, owner: str, integration: str, key: str | None) -> Any:
        """The row (tombstones too) of the task made with this key, or None."""
        if key is None:
            return None
        query = sa.select(tasks_table).where(
            tasks_table.c.owner == owner,
            tasks_table.c.integration == integration,
            tasks_table.c.idempotency_key == key,
        )
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).first()

    async def get(self, task_id: str) -> TaskRecord | None:
        """The task, or None when there is none or only its tombstone."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(_BY_ID, {"task_id": task_id})).first()
            if row is None or row.deleted_at is not None:
                return None
            return (await _with_webhooks(conn, [_record(row)]))[0]

    async def delete(self, task_id: str, event: EventOf) -> None:
        """Remove a task, with an event saying so: clients may already have heard of it."""

        def remove(conn: sa.Connection) -> None:
            row = conn.execute(_BY_ID, {"task_id": task_id}).first()
            if row is None:
                return
            record = _record(row)
            conn.execute(_DELETE, {"task_id": task_id})
            if not is_terminal(record.status):
                conn.execute(_RELEASE_ACTIVE, {"for_owner": record.owner})
            _enqueue(conn, record, event(record, {}))

        await self._transaction(remove)

    async def tombstone(self, task_id: str, event: EventOf) -> bool:
        """Leave only a tombstone of a task, with an event saying so (the task's last): its input, result and error
        are erased, and a task that had not finished ends ``cancelled`` (its workflow was asked to cancel), which
        frees its place among its owner's active tasks. Every later read takes it as absent, and a report for it
        changes nothing (``apply_report`` raises ``TaskDeletedError``). False when there is no task (or only a
        tombstone) to delete."""

        def bury(conn: sa.Connection) -> bool | None:
            row = conn.execute(_BY_ID, {"task_id": task_id}).first()
            if row is None or row.deleted_at is not None:
                return False
            record = _record(row)
            now = _now()
            status: TaskStatus = record.status if is_terminal(record.status) else "cancelled"
            values = {
                "status": status,
                "input": msgspec.json.encode({}),
                "result": None,
                "error": None,
                "version": record.version + 1,
                "updated_at": now,
                "deleted_at": now,
            }
            parameters = {**values, "where_id": task_id, "where_version": record.version}
            if conn.execute(_COMPARE_AND_SET, parameters).rowcount != 1:
                return None
            current = msgspec.structs.replace(
                record, status=status, input={}, result=None, error=None, version=record.version + 1, updated_at=now
            )
            _enqueue(conn, current, event(current, {}))
            if not is_terminal(record.status):
                conn.execute(_RELEASE_ACTIVE, {"for_owner": record.owner})
            return True

        while True:
            buried = await self._transaction(bury)
            if buried is not None:
                return buried
            # A report changed the task between the read and the write (PostgreSQL): delete what it is now.

    # -- retention ------------------------------------------------------------------------------------

    async def finished_before(self, before: datetime, limit: int) -> list[str]:
        """The ids of at most ``limit`` tasks (tombstones too) that finished before ``before``, oldest first."""
        async with self.engine.connect() as conn:
            return [row[0] for row in await conn.execute(_FINISHED_BEFORE, {"before": before, "limit": limit})]

    async def purge(self, task_ids: Sequence[str], before: datetime) -> int:
        """Remove those of ``task_ids`` that still finished before ``before``, and their unsent events; how many
        tasks were removed."""
        if not task_ids:
            return 0
        ids = list(task_ids)

        def remove(conn: sa.Connection) -> int:
            removed: int = conn.execute(_PURGE, {"ids": ids, "before": before}).rowcount
            conn.execute(_PURGE_EVENTS_OF, {"ids": ids})
            conn.execute(_PURGE_DELIVERIES_OF, {"ids": ids})
            return removed

        return await self._transaction(remove)

    async def purge_events_before(self, before: datetime, limit: int) -> int:
        """Remove at most ``limit`` of the unsent events written before ``before``; how many were removed."""
        parameters = {"before": before, "limit": limit}
        removed: int = await self._transaction(lambda conn: conn.execute(_PURGE_EVENTS_BEFORE, parameters).rowcount)
        return removed

    # -- reconciling ----------------------------------------------------------------------------------

    async def take_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the lease ``name`` for ``seconds`` as ``holder``; False while another holder's lease runs.
        Expiry is compared with the clocks of the processes that take it, so ``seconds`` must exceed their skew."""
        now = _now()
        parameters = {"lease": name, "me": holder, "now": now, "until": now + timedelta(seconds=seconds)}
        taken: int = await self._transaction(lambda conn: conn.execute(_TAKE_LEASE, parameters).rowcount)
        return taken == 1

    async def release_lease(self, name: str, holder: str) -> None:
        """Let the lease expire now, if ``holder`` still holds it: another process may take it at once."""
        parameters = {"lease": name, "me": holder, "now": _now()}
        await self._transaction(lambda conn: conn.execute(_RELEASE_LEASE, parameters))

    async def queued_before(self, before: datetime, limit: int) -> list[TaskRecord]:
        """The oldest tasks still ``queued`` that were created before ``before``."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(_QUEUED_BEFORE, {"before": before, "limit": limit})).all()
        return [_record(r) for r in rows]

    async def existing(self, task_ids: Sequence[str]) -> set[str]:
        """Those of ``task_ids`` that are tasks in the store, tombstones included: the workflow of a deleted task
        was asked to cancel, and is let end its cancellation (which may cancel the provider's job)."""
        if not task_ids:
            return set()
        async with self.engine.connect() as conn:
            return {row[0] for row in await conn.execute(_EXISTING, {"ids": list(task_ids)})}

    async def list(
        self, *, owner: str, integration: str | None, status: str | None, limit: int, offset: int
    ) -> tuple[list[TaskRecord], int]:
        where = [tasks_table.c.owner == owner, tasks_table.c.deleted_at.is_(None)]
        if integration:
            where.append(tasks_table.c.integration == integration)
        if status:
            where.append(tasks_table.c.status == status)
        query = (
            sa.select(tasks_table)
            .where(*where)
            .order_by(tasks_table.c.created_at.desc(), tasks_table.c.id)
            .limit(limit)
            .offset(offset)
        )
        count = sa.select(sa.func.count()).select_from(tasks_table).where(*where)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            total = (await conn.execute(count)).scalar_one()
            records = await _with_webhooks(conn, [_record(r) for r in rows])
        return records, int(total)

    async def apply_report(
        self, task_id: str, report: TaskReport, event: EventOf
    ) -> tuple[ReportOutcome, TaskRecord, dict[str, Any]]:
        """Apply a report if the task allows it, and write the change's event in the same transaction. Re-reads
        the task and writes with compare-and-set, so a report racing another (or a manual refresh) applies at most
        once. Returns the outcome, the task as it is now, and the fields that changed (empty when nothing was
        applied)."""

        def apply(conn: sa.Connection) -> tuple[ReportOutcome, TaskRecord, dict[str, Any]] | None:
            row = conn.execute(_BY_ID, {"task_id": task_id}).first()
            if row is None:
                raise KeyError(task_id)
            record = _record(row)
            if row.deleted_at is not None:
                raise TaskDeletedError(record)
            now = _now()
            changes, reason = decide(record, report, now)
            if not changes:
                [record] = _with_webhooks_sync(conn, [record])
                return ReportOutcome(applied=False, status=record.status, reason=reason), record, {}
            values: dict[str, Any] = {"version": record.version + 1, "updated_at": now}
            for field, value in changes.items():
                values[field] = msgspec.json.encode(value) if field in ("result", "error") else value
            parameters = {**values, "where_id": task_id, "where_version": record.version}
            if conn.execute(_COMPARE_AND_SET, parameters).rowcount != 1:
                return None
            current = msgspec.structs.replace(
                record, **changes, version=values["version"], updated_at=values["updated_at"]
            )
            _enqueue(conn, current, event(current, changes))
            if is_terminal(current.status):
                conn.execute(_RELEASE_ACTIVE, {"for_owner": current.owner})
            due = webhooks_due(current, changes)
            if due:
                conn.execute(_DELIVERY_INSERT, [_new_delivery(current.id, e, now) for e in due])
            [current] = _with_webhooks_sync(conn, [current])
            return ReportOutcome(applied=True, status=current.status), current, changes

        while True:
            applied = await self._transaction(apply)
            if applied is not None:
                return applied
            # Another writer changed the task between our read and write (PostgreSQL, read committed): decide
            # again on fresh state.

    # -- webhooks -------------------------------------------------------------------------------------

    async def delivery(self, delivery_id: str) -> DeliveryRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(_DELIVERY, {"delivery_id": delivery_id})).first()
        return _delivery(row) if row else None

    async def unstarted_deliveries(self, limit: int) -> tuple[str, ...]:
        """The oldest deliveries whose workflow was not started yet."""
        async with self.engine.connect() as conn:
            return tuple(row[0] for row in await conn.execute(_UNSTARTED, {"limit": limit}))

    async def mark_deliveries_started(self, ids: Sequence[str]) -> None:
        if ids:
            started = list(ids)
            await self._transaction(lambda conn: conn.execute(_STARTED, {"ids": started}))

    async def record_attempt(
        self, delivery_id: str, status: DeliveryStatus, error: str | None, delivered_at: datetime | None = None
    ) -> None:
        """Count an attempt of a pending delivery, and how it ended."""
        values = {"status": status, "last_error": error, "delivered_at": delivered_at, "updated_at": _now()}
        counted = _DELIVERY_UPDATE.values(attempts=deliveries_table.c.attempts + 1)
        await self._transaction(lambda conn: conn.execute(counted, {**values, "delivery_id": delivery_id}))

    async def end_delivery(self, delivery_id: str, status: DeliveryStatus, error: str | None) -> None:
        """End a pending delivery without another attempt (every attempt failed; the task no longer exists)."""
        values: dict[str, Any] = {"status": status, "updated_at": _now()}
        if error is not None:
            values["last_error"] = error
        ended = _DELIVERY_UPDATE.values(**values)
        await self._transaction(lambda conn: conn.execute(ended, {"delivery_id": delivery_id}))

    async def signing_secrets(self, owner: str, fresh: str) -> SigningSecrets:
        """The owner's webhook secrets; ``fresh`` becomes the secret of an owner who has none yet."""
        row = await self._secret_row(owner)
        if row is None:
            values = {"owner": owner, "secret": fresh, "created_at": _now()}
            await self._transaction(lambda conn: _insert_absent(conn, webhook_secrets_table, values))
            row = await self._secret_row(owner)
            assert row is not None
        return row

    async def rotate_signing_secret(self, owner: str, fresh: str, overlap: timedelta) -> SigningSecrets:
        """Make ``fresh`` the owner's secret; the one it replaces signs for ``overlap`` more."""
        now = _now()

        def rotate(conn: sa.Connection) -> None:
            row = conn.execute(_SECRET, {"for_owner": owner}).first()
            if row is None:
                conn.execute(webhook_secrets_table.insert().values(owner=owner, secret=fresh, created_at=now))
            else:
                conn.execute(
                    webhook_secrets_table.update()
                    .where(webhook_secrets_table.c.owner == owner)
                    .values(secret=fresh, created_at=now, previous_secret=row.secret, previous_until=now + overlap)
                )

        await self._transaction(rotate)
        rotated = await self._secret_row(owner)
        assert rotated is not None
        return rotated

    async def _secret_row(self, owner: str) -> SigningSecrets | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(_SECRET, {"for_owner": owner})).first()
        if row is None:
            return None
        m = row._mapping
        return SigningSecrets(
            secret=m["secret"],
            created_at=_aware(m["created_at"]),
            previous=m["previous_secret"],
            previous_until=_aware(m["previous_until"]) if m["previous_until"] else None,
        )

    # -- outbox ---------------------------------------------------------------------------------------

    @asynccontextmanager
    async def relay_batch(self, limit: int) -> AsyncIterator[OutboxBatch]:
        """The oldest unsent events (at most ``limit``), for the relay to publish and then mark sent.

        Rows come in ``seq`` order, and a change to a task commits only after the task's previous change did, so
        every batch lists a task's unsent events in version order. On PostgreSQL the batch holds an advisory lock
        for its whole transaction: relays of several replicas take turns, and each reads only what the previous one
        left unsent. On SQLite (one machine; several processes with ``MAIN_WORKERS``) relays may read the same rows
        at once; JetStream drops the second publish of an event id, so that costs a duplicate request, never a
        duplicate event.

        On SQLite, where one writer at a time numbers the rows, ``seq`` order is also commit order: a relay reads
        after the last event it published, and deletes what it sent in bulk (``SENT_FLUSH_*``) rather than in a
        write transaction of its own per batch. A process that dies before the deletion leaves those events to be
        published again, as duplicates that JetStream drops."""
        if self._sqlite is None:
            async with self.engine.begin() as conn:
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": RELAY_LOCK_KEY})
                rows = _outbox_rows((await conn.execute(_UNSENT, {"after": 0, "limit": limit})).all())

                async def mark_in_turn(seqs: Sequence[int]) -> None:
                    await conn.execute(_SENT, {"seqs": list(seqs)})

                yield OutboxBatch(rows, mark_in_turn)
            return
        if self._sent and time.monotonic() - self._sent_flushed >= SENT_FLUSH_SECONDS:
            await self.flush_sent()
        parameters = {"after": self._sent_through, "limit": limit}
        rows = await self._sqlite.read(lambda conn: _outbox_rows(conn.execute(_UNSENT, parameters).all()))

        async def mark(seqs: Sequence[int]) -> None:
            self._sent.extend(seqs)
            self._sent_through = max(self._sent_through, *seqs)
            if len(self._sent) >= SENT_FLUSH_ROWS:
                await self.flush_sent()

        yield OutboxBatch(rows, mark)

    async def flush_sent(self) -> None:
        """Delete the events this process marked sent and has not deleted yet (SQLite)."""
        sent, self._sent = self._sent, []
        self._sent_flushed = time.monotonic()
        if sent:
            await self._transaction(lambda conn: conn.execute(_SENT, {"seqs": sent}))

    async def unsent_events(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(outbox_table))).scalar_one())


def _insert_absent(conn: sa.Connection, table: sa.Table, values: dict[str, Any]) -> None:
    """Insert a row unless one with its primary key exists."""
    conn.execute(_insert_absent_statement(conn.dialect.name, table), values)


@functools.cache
def _insert_absent_statement(dialect: str, table: sa.Table) -> sa.Insert:
    # Built once per table: a statement built per call costs more CPU than the write (both dialects spell it ON
    # CONFLICT DO NOTHING; the columns come from the parameters of each execution).
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing()


def _take_token(conn: sa.Connection, charge: Charge) -> float | None:
    """Take a token of ``charge`` (its bucket full when first used): None when one was taken, else the seconds
    until one is back."""
    bucket = charge.bucket
    params = {"for_key": charge.key_id, "now": charge.now, "rate": bucket.per_second, "burst": float(bucket.burst)}
    _insert_absent(
        conn, rate_buckets_table, {"key_id": charge.key_id, "tokens": float(bucket.burst), "counted_at": charge.now}
    )
    if conn.execute(_TAKE_TOKEN, params).first() is not None:
        return None
    tokens = float(conn.execute(_TOKENS, params).scalar_one())
    return (1 - tokens) / bucket.per_second


def _enqueue(conn: sa.Connection, record: TaskRecord, event: OutboxEvent) -> None:
    conn.execute(
        _ENQUEUE,
        {
            "event_id": event.id,
            "owner": record.owner,
            "task_id": record.id,
            "payload": event.payload,
            "created_at": _now(),
        },
    )


def _new_delivery(task_id: str, event: WebhookEvent, now: datetime) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "task_id": task_id,
        "event": event,
        "status": "pending",
        "attempts": 0,
        "workflow_started": False,
        "created_at": now,
        "updated_at": now,
    }


async def _with_webhooks(conn: AsyncConnection, records: list[TaskRecord]) -> list[TaskRecord]:
    """``records`` with their deliveries; one query for those that have a webhook URL, none for the others."""
    ids = _webhook_task_ids(records)
    return _attach_deliveries(records, await conn.execute(_DELIVERIES_OF, {"task_ids": ids})) if ids else records


def _with_webhooks_sync(conn: sa.Connection, records: list[TaskRecord]) -> list[TaskRecord]:
    """``_with_webhooks`` inside a write transaction."""
    ids = _webhook_task_ids(records)
    return _attach_deliveries(records, conn.execute(_DELIVERIES_OF, {"task_ids": ids})) if ids else records


def _webhook_task_ids(records: list[TaskRecord]) -> list[str]:
    return [r.id for r in records if r.webhook_url is not None]


def _attach_deliveries(records: list[TaskRecord], rows: Iterable[sa.Row[Any]]) -> list[TaskRecord]:
    found: dict[str, list[DeliveryRecord]] = {}
    for row in rows:
        found.setdefault(row.task_id, []).append(_delivery(row))
    return [msgspec.structs.replace(r, webhooks=tuple(found.get(r.id, ()))) if r.id in found else r for r in records]


def _outbox_rows(rows: Sequence[Any]) -> list[OutboxRow]:
    return [OutboxRow(seq=r[0], event_id=r[1], owner=r[2], payload=r[3]) for r in rows]
