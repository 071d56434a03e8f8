"""The outbox relay against a real NATS server: commit order, the event id as message id, duplicates dropped, two
relays on one SQLite store, and an outage of NATS."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.errors
import pytest
from nats.js import JetStreamContext

from deploy.local import LocalStack
from deploy.ports import Ports
from services.main.relay import OutboxRelay
from services.main.store import OutboxEvent, TaskRecord, TaskStore
from services.shared import event_stream
from services.shared.settings import EventStreamSettings
from services.shared.tasks import DEFAULT_PRIORITY, TaskReport
from tests.stack import nats_settings, wait_for

pytestmark = pytest.mark.integration


def event(record: TaskRecord, changes: dict[str, Any]) -> OutboxEvent:
    body = {"task_id": record.id, "version": record.version}
    return OutboxEvent(id=str(uuid.uuid4()), payload=msgspec.json.encode(body))


def stream_settings(nats_server: LocalStack) -> EventStreamSettings:
    """A stream of its own, published to as main's relay publishes (its NATS user may publish under tasks.events)."""
    name = uuid.uuid4().hex[:8]
    return nats_settings(
        nats_server, event_stream.PUBLISHER, stream=f"RELAY_{name}", subject_prefix=f"tasks.events.relay{name}"
    )


def relay(store: TaskStore, settings: EventStreamSettings) -> OutboxRelay:
    return OutboxRelay(store, settings, batch_size=50, poll_seconds=0.05)


async def stream_messages(js: JetStreamContext, settings: EventStreamSettings) -> list[tuple[str, dict[str, Any]]]:
    """(message id, body) of every message in the stream, in stream order."""
    state = (await js.stream_info(settings.stream)).state
    found = []
    for seq in range(state.first_seq, state.last_seq + 1):
        msg = await js.get_msg(settings.stream, seq=seq, direct=True)
        assert msg.headers is not None
        assert msg.data is not None
        found.append((msg.headers["Nats-Msg-Id"], msgspec.json.decode(msg.data)))
    return found


async def drained(store: TaskStore, timeout: float) -> None:
    """Until the outbox is empty: every event published, acknowledged and deleted."""

    async def empty() -> bool:
        return await store.unsent_events() == 0

    await wait_for(empty, timeout, "the outbox to be relayed")


async def new_task(store: TaskStore, owner: str = "alice") -> str:
    record, _ = await store.create(
        integration="echo",
        owner=owner,
        input={},
        idempotency_key=None,
        request_digest="d",
        priority=DEFAULT_PRIORITY,
        event=event,
    )
    return record.id


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[TaskStore]:
    task_store = TaskStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'tasks.db'}")
    await task_store.migrate()
    yield task_store
    await task_store.close()


@pytest.fixture
async def js(nats_server: LocalStack) -> AsyncIterator[JetStreamContext]:
    nats = await event_stream.connect(nats_settings(nats_server, event_stream.PUBLISHER), "tests")
    yield nats.jetstream()
    await nats.close()


async def test_committed_events_go_out_in_order_with_their_ids_and_are_marked_sent(
    store: TaskStore, js: JetStreamContext, nats_server: LocalStack
) -> None:
    settings = stream_settings(nats_server)
    first, second = await new_task(store), await new_task(store, owner="b.o b")
    await store.apply_report(first, TaskReport(status="running", progress=0.2), event)
    await store.apply_report(second, TaskReport(status="running"), event)
    async with store.relay_batch(100) as batch:
        expected = [(row.event_id, msgspec.json.decode(row.payload)) for row in batch.rows]
    running = relay(store, settings)
    running.start()
    try:
        await drained(store, 30)
        assert await stream_messages(js, settings) == expected
        # Each user has a subject of their own, whatever their name holds.
        last = await js.get_msg(settings.stream, subject=event_stream.user_subject(settings, "b.o b"), direct=True)
        assert msgspec.json.decode(last.data or b"") == {"task_id": second, "version": 1}
        # A commit wakes the relay at once.
        await store.apply_report(first, TaskReport(status="succeeded"), event)
        running.wake()
        await drained(store, 10)
        assert [body["version"] for _, body in await stream_messages(js, settings)][-1] == 2
    finally:
        await running.stop()
        await js.delete_stream(settings.stream)


