"""Settings shared by every service, read from the environment once at start-up (never at import time).

Style of every settings class: a frozen dataclass whose field defaults are the only place a default is written;
``from_env`` reads each variable with ``cls.<field>`` as its default. Secrets are fields with ``repr=False``, read
with :meth:`Env.secret`.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .manifest import ProviderDeclaration

# Values that shipped as defaults or appear in documentation and tests: a secret with one of them is public.
DEVELOPMENT_SECRETS = frozenset(
    {"dev-internal-token", "dev-realtime-secret", "dev-api-key", "minioadmin", "sim-gemini-key", "sim-ark-key"}
)
MIN_SECRET_BYTES = 32
# Set only by the tests and the local stack: development and short secrets are then accepted.
DEVELOPMENT_MODE = "DEVELOPMENT_MODE"
# Set only by the local stack, the tests and the development override: a provider worker without its key talks to
# the provider simulator at this URL instead of refusing to start.
PROVIDER_SIMULATOR_URL = "PROVIDER_SIMULATOR_URL"


class SettingsError(Exception):
    pass


class Env:
    """Typed access to an environment mapping, with errors that name the variable."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if environ is None else environ
        self.development = self.get_bool(DEVELOPMENT_MODE, False)

    def get(self, name: str, default: str | None = None) -> str:
        value = self._env.get(name)
        if value is None or value == "":
            if default is None:
                raise SettingsError(f"environment variable {name} is required")
            return default
        return value

    def optional(self, name: str) -> str | None:
        return self._env.get(name) or None

    def raw(self, name: str) -> str | None:
        """The value as set, where an empty string means something other than unset."""
        return self._env.get(name)

    def get_int(self, name: str, default: int, minimum: int | None = None) -> int:
        raw = self._env.get(name)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError as exc:
            raise SettingsError(f"environment variable {name} must be an integer, got {raw!r}") from exc
        if minimum is not None and value < minimum:
            raise SettingsError(f"environment variable {name} must be at least {minimum}, got {value}")
        return value

    def get_float(self, name: str, default: float) -> float:
        raw = self._env.get(name)
        if not raw:
            return default
        try:
            return float(raw)
        except ValueError as exc:
            raise SettingsError(f"environment variable {name} must be a number, got {raw!r}") from exc

    def get_http_url(self, name: str, default: str) -> str:
        """An ``http(s)://host[:port][/path]`` base URL, without a trailing slash."""
        value = self.get(name, default).rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"environment variable {name} must be an http(s)://host[:port] URL, got {value!r}")
        return value

    def get_bool(self, name: str, default: bool) -> bool:
        raw = self._env.get(name)
        if not raw:
            return default
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"environment variable {name} must be true or false, got {raw!r}")

    # --- secrets ---------------------------------------------------------------------------------------------

    def from_file(self, name: str) -> str | None:
        """``NAME``, or the contents of the file ``NAME_FILE`` names (the way official images take secrets). A file
        that does not exist counts as unset, so a deployment can name a file it fills only when it rotates."""
        value = self.optional(name)
        path = self.optional(f"{name}_FILE")
        if value is not None and path is not None:
            raise SettingsError(f"set {name} or {name}_FILE, not both")
        if path is None:
            return value
        try:
            return Path(path).read_text().strip() or None
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SettingsError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from exc

    def optional_secret(self, name: str) -> str | None:
        """A secret from :meth:`from_file`, checked by :meth:`check_secret` when it is set."""
        value = self.from_file(name)
        if value is not None:
            self.check_secret(name, value)
        return value

    def required(self, name: str) -> str:
        """A value that may come from a file (see :meth:`from_file`) and must be set."""
        value = self.from_file(name)
        if value is None:
            raise _missing(name)
        return value

    def secret(self, name: str, default: str | None = None) -> str:
        """A required secret (see :meth:`from_file`); outside development mode it must not be a known development
        value nor shorter than MIN_SECRET_BYTES."""
        value = self.from_file(name) or default
        if value is None:
            raise _missing(name)
        self.check_secret(name, value)
        return value

    def check_secret(self, name: str, value: str, what: str = "") -> None:
        """Raises SettingsError naming ``name`` (and ``what`` inside it), never the value."""
        if self.development:
            return
        subject = f"{name}{f' ({what})' if what else ''}"
        hint = f"generate one with `openssl rand -base64 32`, or set {DEVELOPMENT_MODE}=true on a development machine"
        if value in DEVELOPMENT_SECRETS:
            raise SettingsError(f"{subject} is a published development value; {hint}")
        if len(value.encode()) < MIN_SECRET_BYTES:
            raise SettingsError(f"{subject} is shorter than {MIN_SECRET_BYTES} bytes; {hint}")

    def token_pair(self, name: str) -> TokenPair:
        """``NAME`` (current) and ``NAME_PREVIOUS``: a receiver accepts both while senders move to the new value."""
        return TokenPair(self.secret(name), self.optional_secret(f"{name}_PREVIOUS"))


