"""``python -m services.main``: serve main with uvicorn on MAIN_HOST:MAIN_PORT."""

from __future__ import annotations

import logging
import sys

import uvicorn

from services.shared.discovery import DiscoveryError, IntegrationImportError
from services.shared.settings import SettingsError

from .app import create_app
from .settings import MainSettings


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = MainSettings.from_env()
        app = create_app(settings)
    except (SettingsError, DiscoveryError, IntegrationImportError, TypeError) as exc:
        logging.getLogger("main").error("%s", exc)
        return 2
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
