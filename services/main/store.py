"""The task store: every task, persisted. SQLAlchemy Core on an async engine, so SQLite (the default) and
PostgreSQL (several main replicas) run the same code. State changes use compare-and-set on ``version``,
which makes concurrent reports for one task apply once on either database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.shared.tasks import (
    TRANSITIONS,
    ReportOutcome,
    TaskError,
    TaskReport,
    TaskResult,
    TaskStatus,
    is_terminal,
)

metadata = sa.MetaData()

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
    # No longer written or read: callback tokens are derived (services/main/callback_tokens.py). Kept until a
    # schema migration drops it, so existing databases and this definition agree.
    sa.Column("callback_secret", sa.String(64), nullable=True),
    sa.Column("version", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("owner", "integration", "idempotency_key", name="uq_tasks_idempotency"),
    sa.Index("ix_tasks_owner_created", "owner", "created_at"),
)


# Built once: building SQLAlchemy expressions costs more CPU per call than executing these cached statements.
_INSERT = tasks_table.insert()
_BY_ID = sa.select(tasks_table).where(tasks_table.c.id == sa.bindparam("task_id"))
_DELETE = tasks_table.delete().where(tasks_table.c.id == sa.bindparam("task_id"))
# The SET clause comes from the parameters given with each execution.
_COMPARE_AND_SET = tasks_table.update().where(
    tasks_table.c.id == sa.bindparam("where_id"), tasks_table.c.version == sa.bindparam("where_version")
)


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
    version: int
    created_at: datetime
    updated_at: datetime


class StoreConflictError(Exception):
    """An idempotency key was reused with a different request."""


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
        version=m["version"],
        created_at=_aware(m["created_at"]),
        updated_at=_aware(m["updated_at"]),
    )


def decide(record: TaskRecord, report: TaskReport) -> tuple[dict[str, Any], str]:
    """The changed fields a report would apply to a task (empty when it must be ignored) and why not."""
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
    if is_terminal(report.status):
        if report.result is not None:
            changes["result"] = report.result
        if report.error is not None:
            changes["error"] = report.error
    if not changes:
        return {}, "nothing changed"
    return changes, ""


class TaskStore:
    def __init__(self, engine: AsyncEngine, serialize_writes: bool = False) -> None:
        self.engine = engine
        # SQLite has one writer at a time. Concurrent write transactions from the pool's connections would
        # wait in SQLite's busy handler, which sleeps in steps of milliseconds; queueing them here instead
        # hands the lock over as soon as it is free.
        self._write_lock = asyncio.Lock() if serialize_writes else None

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction. On SQLite it takes the write lock when it begins (BEGIN IMMEDIATE), so a
        transaction that reads before it writes never has to upgrade its lock while another process writes."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.connect() as conn:
            await conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
            async with conn.begin():
                yield conn

    @classmethod
    def from_url(cls, url: str) -> TaskStore:
        if not url.startswith("sqlite"):
            return cls(create_async_engine(url, pool_pre_ping=True))
        # One writer at a time: a busy timeout instead of "database is locked" errors under load. Connections
        # end every transaction themselves (commit, or rollback on close), so the pool need not roll back again.
        engine = create_async_engine(url, connect_args={"timeout": 30}, pool_reset_on_return=None)

        @sa.event.listens_for(engine.sync_engine, "connect")
        def tune(dbapi_connection: Any, _: Any) -> None:
            # WAL lets reads run beside the writer; NORMAL sync is durable across process crashes.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
            # The driver would BEGIN on its own before the first write; `begin` below says which BEGIN.
            dbapi_connection.isolation_level = None

        @sa.event.listens_for(engine.sync_engine, "begin")
        def begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))

        return cls(engine, serialize_writes=True)

    async def create_schema(self) -> None:
        # Several main processes may start at once: the loser of the race finds the table on its second look.
        for attempt in (1, 2):
            try:
                async with self._write() as conn:
                    await conn.run_sync(metadata.create_all)
                return
            except (OperationalError, ProgrammingError):
                if attempt == 2:
                    raise

    async def close(self) -> None:
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
    ) -> tuple[TaskRecord, bool]:
        """Insert a queued task; with an idempotency key already used, return that task (and ``False``)."""
        now = _now()
        values = {
            "id": str(uuid.uuid4()),
            "integration": integration,
            "owner": owner,
            "status": "queued",
            "input": msgspec.json.encode(input),
            "progress": 0.0,
            "idempotency_key": idempotency_key,
            "request_digest": request_digest,
            "version": 0,
            "created_at": now,
            "updated_at": now,
        }
        try:
            async with self._write() as conn:
                await conn.execute(_INSERT, values)
        except IntegrityError:
            existing = await self._by_idempotency_key(owner, integration, idempotency_key)
            if existing is None:
                raise
            if existing.request_digest != request_digest:
                raise StoreConflictError(
                    f"Idempotency-Key {idempotency_key!r} was already used with a different request"
                ) from None
            return existing, False
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
            version=0,
            created_at=now,
            updated_at=now,
        )
        return record, True

    async def _by_idempotency_key(self, owner: str, integration: str, key: str | None) -> TaskRecord | None:
        if key is None:
            return None
        query = sa.select(tasks_table).where(
            tasks_table.c.owner == owner,
            tasks_table.c.integration == integration,
            tasks_table.c.idempotency_key == key,
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return _record(row) if row else None

    async def get(self, task_id: str) -> TaskRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(_BY_ID, {"task_id": task_id})).first()
        return _record(row) if row else None

    async def delete(self, task_id: str) -> None:
        async with self._write() as conn:
            await conn.execute(_DELETE, {"task_id": task_id})

    async def list(
        self, *, owner: str, integration: str | None, status: str | None, limit: int, offset: int
    ) -> tuple[list[TaskRecord], int]:
        where = [tasks_table.c.owner == owner]
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
        return [_record(r) for r in rows], int(total)

    async def apply_report(self, task_id: str, report: TaskReport) -> tuple[ReportOutcome, TaskRecord, dict[str, Any]]:
        """Apply a report if the task allows it. Re-reads the task and writes with compare-and-set, so a report
        racing another (or a manual refresh) applies at most once. Returns the outcome, the task as it is now,
        and the fields that changed (empty when nothing was applied)."""
        while True:
            async with self._write() as conn:
                row = (await conn.execute(_BY_ID, {"task_id": task_id})).first()
                if row is None:
                    raise KeyError(task_id)
                record = _record(row)
                changes, reason = decide(record, report)
                if not changes:
                    return ReportOutcome(applied=False, status=record.status, reason=reason), record, {}
                values: dict[str, Any] = {"version": record.version + 1, "updated_at": _now()}
                for field, value in changes.items():
                    values[field] = msgspec.json.encode(value) if field in ("result", "error") else value
                parameters = {**values, "where_id": task_id, "where_version": record.version}
                updated = (await conn.execute(_COMPARE_AND_SET, parameters)).rowcount
            if updated == 1:
                current = msgspec.structs.replace(
                    record, **changes, version=values["version"], updated_at=values["updated_at"]
                )
                return ReportOutcome(applied=True, status=current.status), current, changes
            # Another writer changed the task between our read and write (PostgreSQL, read committed): decide
            # again on fresh state.
