"""Log setup shared by the services' entry points, and the redaction every log line passes through."""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from uvicorn.config import LOGGING_CONFIG

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactSecrets(logging.Filter):
    """Credentials that travel in URLs (a websocket's ``?token=``, a provider callback's ``?secret=``) would reach
    the log with every request line uvicorn writes; they are replaced by ``***``."""

    _secret = re.compile(r"((?:token|secret)=)[^&\s\"']+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self._secret.sub(r"\1***", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._secret.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        return True


def configure(level: int | str = logging.INFO) -> None:
    logging.basicConfig(level=level, format=FORMAT)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
    # httpx logs every request at INFO: one line per progress report, per publish and per provider poll.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging setup with every handler redacting. As a dictConfig it also applies in the worker
    processes uvicorn spawns (MAIN_WORKERS), which configure their logging afresh."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": f"{__name__}.RedactSecrets"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    return config
