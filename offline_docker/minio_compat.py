#!/usr/bin/env python3
"""MinIO-compatible front for SeaweedFS, the entrypoint of the `minio-compat` image.

No MinIO server can be had on offline hosts, but SeaweedFS's `weed mini` is a real S3 server. This script makes it
a drop-in for the `minio/minio` container in compose files and tests:

- MinIO's command line, `[minio] server DIR [--address HOST:PORT] [--console-address HOST:PORT]`, becomes a
  `weed mini` command line with every port given explicitly (all of weed's own ports bind to 127.0.0.1 inside the
  container; only the S3 address is published).
- MinIO's credentials (MINIO_ROOT_USER / MINIO_ROOT_PASSWORD, their *_FILE forms, or the older MINIO_ACCESS_KEY /
  MINIO_SECRET_KEY; default minioadmin / minioadmin, same length rules as MinIO) become weed's S3 admin identity.
- weed has no `/minio/health/*` routes (it reads them as bucket `minio`, key `health/live`, and says 403). So the
  S3 address is served by a small TCP front in this script: when the *first* request on a connection is a GET or
  HEAD of a MinIO health path it answers itself (200 once weed's S3 gateway answers its own /healthz, else 503)
  and closes the connection; every other connection is passed through to weed byte for byte, so request
  signatures, presigned URLs, streaming and keep-alive are weed's own. Limitation: a health path sent as a later
  request on a kept-alive S3 connection reaches weed (403); health checkers open a connection per check.
- There is no console: --console-address is accepted and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

HEALTH_PATHS = frozenset(
    {"/minio/health/live", "/minio/health/ready", "/minio/health/cluster", "/minio/health/cluster/read"}
)
DEFAULT_CREDENTIAL = "minioadmin"  # MinIO's documented development default, user and password alike

# weed's own ports inside the container, as offsets from a base port (18000 by default, or
# MINIO_COMPAT_WEED_PORT_BASE, which lets the front run outside a container). Each also uses port + 10000 for
# gRPC, given explicitly where weed honours the flag. Away from MinIO's 9000/9001 so any --address on those works.
DEFAULT_WEED_PORT_BASE = 18000
_WEED_PORT_OFFSETS = {"s3": 0, "master": 333, "volume": 340, "filer": 888, "admin": 646}
GRPC_OFFSET = 10000


def weed_ports(base: int = DEFAULT_WEED_PORT_BASE) -> dict[str, int]:
    return {name: base + offset for name, offset in _WEED_PORT_OFFSETS.items()}


class UsageError(Exception):
    pass


@dataclass(frozen=True)
class Config:
    data_dir: str
    weed_ports: dict[str, int]
    host: str
    port: int
    console_address: str | None
    access_key: str
    secret_key: str


def _split_address(value: str, flag: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{flag} must look like HOST:PORT or :PORT, got {value!r}")
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)


def _env_value(env: Mapping[str, str], name: str) -> str | None:
    file_name = env.get(f"{name}_FILE")
    if file_name:
        with open(file_name, encoding="utf-8") as handle:
            return handle.read().strip()
    return env.get(name) or None


def parse(argv: Sequence[str], env: Mapping[str, str]) -> Config:
    """MinIO's command line and environment -> Config. Raises UsageError with MinIO-like messages."""
    args = list(argv)
    if args and args[0] == "minio":
        args = args[1:]
    if not args or args[0] != "server":
        raise UsageError("usage: [minio] server DIR [--address :9000] [--console-address :9001]")
    address = env.get("MINIO_ADDRESS") or ":9000"
    console: str | None = env.get("MINIO_CONSOLE_ADDRESS") or None
    dirs: list[str] = []
    rest = args[1:]
    index = 0
    while index < len(rest):
        arg = rest[index]
        name, eq, inline = arg.partition("=")
        if name in ("--address", "--console-address"):
            if eq:
                value = inline
            else:
                index += 1
                if index >= len(rest):
                    raise UsageError(f"{name} needs a value")
                value = rest[index]
            if name == "--address":
                address = value
            else:
                console = value
        elif name in ("--quiet", "--json", "--anonymous"):
            pass  # output style only
        elif arg.startswith("-"):
            raise UsageError(f"unsupported option {arg} (this is SeaweedFS behind a MinIO-compatible front)")
        else:
            dirs.append(arg)
        index += 1
    if not dirs and env.get("MINIO_VOLUMES"):
        dirs = env["MINIO_VOLUMES"].split()
    if len(dirs) != 1 or "{" in dirs[0] or "://" in dirs[0]:
        raise UsageError(f"exactly one local data directory is supported, got {dirs or 'none'}")
    host, port = _split_address(address, "--address")
    base = env.get("MINIO_COMPAT_WEED_PORT_BASE", "")
    ports = weed_ports(int(base) if base.isdigit() else DEFAULT_WEED_PORT_BASE)
    if port in ports.values() or port - GRPC_OFFSET in ports.values():
        raise UsageError(f"--address port {port} is used by weed inside the container; pick another")
    if console is not None:
        _split_address(console, "--console-address")
    user = _env_value(env, "MINIO_ROOT_USER") or _env_value(env, "MINIO_ACCESS_KEY") or DEFAULT_CREDENTIAL
    password = _env_value(env, "MINIO_ROOT_PASSWORD") or _env_value(env, "MINIO_SECRET_KEY") or DEFAULT_CREDENTIAL
    if len(user) < 3:
        raise UsageError("MINIO_ROOT_USER length should be at least 3 characters")
    if len(password) < 8:
        raise UsageError("MINIO_ROOT_PASSWORD length should be at least 8 characters")
    return Config(dirs[0], ports, host, port, console, user, password)


