"""Simulator settings: read from the environment once at start-up; the behaviour part can change at run time."""

from __future__ import annotations

import functools
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from services.shared.settings import Env, SettingsError, simulator_api_key

from .faults import FaultRules, FaultSpec
from .providers import stand_ins
from .stand_in import NonNegative, NonNegativeInt, Positive, PositiveInt

K = TypeVar("K", bound=msgspec.Struct)


class CommonKnobs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Run-time settings of every stand-in; each stand-in adds its own (``StandIn.knobs``), a ``<name>_latency_ms``
    that wins over ``latency_ms`` for it, and its quota: ``<name>_requests_per_second`` (unset: none) with
    ``<name>_burst`` (unset: one second's worth)."""

    # Added to every provider request before it is handled.
    latency_ms: NonNegativeInt = 0
    # A "hang" fault holds the request this long (or until the client goes away), then answers 504.
    hang_seconds: NonNegative = 600.0


@functools.cache
def _knob_types() -> tuple[type[msgspec.Struct], ...]:
    each = [
        field
        for s in stand_ins()
        for field in (
            (f"{s.name}_latency_ms", NonNegativeInt | None, None),
            (f"{s.name}_requests_per_second", Positive | None, None),
            (f"{s.name}_burst", PositiveInt | None, None),
        )
    ]
    per_stand_in = msgspec.defstruct("PerStandIn", each, frozen=True, forbid_unknown_fields=True)
    types: tuple[type[msgspec.Struct], ...] = (CommonKnobs, per_stand_in, *(s.knobs for s in stand_ins()))
    owners: dict[str, str] = {}
    for kind in types:
        for name in kind.__struct_fields__:
            if name in owners:
                raise TypeError(f"simulator setting {name} is declared by both {owners[name]} and {kind.__name__}")
            owners[name] = kind.__name__
    return types


@functools.cache
def _flat_type() -> type[msgspec.Struct]:
    """Every run-time setting as one Struct: validates names, types and limits of a whole config at once."""
    fields = []
    for kind in _knob_types():
        hints, defaults = typing.get_type_hints(kind, include_extras=True), kind()
        fields += [(name, hints[name], getattr(defaults, name)) for name in kind.__struct_fields__]
    return msgspec.defstruct("RuntimeConfig", fields, frozen=True, forbid_unknown_fields=True)


class RuntimeConfig:
    """Behaviour that tests may change while the simulator runs (``POST /_sim/config``): the common settings and
    every stand-in's, under one flat set of names. Built from keywords (``RuntimeConfig(ark_run_seconds=2)``);
    an unknown name or a value out of range raises msgspec.ValidationError naming it."""

    def __init__(self, **values: Any) -> None:
        self._values: dict[str, Any] = msgspec.to_builtins(msgspec.convert(values, _flat_type()))
        self._parts: dict[type[Any], Any] = {}

    def of(self, kind: type[K]) -> K:
        """One stand-in's settings (its ``knobs`` Struct)."""
        part = self._parts.get(kind)
        if part is None:
            part = self._parts[kind] = msgspec.convert(
                {name: self._values[name] for name in kind.__struct_fields__}, kind
            )
        result: K = part
        return result

    @property
    def hang_seconds(self) -> float:
        return float(self._values["hang_seconds"])

    def latency_for(self, provider: str) -> float:
        specific = self._values[f"{provider}_latency_ms"]
        return float(self._values["latency_ms"] if specific is None else specific) / 1000

    def quota_for(self, provider: str) -> tuple[float, int] | None:
        """A stand-in's quota as (requests per second, burst), or None when it has none."""
        rate = self._values[f"{provider}_requests_per_second"]
        if rate is None:
            return None
        burst = self._values[f"{provider}_burst"]
        return float(rate), int(burst if burst is not None else max(1, round(rate)))

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def patched(self, patch: Mapping[str, Any]) -> RuntimeConfig:
        """A copy with ``patch`` applied."""
        return RuntimeConfig(**{**self._values, **patch})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RuntimeConfig) and other._values == self._values

    def __hash__(self) -> int:
        return hash(tuple(self._values.items()))

    def __repr__(self) -> str:
        return f"RuntimeConfig({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"


def _default_api_keys() -> dict[str, tuple[str, ...]]:
    return {s.name: (simulator_api_key(s.name),) for s in stand_ins()}


class SimulatorSettings(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8002
    # Base URL written into the media URLs stand-ins hand out. Empty: the base URL the client used.
    public_url: str = ""
    # Accepted API keys per stand-in (SIMULATOR_<NAME>_API_KEY, comma-separated; default sim-<name>-key).
    api_keys: dict[str, tuple[str, ...]] = msgspec.field(default_factory=_default_api_keys)
    log_level: str = "info"
    runtime: RuntimeConfig = msgspec.field(default_factory=RuntimeConfig)
    # Faults queued at start-up, as if posted to /_sim/faults.
    faults: tuple[FaultSpec, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SimulatorSettings:
        env = Env(environ)
        values: dict[str, Any] = {}
        for name in _flat_type().__struct_fields__:
            raw = env.optional(f"SIMULATOR_{name.upper()}")
            if raw is not None:
                try:
                    values[name] = msgspec.json.decode(raw)
                except msgspec.DecodeError:
                    values[name] = raw  # not a number: the check below names the setting
        try:
            runtime = RuntimeConfig(**values)
        except msgspec.ValidationError as exc:
            raise SettingsError(f"simulator settings (SIMULATOR_*): {exc}") from exc
        raw_faults = env.optional("SIMULATOR_FAULTS")
        try:
            faults = msgspec.json.decode(raw_faults, type=tuple[FaultSpec, ...]) if raw_faults else ()
        except msgspec.DecodeError as exc:
            raise SettingsError(f"SIMULATOR_FAULTS must be a JSON list of faults: {exc}") from exc
        rules = FaultRules.of_stand_ins()
        for spec in faults:
            problem = spec.problem(rules)
            if problem is not None:
                raise SettingsError(f"SIMULATOR_FAULTS: {problem}")
        return cls(
            host=env.get("SIMULATOR_HOST", "127.0.0.1"),
            port=env.get_int("SIMULATOR_PORT", 8002),
            public_url=(env.optional("SIMULATOR_PUBLIC_URL") or "").rstrip("/"),
            api_keys={
                s.name: _keys(env, f"SIMULATOR_{s.name.upper()}_API_KEY", simulator_api_key(s.name))
                for s in stand_ins()
            },
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
