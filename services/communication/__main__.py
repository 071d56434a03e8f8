"""``python -m services.communication``: serve communication with uvicorn on COMMUNICATION_HOST:PORT."""

from __future__ import annotations

import sys

from services.shared import logs
from services.shared.settings import SettingsError

from .app import create_app
from .server import serve
from .settings import CommunicationSettings


def main() -> int:
    try:
        settings = CommunicationSettings.from_env()
    except SettingsError as exc:
        print(f"communication: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level.upper().replace("TRACE", "DEBUG"))
    serve(create_app(settings), settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
