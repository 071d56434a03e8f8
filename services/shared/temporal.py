"""The one way every service and worker connects to Temporal: always with the msgspec data converter."""

from __future__ import annotations

from temporalio.client import Client

from .converter import data_converter
from .settings import TemporalSettings


async def connect(settings: TemporalSettings) -> Client:
    return await Client.connect(settings.address, namespace=settings.namespace, data_converter=data_converter)
