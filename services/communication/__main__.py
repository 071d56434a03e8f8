"""``python -m services.communication``: serve communication on COMMUNICATION_HOST, websockets on
COMMUNICATION_PORT and the publish API and metrics on COMMUNICATION_INTERNAL_PORT."""

from __future__ import annotations

import sys

from services.shared import logs
from services.shared.http_server import run
from services.shared.settings import SettingsError

from .app import create_app
from .settings import CommunicationSettings


def main() -> int:
    try:
        settings = CommunicationSettings.from_env()
    except SettingsError as exc:
        print(f"communication: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level.upper().replace("TRACE", "DEBUG"))
    config = settings.get_uvicorn_config(create_app(settings))
    return 0 if run(config, [settings.port, settings.internal_port]) else 1


if __name__ == "__main__":
    sys.exit(main())