def _missing(name: str) -> SettingsError:
    return SettingsError(f"environment variable {name} (or {name}_FILE) is required")


@dataclass(frozen=True)
class TokenPair:
    """The credential of one trust edge as its receiver holds it: the current value and, while it is rotated, the
    previous one."""

    current: str = field(repr=False)
    previous: str | None = field(default=None, repr=False)

    def accepts(self, token: str) -> bool:
        # Bytes, not str: compare_digest refuses str with non-ASCII characters, which a header may carry. Both
        # values are always compared, so the answer takes as long whichever one matches.
        given = token.encode()
        current = hmac.compare_digest(given, self.current.encode())
        previous = self.previous is not None and hmac.compare_digest(given, self.previous.encode())
        return current or previous


@dataclass(frozen=True)
class TemporalSettings:
    """Where Temporal is and how to reach it: the dev server by default; any cluster or Temporal Cloud with TLS (the
    CA that signed the server's certificate, a client certificate for mutual TLS) or an API key. Applied in one
    place, ``services/shared/temporal.py: connect``."""

    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    ui_url: str = "http://localhost:8233"
    # On by itself when a CA, a client certificate or an API key is given; TEMPORAL_TLS=true alone trusts the
    # system's CAs.
    tls: bool = False
    # PEM, from the variable or the file its _FILE variant names. No CA: the system's roots.
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = field(default=None, repr=False)
    # The name the server's certificate must carry, when it is not the host of the address.
    tls_server_name: str | None = None
    # Sent as `Authorization: Bearer` with every call (Temporal Cloud's API keys).
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Env) -> TemporalSettings:
        ca, cert, key = (env.from_file(f"TEMPORAL_TLS_{part}") for part in ("CA", "CERT", "KEY"))
        api_key = env.optional_secret("TEMPORAL_API_KEY")
        server_name = env.optional("TEMPORAL_TLS_SERVER_NAME")
        implied = any(value is not None for value in (ca, cert, api_key, server_name))
        settings = cls(
            address=env.get("TEMPORAL_ADDRESS", cls.address),
            namespace=env.get("TEMPORAL_NAMESPACE", cls.namespace),
            ui_url=env.get("TEMPORAL_UI_URL", cls.ui_url),
            tls=env.get_bool("TEMPORAL_TLS", cls.tls or implied),
            tls_ca=ca,
            tls_cert=cert,
            tls_key=key,
            tls_server_name=server_name,
            api_key=api_key,
        )
        if not settings.tls and implied:
            raise SettingsError(
                "TEMPORAL_TLS=false, but TEMPORAL_TLS_CA, TEMPORAL_TLS_CERT, TEMPORAL_TLS_SERVER_NAME or "
                "TEMPORAL_API_KEY is set: they need TLS"
            )
        if (cert is None) != (key is None):
            raise SettingsError(
                "TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together (the client certificate and its key)"
            )
        for name, pem in (("TEMPORAL_TLS_CA", ca), ("TEMPORAL_TLS_CERT", cert), ("TEMPORAL_TLS_KEY", key)):
            if pem is not None and "-----BEGIN " not in pem:
                raise SettingsError(f"{name} must be PEM (-----BEGIN ...), or {name}_FILE a PEM file")
        return settings


