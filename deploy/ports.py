"""Every port the stack listens on, with the documented defaults, and helpers to find free ones."""

from __future__ import annotations

import dataclasses
import random
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from .errors import DeployError, UsageError

HOST = "127.0.0.1"
# SeaweedFS serves gRPC on every HTTP port + 10000; those must be free too.
WEED_GRPC_OFFSET = 10000
# Free ports are picked at or above this, and below the kernel's range for the local ports of outgoing
# connections: a port picked in that range could become some client's local port between the pick and the
# server's bind (or while a stopped server's port waits to be bound again), which then fails.
_LOWEST_PICKED = 10000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Without room below the kernel's range (or without /proc), the kernel picks (bind to port 0).
_MIN_PICK_RANGE = 4000


@dataclass(frozen=True)
class Ports:
    """Ports on 127.0.0.1. Only ``up`` uses these defaults; tests use :meth:`free`."""

    main: int = 8000
    communication: int = 8001
    simulator: int = 8002
    # The internal listeners (the report API; metrics): never published in docker mode.
    main_internal: int = 8010
    communication_internal: int = 8011
    temporal: int = 7233
    temporal_ui: int = 8233
    # Passed explicitly, otherwise the dev server picks random ones that could collide with ours.
    temporal_http: int = 7243
    temporal_metrics: int = 7244
    s3: int = 9000
    nats: int = 4222
    nats_monitor: int = 8222
    # The scale shape only.
    postgres: int = 5432
    main_2: int = 8020
    communication_2: int = 8021
    main_2_internal: int = 8030
    communication_2_internal: int = 8031
    # The MinIO console (docker mode only).
    s3_console: int = 9001
    # SeaweedFS internals (local mode only), each also using port + 10000.
    weed_master: int = 9333
    weed_volume: int = 9340
    weed_filer: int = 8888
    weed_admin: int = 23646

    WEED_FIELDS: ClassVar[tuple[str, ...]] = ("s3", "weed_master", "weed_volume", "weed_filer", "weed_admin")

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, int]) -> Ports:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown port name(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**{k: int(v) for k, v in values.items()})

    def replace(self, **changes: int) -> Ports:
        return self.from_dict({**self.as_dict(), **changes})

    @classmethod
    def free(cls, host: str = HOST) -> Ports:
        """A full set of currently free ports (weed ports with port + 10000 free as well)."""
        held: list[socket.socket] = []
        taken: set[int] = set()
        try:
            values: dict[str, int] = {}
            for f in dataclasses.fields(cls):
                if f.name in cls.WEED_FIELDS:
                    values[f.name] = _reserve_weed_port(host, held, taken)
                else:
                    values[f.name] = _reserve_any_port(host, held, taken)
            return cls(**values)
        finally:
            for s in held:
                s.close()


def _bind(host: str, port: int) -> socket.socket | None:
    # SO_REUSEADDR gives the same answer a server gets: only a listening socket makes the port busy,
    # connections in TIME_WAIT left by a process that just stopped do not.
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
    except OSError:
        s.close()
        return None
    return s


def _pick_range() -> tuple[int, int] | None:
    """Where free ports are picked: [lowest, first port of the kernel's ephemeral range)."""
    try:
        first_ephemeral = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if first_ephemeral - _LOWEST_PICKED < _MIN_PICK_RANGE:
        return None
    return _LOWEST_PICKED, first_ephemeral


def _reserve_any_port(host: str, held: list[socket.socket], taken: set[int]) -> int:
    picks = _pick_range()
    rng = random.Random()
    for _ in range(500):
        s = _bind(host, rng.randrange(*picks) if picks else 0)
        if s is None:
            continue
        port = int(s.getsockname()[1])
        if port in taken:
            s.close()
            continue
        held.append(s)
        taken.add(port)
        return port
    raise DeployError("could not find a free port")


def free_port(host: str = HOST) -> int:
    """One port nothing listens on right now, picked as :meth:`Ports.free` picks them, for one process to bind."""
    held: list[socket.socket] = []
    try:
        return _reserve_any_port(host, held, set())
    finally:
        for s in held:
            s.close()


def _reserve_weed_port(host: str, held: list[socket.socket], taken: set[int]) -> int:
    rng = random.Random()
    # port + 10000 must stay below the kernel's range too (or be a valid port, without one).
    low, high = _pick_range() or (20000, 65536)
    for _ in range(500):
        port = rng.randrange(low, high - WEED_GRPC_OFFSET)
        if port in taken or port + WEED_GRPC_OFFSET in taken:
            continue
        first = _bind(host, port)
        if first is None:
            continue
        second = _bind(host, port + WEED_GRPC_OFFSET)
        if second is None:
            first.close()
            continue
        held += [first, second]
        taken.update((port, port + WEED_GRPC_OFFSET))
        return port
    raise DeployError("could not find a free port pair (port and port + 10000)")


def port_is_free(port: int, host: str = HOST) -> bool:
    s = _bind(host, port)
    if s is None:
        return False
    s.close()
    return True


def busy_ports(ports: Iterable[int], host: str = HOST) -> list[int]:
    return [p for p in ports if not port_is_free(p, host)]


def wait_ports_free(ports: Iterable[int], timeout: float, host: str = HOST) -> list[int]:
    """Wait until every port can be bound; returns the ones still busy when the timeout ran out."""
    wanted = list(ports)
    deadline = time.monotonic() + timeout
    while True:
        busy = busy_ports(wanted, host)
        if not busy or time.monotonic() >= deadline:
            return busy
        time.sleep(0.05)


def parse_port_overrides(items: Iterable[str]) -> dict[str, int]:
    """``--port NAME=NUMBER`` values, e.g. ``temporal=17233``."""
    known = {f.name for f in dataclasses.fields(Ports)}
    result: dict[str, int] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in known:
            raise UsageError(f"--port expects NAME=NUMBER with NAME one of: {', '.join(sorted(known))}; got {item!r}")
        try:
            value = int(raw)
        except ValueError:
            raise UsageError(f"--port {name}: {raw!r} is not a number") from None
        if not 0 < value < 65536:
            raise UsageError(f"--port {name}: {value} is not a valid port")
        result[name] = value
    return result
