"""Settings shared by every service, read from the environment once at start-up (never at import time)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import msgspec


class SettingsError(Exception):
    pass


class Env:
    """Typed access to an environment mapping, with errors that name the variable."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if environ is None else environ

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

    def get_int(self, name: str, default: int) -> int:
        raw = self._env.get(name)
        if not raw:
            return default
        try:
            return int(raw)
        except ValueError as exc:
            raise SettingsError(f"environment variable {name} must be an integer, got {raw!r}") from exc

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


class TemporalSettings(msgspec.Struct, frozen=True):
    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    ui_url: str = "http://localhost:8233"

    @classmethod
    def from_env(cls, env: Env) -> TemporalSettings:
        return cls(
            address=env.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
            namespace=env.get("TEMPORAL_NAMESPACE", "default"),
            ui_url=env.get("TEMPORAL_UI_URL", "http://localhost:8233"),
        )


class StorageSettings(msgspec.Struct, frozen=True):
    endpoint: str = "127.0.0.1:9000"
    access_key: str = "minioadmin"
    secret_key: str = "minioadmin"  # noqa: S105 - MinIO's documented development default
    bucket: str = "task-results"
    secure: bool = False
    region: str = "us-east-1"
    # Host:port that clients use to download; presigned URLs are signed for this host.
    public_endpoint: str = ""
    url_expiry_seconds: int = 3600

    @classmethod
    def from_env(cls, env: Env) -> StorageSettings:
        endpoint = env.get("S3_ENDPOINT", "127.0.0.1:9000")
        return cls(
            endpoint=endpoint,
            access_key=env.get("S3_ACCESS_KEY", "minioadmin"),
            secret_key=env.get("S3_SECRET_KEY", "minioadmin"),
            bucket=env.get("S3_BUCKET", "task-results"),
            secure=env.get_bool("S3_SECURE", False),
            region=env.get("S3_REGION", "us-east-1"),
            public_endpoint=env.get("S3_PUBLIC_ENDPOINT", endpoint),
            url_expiry_seconds=env.get_int("S3_URL_EXPIRY_SECONDS", 3600),
        )

    def __repr__(self) -> str:
        # Keep the secret key out of logs and tracebacks.
        return f"StorageSettings(endpoint={self.endpoint!r}, bucket={self.bucket!r}, secure={self.secure})"


@dataclass(frozen=True)
class EventStreamSettings:
    """The JetStream stream that carries task events from main to communication (``services/shared/events.py``)."""

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
    def from_env(cls, env: Env) -> EventStreamSettings:
        settings = cls(
            nats_url=env.get("NATS_URL", cls.nats_url),
            stream=env.get("EVENTS_STREAM", cls.stream),
            subject_prefix=env.get("EVENTS_SUBJECT_PREFIX", cls.subject_prefix),
            max_age_seconds=env.get_float("EVENTS_MAX_AGE_SECONDS", cls.max_age_seconds),
            max_bytes=env.get_int("EVENTS_MAX_BYTES", cls.max_bytes),
            duplicate_window_seconds=env.get_float("EVENTS_DUPLICATE_WINDOW_SECONDS", cls.duplicate_window_seconds),
        )
        if not settings.nats_url.startswith(("nats://", "tls://")):
            raise SettingsError("environment variable NATS_URL must be a nats:// or tls:// URL")
        if settings.max_age_seconds <= 0 or settings.max_bytes <= 0 or settings.duplicate_window_seconds <= 0:
            raise SettingsError(
                "EVENTS_MAX_AGE_SECONDS, EVENTS_MAX_BYTES and EVENTS_DUPLICATE_WINDOW_SECONDS must be positive"
            )
        if settings.duplicate_window_seconds > settings.max_age_seconds:
            raise SettingsError("EVENTS_DUPLICATE_WINDOW_SECONDS must not exceed EVENTS_MAX_AGE_SECONDS")
        return settings

    def __repr__(self) -> str:
        # The URL may carry credentials.
        return f"EventStreamSettings(stream={self.stream!r}, subject_prefix={self.subject_prefix!r})"


class PlatformSettings(msgspec.Struct, frozen=True):
    temporal: TemporalSettings
    storage: StorageSettings
    main_url: str
    communication_url: str
    internal_token: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PlatformSettings:
        env = Env(environ)
        return cls(
            temporal=TemporalSettings.from_env(env),
            storage=StorageSettings.from_env(env),
            main_url=env.get_http_url("MAIN_URL", "http://127.0.0.1:8000"),
            communication_url=env.get_http_url("COMMUNICATION_URL", "http://127.0.0.1:8001"),
            internal_token=env.get("INTERNAL_TOKEN"),
        )

    def __repr__(self) -> str:
        return f"PlatformSettings(temporal={self.temporal!r}, storage={self.storage!r}, main_url={self.main_url!r})"