@dataclass(frozen=True)
class StorageSettings:
    access_key: str
    secret_key: str = field(repr=False)
    endpoint: str = "127.0.0.1:9000"
    bucket: str = "task-results"
    secure: bool = False
    region: str = "us-east-1"
    # Host:port that clients use to download; presigned URLs are signed for this host. Empty: the endpoint.
    public_endpoint: str = ""
    url_expiry_seconds: int = 3600

    @classmethod
    def from_env(cls, env: Env) -> StorageSettings:
        # S3's access key names an account: any length will do, a published default will not.
        access_key = env.required("S3_ACCESS_KEY")
        if access_key in DEVELOPMENT_SECRETS and not env.development:
            raise SettingsError(
                f"S3_ACCESS_KEY is a published development value; set {DEVELOPMENT_MODE}=true to allow it"
            )
        endpoint = env.get("S3_ENDPOINT", cls.endpoint)
        return cls(
            access_key=access_key,
            secret_key=env.secret("S3_SECRET_KEY"),
            endpoint=endpoint,
            bucket=env.get("S3_BUCKET", cls.bucket),
            secure=env.get_bool("S3_SECURE", cls.secure),
            region=env.get("S3_REGION", cls.region),
            public_endpoint=env.get("S3_PUBLIC_ENDPOINT", endpoint),
            url_expiry_seconds=env.get_int("S3_URL_EXPIRY_SECONDS", cls.url_expiry_seconds),
        )


@dataclass(frozen=True)
class PlatformSettings:
    """The middleware every task service uses: Temporal and object storage (main and the workers)."""

    temporal: TemporalSettings
    storage: StorageSettings

    @classmethod
    def from_env(cls, env: Env) -> PlatformSettings:
        return cls(temporal=TemporalSettings.from_env(env), storage=StorageSettings.from_env(env))


@dataclass(frozen=True)
class ServerLimits:
    """Limits against slow clients, for the HTTP servers of main and communication (``<PREFIX>_...``)."""

    # From the connection's first byte (or the request's, on a kept-alive connection) to the end of its headers.
    header_timeout_seconds: float = 10.0
    # From the end of the headers to the end of the body.
    body_timeout_seconds: float = 30.0

    @classmethod
    def from_env(cls, env: Env, prefix: str) -> ServerLimits:
        limits = cls(
            header_timeout_seconds=env.get_float(f"{prefix}_HEADER_TIMEOUT_SECONDS", cls.header_timeout_seconds),
            body_timeout_seconds=env.get_float(f"{prefix}_BODY_TIMEOUT_SECONDS", cls.body_timeout_seconds),
        )
        if limits.header_timeout_seconds <= 0 or limits.body_timeout_seconds <= 0:
            raise SettingsError(f"{prefix}_HEADER_TIMEOUT_SECONDS and {prefix}_BODY_TIMEOUT_SECONDS must be positive")
        return limits


