"""The one way every service, worker and probe connects to Temporal: always with the msgspec data converter, and
every connection setting taken from ``TemporalSettings``, so a new one (TLS, API key) is applied here only."""

from __future__ import annotations

from temporalio.client import Client

from .converter import data_converter
from .settings import TemporalSettings


async def connect(settings: TemporalSettings, *, lazy: bool = False) -> Client:
    """A client for ``settings``. ``lazy`` returns at once and dials on the first call, for a service that must
    start (and serve what it can) while Temporal is still coming up; otherwise an unreachable server raises here."""
    return await Client.connect(
        settings.address, namespace=settings.namespace, data_converter=data_converter, lazy=lazy
    )
