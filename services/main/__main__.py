"""``python -m services.main``: serve main on MAIN_HOST, its public API on MAIN_PORT and its internal API (the
workers' reports) on MAIN_INTERNAL_PORT, in MAIN_WORKERS processes."""

from __future__ import annotations

import logging
import sys

from litestar import Litestar

from services.shared import logs
from services.shared.discovery import DiscoveryError, IntegrationImportError
from services.shared.http_server import ServerConfig, run
from services.shared.settings import SettingsError

from .app import create_app
from .settings import MainSettings


def main() -> int:
    logs.configure()
    try:
        settings = MainSettings.from_env()
        # Built here even when worker processes build their own: bad settings or integrations fail fast, once.
        app = create_app(settings)
    except (SettingsError, DiscoveryError, IntegrationImportError, TypeError) as exc:
        logging.getLogger("main").error("%s", exc)
        return 2
    # Worker processes are started by uvicorn from an import string; each reads the same environment.
    target: Litestar | str = app if settings.workers == 1 else "services.main.app:app_factory"
    config = ServerConfig(
        target,
        limits=settings.limits,
        factory=settings.workers > 1,
        workers=settings.workers,
        host=settings.host,
        log_level="info",
        log_config=logs.uvicorn_log_config(),
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
    )
    return 0 if run(config, [settings.port, settings.internal_port]) else 1


if __name__ == "__main__":
    sys.exit(main())
