"""``python -m services.async_task [INTEGRATION ...]``: serve the named integrations, or all of them."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import httpx

from services.shared import logs
from services.shared.discovery import DiscoveryError, IntegrationImportError, discover
from services.shared.settings import Env, SettingsError
from services.shared.temporal import connect

from .launcher import LauncherError, LauncherSettings, build_workers, make_context, run_workers, select

log = logging.getLogger("async_task")


async def serve(names: list[str]) -> int:
    settings = LauncherSettings.from_env()
    discovery = discover(blacklist=settings.blacklist)
    for integration in discovery.integrations:
        log.info(
            "found integration %s (folder %s, task queue %s)",
            integration.name,
            integration.folder,
            integration.task_queue,
        )
    for excluded in discovery.excluded:
        log.info("excluded integration folder %s: %s", excluded.folder, excluded.reason)
    integrations = select(discovery, names)

    client = await connect(settings.platform.temporal)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    slots = settings.max_concurrent_activities
    # Every activity slot of every Worker in this process (two per integration: its task queue and its provider
    # queue) may hold one provider connection or one report.
    connections = slots * 2 * len(integrations)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=100)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits) as http:
        ctx = make_context(settings, Env(), http, connections)
        try:
            workers = build_workers(client, integrations, ctx, settings.shutdown_timeout, slots)
            log.info("serving %d integration(s): %s", len(integrations), ", ".join(i.name for i in integrations))
            await run_workers(workers, stop)
        finally:
            await ctx.reporter.close()
            await ctx.outbound.aclose()
    log.info("all workers stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.async_task", description=__doc__)
    parser.add_argument("integrations", nargs="*", help="integration names to serve (default: all discovered)")
    args = parser.parse_args(argv)
    logs.configure()
    try:
        return asyncio.run(serve(list(args.integrations)))
    except (DiscoveryError, IntegrationImportError, LauncherError, SettingsError) as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
