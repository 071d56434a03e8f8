"""Runs the app under uvicorn and stops it gracefully on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
from collections.abc import Generator

import uvicorn
from litestar.types import ASGIApp

from .settings import CommunicationSettings


class Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn already shuts down gracefully on these signals, but then raises the signal again, so a clean stop
        # would look like "killed by SIGTERM" (exit 143) to compose and to supervisors. Exit 0 instead.
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)


class RedactTokens(logging.Filter):
    """uvicorn logs every websocket's path with its query string, which carries the client's token."""

    _token = re.compile(r"(token=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._token.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        return True


def serve(app: ASGIApp, settings: CommunicationSettings) -> None:
    config = settings.get_uvicorn_config(app)
    # After the config exists: creating it is what configures uvicorn's loggers.
    for name in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).addFilter(RedactTokens())
    Server(config).run()
