"""``python -m services.simulator``: serve the simulator with uvicorn on SIMULATOR_HOST:SIMULATOR_PORT."""

from __future__ import annotations

import logging

import uvicorn

from .app import create_app
from .config import SimulatorSettings


def main() -> None:
    settings = SimulatorSettings.from_env()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # A request held open by a "hang" fault must not keep a stopping simulator alive for long.
        timeout_graceful_shutdown=3,
    )
    # uvicorn stops gracefully on SIGTERM as well as SIGINT.
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
