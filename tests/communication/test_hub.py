"""The hub on its own: fan-out, isolation, bounded queues and counters, without HTTP or sockets."""

from __future__ import annotations

import asyncio

import pytest

from services.communication.hub import SLOW_CLIENT, UNSUBSCRIBED, Hub


async def test_publish_reaches_every_subscriber_of_the_channel_in_order() -> None:
    hub = Hub(queue_size=8)
    first, second = hub.subscribe("user:alice"), hub.subscribe("user:alice")

    assert hub.publish("user:alice", "one", 1) == 2
    assert hub.publish("user:alice", "two", 2) == 2

    assert [await first.next(), await first.next()] == [(1, "one"), (2, "two")]
    assert [await second.next(), await second.next()] == [(1, "one"), (2, "two")]
    assert hub.position == 2


async def test_other_channels_do_not_receive_the_event() -> None:
    hub = Hub(queue_size=8)
    alice, bob = hub.subscribe("user:alice"), hub.subscribe("user:bob")

    hub.publish("user:bob", "for bob", 3)

    assert alice.pending == 0
    assert await bob.next() == (3, "for bob")


async def test_publish_to_a_channel_without_subscribers_delivers_nothing() -> None:
    hub = Hub(queue_size=8)

    assert hub.publish("user:nobody", "lost", 4) == 0
    assert hub.counters.messages_published == 1
    assert hub.counters.messages_delivered == 0


async def test_next_waits_for_a_publish() -> None:
    hub = Hub(queue_size=8)
    subscriber = hub.subscribe("user:alice")
    waiting = asyncio.create_task(subscriber.next())
    await asyncio.sleep(0)
    assert not waiting.done()

    hub.publish("user:alice", "hello", 5)

    assert await asyncio.wait_for(waiting, 1) == (5, "hello")


async def test_a_full_queue_drops_only_that_subscriber_as_too_slow() -> None:
    hub = Hub(queue_size=2)
    slow, fast = hub.subscribe("user:alice"), hub.subscribe("user:alice")

    for n in range(3):
        hub.publish("user:alice", f"m{n}", n + 1)
        assert await fast.next() == (n + 1, f"m{n}")

    assert slow.closed.done()
    assert slow.closed.result() == SLOW_CLIENT
    assert slow.pending == 0
    assert await slow.next() is None
    assert not fast.closed.done()
    assert hub.subscribers("user:alice") == 1
    assert hub.publish("user:alice", "after", 4) == 1
    counters = hub.counters
    assert counters.slow_client_disconnects == 1
    # the message that did not fit, and the two still queued when the socket was dropped
    assert counters.messages_dropped == 3
    assert counters.messages_delivered == 2 + 1 + 1 + 1 + 1
    # still held by the server until its handler has closed it
    assert counters.connections_open == 2
    hub.unsubscribe(slow)
    assert counters.connections_open == 1


async def test_dropping_a_subscriber_wakes_its_waiting_sender() -> None:
    hub = Hub(queue_size=1)
    subscriber = hub.subscribe("user:alice")
    waiting = asyncio.create_task(subscriber.next())
    await asyncio.sleep(0)

    hub.unsubscribe(subscriber)

    assert await asyncio.wait_for(waiting, 1) is None
    assert subscriber.closed.result() == UNSUBSCRIBED


async def test_unsubscribe_is_idempotent_and_forgets_empty_channels() -> None:
    hub = Hub(queue_size=4)
    subscriber = hub.subscribe("user:alice")
    hub.publish("user:alice", "queued", 8)

    hub.unsubscribe(subscriber)
    hub.unsubscribe(subscriber)

    assert hub.channels == 0
    assert hub.counters.connections_open == 0
    assert hub.counters.connections_total == 1
    assert hub.counters.messages_dropped == 1


async def test_a_subscriber_dropped_as_too_slow_can_still_be_unsubscribed() -> None:
    hub = Hub(queue_size=1)
    subscriber = hub.subscribe("user:alice")
    hub.publish("user:alice", "a", 9)
    hub.publish("user:alice", "b", 10)

    hub.unsubscribe(subscriber)

    assert subscriber.closed.result() == SLOW_CLIENT
    assert hub.counters.connections_open == 0


def test_queue_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="queue_size"):
        Hub(queue_size=0)