@dataclass(frozen=True)
class EventStreamSettings:
    """The JetStream stream that carries task events from main to communication (``services/shared/event_stream.py``).

    Each service connects as its own NATS user (``user``: ``main`` may publish events and manage the stream,
    ``communication`` may only read them) with its password ``NATS_<USER>_PASSWORD``."""

    user: str
    password: str = field(repr=False)
    nats_url: str = "nats://127.0.0.1:4222"
    stream: str = "TASK_EVENTS"
    # Each user's events go to ``<prefix>.<user as a subject token>``.
    subject_prefix: str = "tasks.events"
    # Retention: older events, or the oldest beyond the size, are dropped; a client resuming from before them is
    # told to re-read from main.
    max_age_seconds: float = 86_400.0
    max_bytes: int = 1024 * 1024 * 1024
    # JetStream drops a second publish of an event id within this window (the relay's retries after a crash).
    duplicate_window_seconds: float = 120.0

    @classmethod
    def from_env(cls, env: Env, user: str) -> EventStreamSettings:
        settings = cls(
            user=user,
            password=env.secret(password_variable(user)),
            nats_url=env.get("NATS_URL", cls.nats_url),
            stream=env.get("EVENTS_STREAM", cls.stream),
            subject_prefix=env.get("EVENTS_SUBJECT_PREFIX", cls.subject_prefix),
            max_age_seconds=env.get_float("EVENTS_MAX_AGE_SECONDS", cls.max_age_seconds),
            max_bytes=env.get_int("EVENTS_MAX_BYTES", cls.max_bytes),
            duplicate_window_seconds=env.get_float("EVENTS_DUPLICATE_WINDOW_SECONDS", cls.duplicate_window_seconds),
        )
        url = urlsplit(settings.nats_url)
        if url.scheme not in ("nats", "tls") or not url.hostname:
            raise SettingsError("environment variable NATS_URL must be a nats:// or tls:// URL")
        if url.username or url.password:
            raise SettingsError(f"NATS_URL must not carry credentials: the password is {password_variable(user)}")
        if settings.max_age_seconds <= 0 or settings.max_bytes <= 0 or settings.duplicate_window_seconds <= 0:
            raise SettingsError(
                "EVENTS_MAX_AGE_SECONDS, EVENTS_MAX_BYTES and EVENTS_DUPLICATE_WINDOW_SECONDS must be positive"
            )
        if settings.duplicate_window_seconds > settings.max_age_seconds:
            raise SettingsError("EVENTS_DUPLICATE_WINDOW_SECONDS must not exceed EVENTS_MAX_AGE_SECONDS")
        return settings


def password_variable(nats_user: str) -> str:
    """The secret a service connecting to NATS as ``nats_user`` reads its password from."""
    return f"NATS_{nats_user.upper()}_PASSWORD"


def simulator_api_key(stand_in: str) -> str:
    """The key the provider simulator accepts for a stand-in unless told otherwise (``SIMULATOR_<NAME>_API_KEY``);
    published, so accepted only in development mode."""
    return f"sim-{stand_in}-key"


@dataclass(frozen=True)
class ProviderEndpoint:
    """Where a worker reaches its integration's provider, and with which key: read from the variables the
    integration's manifest declares (``provider``)."""

    base_url: str
    api_key: str = field(repr=False)
    # The provider simulator stands in for the provider (PROVIDER_SIMULATOR_URL, no key given).
    simulated: bool = False

    @classmethod
    def from_env(cls, env: Env, provider: ProviderDeclaration) -> ProviderEndpoint:
        """The key (``api_key_env``, or its ``_FILE``) and the base URL (``base_url_env``, else the manifest's).
        Without a key the worker does not start: no base URL, not even one that is not the provider's, makes a
        keyless worker talk to a stand-in. Only PROVIDER_SIMULATOR_URL, set explicitly, does."""
        key_name, url_name = provider.api_key_env, provider.base_url_env
        api_key = env.from_file(key_name)
        if api_key is not None:
            if api_key in DEVELOPMENT_SECRETS and not env.development:
                raise SettingsError(f"{key_name} is a published development value (the simulator's key)")
            # A manifest without the provider's own URL (a scaffolded integration): the variable is required.
            default = provider.base_url if provider.base_url is not None else env.get(url_name)
            return cls(env.get_http_url(url_name, default), api_key)
        simulator = env.optional(PROVIDER_SIMULATOR_URL)
        if simulator is None:
            raise SettingsError(
                f"environment variable {key_name} (or {key_name}_FILE) is required: the worker calls the provider "
                f"with it; to run against the provider simulator instead, set {PROVIDER_SIMULATOR_URL}"
            )
        if provider.simulator is None:
            raise SettingsError(
                f"environment variable {key_name} (or {key_name}_FILE) is required: no simulator stand-in serves this "
                f"provider, so {PROVIDER_SIMULATOR_URL} cannot replace it"
            )
        return cls(
            env.get_http_url(PROVIDER_SIMULATOR_URL, simulator), simulator_api_key(provider.simulator), simulated=True
        )
