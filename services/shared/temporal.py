"""The one way every service, worker and probe connects to Temporal: always with the msgspec data converter, and
every connection setting taken from ``TemporalSettings``, so a new one (TLS, API key) is applied here only."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.service import TLSConfig

from .converter import data_converter
from .settings import TemporalSettings


async def connect(settings: TemporalSettings, *, lazy: bool = False) -> Client:
    """A client for ``settings``. ``lazy`` returns at once and dials on the first call, for a service that must
    start (and serve what it can) while Temporal is still coming up; otherwise an unreachable server raises here."""
    return await Client.connect(
        settings.address,
        namespace=settings.namespace,
        data_converter=data_converter,
        lazy=lazy,
        tls=tls_config(settings),
        api_key=settings.api_key,
    )


def tls_config(settings: TemporalSettings) -> TLSConfig | bool:
    """False: plain gRPC (the dev server). True: TLS trusting the system's CAs. A TLSConfig: a CA of its own, a client
    certificate, or another name to check the server's certificate against."""
    if not settings.tls:
        return False
    if settings.tls_ca is None and settings.tls_cert is None and settings.tls_server_name is None:
        return True
    return TLSConfig(
        server_root_ca_cert=settings.tls_ca.encode() if settings.tls_ca is not None else None,
        client_cert=settings.tls_cert.encode() if settings.tls_cert is not None else None,
        client_private_key=settings.tls_key.encode() if settings.tls_key is not None else None,
        domain=settings.tls_server_name,
    )