async def test_an_event_published_before_a_crash_is_stored_once(
    store: TaskStore, js: JetStreamContext, nats_server: LocalStack
) -> None:
    """A relay that published and died before it marked the rows sent: the next relay publishes them again, and
    JetStream keeps the first copy only."""
    settings = stream_settings(nats_server)
    await event_stream.ensure_stream(js, settings)
    for _ in range(3):
        await new_task(store)
    async with store.relay_batch(100) as batch:
        for row in batch.rows[:2]:
            await js.publish(
                event_stream.user_subject(settings, row.owner), row.payload, headers={"Nats-Msg-Id": row.event_id}
            )
        ids = [row.event_id for row in batch.rows]
    running = relay(store, settings)
    running.start()
    try:
        await drained(store, 30)
        assert [message_id for message_id, _ in await stream_messages(js, settings)] == ids
    finally:
        await running.stop()
        await js.delete_stream(settings.stream)


async def test_two_relays_on_one_sqlite_store_publish_each_event_once_in_version_order(
    tmp_path: Path, js: JetStreamContext, nats_server: LocalStack
) -> None:
    """As with MAIN_WORKERS=2 on SQLite: each process's relay reads what the other has not marked yet."""
    settings = stream_settings(nats_server)
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    stores = [TaskStore.from_url(url), TaskStore.from_url(url)]
    await stores[0].migrate()
    relays = [relay(store, settings) for store in stores]
    for running in relays:
        running.start()
    try:
        tasks = [await new_task(stores[i % 2]) for i in range(4)]

        async def report(i: int) -> None:
            store, task_id = stores[i % 2], tasks[i % 4]
            await store.apply_report(task_id, TaskReport(status="running", progress=i / 100), event)
            relays[i % 2].wake()

        for i in range(1, 81):
            await report(i)

        await drained(stores[0], 30)
        messages = await stream_messages(js, settings)
        assert len({message_id for message_id, _ in messages}) == len(messages) == 4 + 80
        for task_id in tasks:
            versions = [body["version"] for _, body in messages if body["task_id"] == task_id]
            assert versions == list(range(len(versions))), task_id
    finally:
        for running in relays:
            await running.stop()
        for store in stores:
            await store.close()
        await js.delete_stream(settings.stream)


async def test_events_committed_while_nats_is_down_go_out_when_it_is_back(
    store: TaskStore, tmp_path_factory: pytest.TempPathFactory
) -> None:
    server = LocalStack(tmp_path_factory.mktemp("nats-outage") / "state", Ports.free(), ["nats"], middleware=["nats"])
    with server:
        settings = stream_settings(server)
        running = relay(store, settings)
        running.start()
        nats = await event_stream.connect(settings, "tests")
        try:
            await new_task(store)

            await drained(store, 30)
            await asyncio.to_thread(server.stop, "nats")
            for _ in range(5):
                await new_task(store)
                running.wake()
            assert await store.unsent_events() == 5
            await asyncio.to_thread(server.start, "nats")
            await drained(store, 60)
            assert len(await stream_messages(nats.jetstream(), settings)) == 6
        finally:
            await running.stop()
            await nats.close()


async def test_nats_refuses_a_client_without_its_password(nats_server: LocalStack) -> None:
    url = nats_server.service_env()["NATS_URL"]
    main = nats_settings(nats_server, event_stream.PUBLISHER)
    communication = nats_settings(nats_server, event_stream.READER)
    for user, password in (
        (None, None),
        (main.user, communication.password),
        (communication.user, main.password),
        (main.user, main.password[:-1]),
    ):
        with pytest.raises(nats.errors.Error, match="Authorization"):
            await nats.connect(url, user=user, password=password, allow_reconnect=False, connect_timeout=2)
    for settings in (main, communication):
        client = await nats.connect(
            url, user=settings.user, password=settings.password, allow_reconnect=False, connect_timeout=2
        )
        assert client.is_connected
        await client.close()
