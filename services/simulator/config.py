"""Simulator settings: read from the environment once at start-up; the behaviour part can change at run time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from services.shared.settings import Env, SettingsError

from .faults import FaultSpec

NonNegative = Annotated[float, msgspec.Meta(ge=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]


class RuntimeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Behaviour that tests may change while the simulator runs (``POST /_sim/config``)."""

    # Added to every provider request before it is handled; the per-provider values win when set.
    latency_ms: NonNegativeInt = 0
    gemini_latency_ms: NonNegativeInt | None = None
    ark_latency_ms: NonNegativeInt | None = None
    # Default phase lengths of a new Ark task.
    ark_queue_seconds: NonNegative = 1.0
    ark_run_seconds: NonNegative = 3.0
    # How long Ark's video_url / last_frame_url stay valid after the task succeeded.
    media_ttl_seconds: NonNegative = 24 * 3600.0
    # A "hang" fault holds the request this long (or until the client goes away), then answers 504.
    hang_seconds: NonNegative = 600.0
    # retryDelay that Gemini 429 answers advertise (google.rpc.RetryInfo).
    gemini_retry_delay_seconds: NonNegative = 1.0
    # Callback delivery: total attempts per status change, and the first pause between them (doubling).
    callback_attempts: Annotated[int, msgspec.Meta(ge=1)] = 3
    callback_retry_seconds: NonNegative = 0.5

    def latency_for(self, provider: str) -> float:
        specific = self.gemini_latency_ms if provider == "gemini" else self.ark_latency_ms
        return (self.latency_ms if specific is None else specific) / 1000

    def patched(self, patch: Mapping[str, Any]) -> RuntimeConfig:
        """A copy with ``patch`` applied; raises msgspec.ValidationError naming a bad field."""
        merged = msgspec.to_builtins(self)
        merged.update(patch)
        return msgspec.convert(merged, RuntimeConfig)


class SimulatorSettings(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8002
    # Base URL written into Ark media URLs. Empty: the base URL the client used to reach the simulator.
    public_url: str = ""
    gemini_api_keys: tuple[str, ...] = ("sim-gemini-key",)
    ark_api_keys: tuple[str, ...] = ("sim-ark-key",)
    log_level: str = "info"
    runtime: RuntimeConfig = RuntimeConfig()
    # Faults queued at start-up, as if posted to /_sim/faults.
    faults: tuple[FaultSpec, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SimulatorSettings:
        env = Env(environ)
        defaults = RuntimeConfig()
        gemini_latency = env.optional("SIMULATOR_GEMINI_LATENCY_MS")
        ark_latency = env.optional("SIMULATOR_ARK_LATENCY_MS")
        try:
            runtime = RuntimeConfig(
                latency_ms=env.get_int("SIMULATOR_LATENCY_MS", defaults.latency_ms),
                gemini_latency_ms=None if gemini_latency is None else env.get_int("SIMULATOR_GEMINI_LATENCY_MS", 0),
                ark_latency_ms=None if ark_latency is None else env.get_int("SIMULATOR_ARK_LATENCY_MS", 0),
                ark_queue_seconds=env.get_float("SIMULATOR_ARK_QUEUE_SECONDS", defaults.ark_queue_seconds),
                ark_run_seconds=env.get_float("SIMULATOR_ARK_RUN_SECONDS", defaults.ark_run_seconds),
                media_ttl_seconds=env.get_float("SIMULATOR_MEDIA_TTL_SECONDS", defaults.media_ttl_seconds),
                hang_seconds=env.get_float("SIMULATOR_HANG_SECONDS", defaults.hang_seconds),
                gemini_retry_delay_seconds=env.get_float(
                    "SIMULATOR_GEMINI_RETRY_DELAY_SECONDS", defaults.gemini_retry_delay_seconds
                ),
                callback_attempts=env.get_int("SIMULATOR_CALLBACK_ATTEMPTS", defaults.callback_attempts),
                callback_retry_seconds=env.get_float(
                    "SIMULATOR_CALLBACK_RETRY_SECONDS", defaults.callback_retry_seconds
                ),
            )
            # The constructor does not check Meta constraints; a round trip through convert does.
            runtime = msgspec.convert(msgspec.to_builtins(runtime), RuntimeConfig)
        except msgspec.ValidationError as exc:
            raise SettingsError(f"simulator settings: {exc}") from exc
        raw_faults = env.optional("SIMULATOR_FAULTS")
        try:
            faults = msgspec.json.decode(raw_faults, type=tuple[FaultSpec, ...]) if raw_faults else ()
        except msgspec.DecodeError as exc:
            raise SettingsError(f"SIMULATOR_FAULTS must be a JSON list of faults: {exc}") from exc
        return cls(
            host=env.get("SIMULATOR_HOST", "127.0.0.1"),
            port=env.get_int("SIMULATOR_PORT", 8002),
            public_url=(env.optional("SIMULATOR_PUBLIC_URL") or "").rstrip("/"),
            gemini_api_keys=_keys(env, "SIMULATOR_GEMINI_API_KEY", "sim-gemini-key"),
            ark_api_keys=_keys(env, "SIMULATOR_ARK_API_KEY", "sim-ark-key"),
            log_level=env.get("SIMULATOR_LOG_LEVEL", "info"),
            runtime=runtime,
            faults=faults,
        )

    def __repr__(self) -> str:
        # Keep the accepted keys out of logs.
        return f"SimulatorSettings(host={self.host!r}, port={self.port}, public_url={self.public_url!r})"


def _keys(env: Env, name: str, default: str) -> tuple[str, ...]:
    """A comma-separated list of accepted API keys; the default ones only in development mode."""
    keys = tuple(k.strip() for k in (env.from_file(name) or default).split(",") if k.strip())
    if not keys:
        raise SettingsError(f"{name}: an API key list must not be empty")
    for key in keys:
        env.check_secret(name, key)
    return keys
