"""Log setup shared by the services' entry points."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: int | str = logging.INFO) -> None:
    logging.basicConfig(level=level, format=FORMAT)
    # httpx logs every request at INFO: one line per progress report, per publish and per provider poll.
    logging.getLogger("httpx").setLevel(logging.WARNING)