def weed_command(config: Config, weed: str = "weed") -> list[str]:
    """The `weed mini` argv for a Config; every port explicit, everything on 127.0.0.1."""
    ports = config.weed_ports
    return [
        weed,
        "mini",
        f"-dir={config.data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['s3'] + GRPC_OFFSET}",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master'] + GRPC_OFFSET}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume'] + GRPC_OFFSET}",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer'] + GRPC_OFFSET}",
        # The admin gRPC port stays at the implicit admin port + 10000: weed's embedded worker dials that even
        # when -admin.port.grpc says otherwise.
        f"-admin.port={ports['admin']}",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        # MinIO semantics: a bucket must be empty to be deleted, and uploads never create buckets.
        "-s3.allowDeleteBucketNotEmpty=false",
        "-s3.autoCreateBucket=false",
    ]


def weed_environment(config: Config, env: Mapping[str, str]) -> dict[str, str]:
    result = {k: v for k, v in env.items() if not k.startswith("MINIO_")}
    result["AWS_ACCESS_KEY_ID"] = config.access_key
    result["AWS_SECRET_ACCESS_KEY"] = config.secret_key
    return result


def _log(message: str) -> None:
    print(f"minio-compat: {message}", file=sys.stderr, flush=True)


class Front:
    """Serves the S3 address: answers MinIO health paths itself, passes everything else through to weed."""

    def __init__(self, backend_port: int) -> None:
        self.backend = ("127.0.0.1", backend_port)

    async def backend_healthy(self) -> bool:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*self.backend), timeout=2)
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), timeout=2)
            return status_line.split(b" ")[1:2] == [b"200"]
        except (OSError, TimeoutError, IndexError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await self._read_head(reader)
            if not head:
                return
            if _is_health_request(head):
                await self._answer_health(writer)
                return
            await self._pass_through(head, reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> bytes:
        try:
            return await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        except asyncio.LimitOverrunError as exc:
            # Larger than a health request could be: pass it through as it is.
            return await reader.readexactly(exc.consumed)

    async def _answer_health(self, writer: asyncio.StreamWriter) -> None:
        healthy = await self.backend_healthy()
        status = "200 OK" if healthy else "503 Service Unavailable"
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nServer: minio-compat (SeaweedFS)\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()

    async def _pass_through(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.backend)
        except OSError:
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            return
        try:
            up_writer.write(head)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()
            with contextlib.suppress(OSError):
                await up_writer.wait_closed()


def _is_health_request(head: bytes) -> bool:
    """True when the head is a GET or HEAD of a MinIO health path."""
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split(" ")
    if len(parts) != 3 or parts[0] not in ("GET", "HEAD"):
        return False
    target = parts[1]
    if "://" in target:  # absolute form
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    path = target.split("?", 1)[0]
    return path.rstrip("/") in HEALTH_PATHS


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(1 << 16):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


async def serve(config: Config) -> int:
    weed = os.environ.get("WEED_BINARY", "weed")
    process = await asyncio.create_subprocess_exec(
        *weed_command(config, weed), env=weed_environment(config, os.environ), stdin=asyncio.subprocess.DEVNULL
    )
    front = Front(config.weed_ports["s3"])
    server = await asyncio.start_server(front.handle, config.host, config.port, reuse_address=True)
    _log(
        f"S3 API (weed mini behind a MinIO-compatible front) on {config.host}:{config.port}, data in {config.data_dir}"
    )
    if config.console_address:
        _log(f"no MinIO console in this image; --console-address {config.console_address} is ignored")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    weed_exit = asyncio.ensure_future(process.wait())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({weed_exit, stopping}, return_when=asyncio.FIRST_COMPLETED)
    server.close()
    if weed_exit.done():
        stopping.cancel()
        _log(f"weed exited with status {weed_exit.result()}")
        return weed_exit.result() or 1
    process.terminate()
    try:
        await asyncio.wait_for(weed_exit, timeout=10)
    except TimeoutError:
        process.kill()
        await weed_exit
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse(list(sys.argv[1:] if argv is None else argv), os.environ)
    except (UsageError, OSError) as exc:
        _log(f"error: {exc}")
        return 2
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
