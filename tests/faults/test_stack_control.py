"""LocalStack.stop / LocalStack.start, which the scenarios use to take one component down and bring it back: the
rest keeps running, the component comes back on the same port with its data."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from deploy.errors import UsageError
from deploy.local import LocalStack
from deploy.ports import Ports, port_is_free
from services.shared.storage import ObjectStore

from .harness import Platform

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def test_stop_of_a_stack_that_never_ran_stops_nothing(tmp_path: Path) -> None:
    out = io.StringIO()
    stack = LocalStack(tmp_path / "state", Ports.free(), middleware=["temporal", "minio"], out=out)
    assert stack.stop("minio") == []
    assert "minio: not running" in out.getvalue()
    with pytest.raises(UsageError, match="unknown component 'redis'"):
        stack.stop("redis")
    with pytest.raises(UsageError, match="unknown component"):
        stack.start("redis")


async def test_one_component_stops_and_starts_again_with_its_data(fault_stack: LocalStack, platform: Platform) -> None:
    objects: ObjectStore = platform.objects
    await objects.put_bytes("stack-control/kept.txt", b"kept", "text/plain")
    before = {s.name: s for s in fault_stack.status()}
    assert all(s.state == "running" and s.healthy for s in before.values()), before

    assert await asyncio.to_thread(fault_stack.stop, "minio") == ["minio"]
    stopped = {s.name: s for s in fault_stack.status()}
    assert stopped["minio"].state == "stopped"
    assert port_is_free(fault_stack.ports.s3)
    assert all(s.state == "running" for name, s in stopped.items() if name != "minio"), stopped
    assert not await objects.bucket_reachable()
    # Stopping what is not running is a no-op.
    assert await asyncio.to_thread(fault_stack.stop, "minio") == []

    await asyncio.to_thread(fault_stack.start, "minio")
    after = {s.name: s for s in fault_stack.status()}
    assert after["minio"].state == "running" and after["minio"].healthy, after["minio"]
    assert after["minio"].pid != before["minio"].pid
    # Components that were running are left alone.
    assert all(after[name].pid == before[name].pid for name in before if name != "minio")
    assert await objects.get_bytes("stack-control/kept.txt") == b"kept"
