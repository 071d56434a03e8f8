"""``python -m services.simulator``: serve the simulator with uvicorn on SIMULATOR_HOST:SIMULATOR_PORT.

On SIGTERM or SIGINT uvicorn shuts down gracefully and then re-raises the signal, so the exit status of a
stopped simulator is that of the signal."""

from __future__ import annotations

import logging
import sys

import uvicorn

from services.shared import logs
from services.shared.settings import SettingsError

from .app import create_app
from .config import SimulatorSettings


def main() -> int:
    logs.configure()
    try:
        settings = SimulatorSettings.from_env()
    except SettingsError as exc:
        logging.getLogger("simulator").error("%s", exc)
        return 2
    logging.getLogger().setLevel(settings.log_level.upper())
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # A request held open by a "hang" fault must not keep a stopping simulator alive for long.
        timeout_graceful_shutdown=3,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
