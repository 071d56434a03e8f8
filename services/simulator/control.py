"""The simulator as one object: every provider stand-in plus the operations of the ``/_sim`` control API."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec

from .config import RuntimeConfig, SimulatorSettings
from .errors import ControlError
from .faults import FaultBook, FaultRules, FaultSpec
from .providers import stand_ins
from .stand_in import StandIn
from .state import Shared


class Simulator:
    def __init__(self, settings: SimulatorSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.rules = FaultRules.of_stand_ins()
        self.shared = Shared(settings=settings, config=settings.runtime, faults=FaultBook(self.rules), clock=clock)
        self.stand_ins: list[StandIn] = [kind(self.shared) for kind in stand_ins()]
        self._queue_startup_faults()

    def _queue_startup_faults(self) -> None:
        for spec in self.settings.faults:
            self.shared.faults.add(spec)

    # --- config ----------------------------------------------------------------------------------------------

    def config(self) -> RuntimeConfig:
        return self.shared.config

    def update_config(self, body: bytes) -> RuntimeConfig:
        try:
            patch = msgspec.json.decode(body, type=dict[str, Any])
            self.shared.config = self.shared.config.patched(patch)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ControlError(400, f"invalid config: {exc}") from exc
        return self.shared.config

    # --- faults ----------------------------------------------------------------------------------------------

    def add_faults(self, body: bytes) -> list[dict[str, object]]:
        """Queue one fault or a list of them, all or none."""
        try:
            decoded = msgspec.json.decode(body, type=FaultSpec | list[FaultSpec])
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ControlError(400, f"invalid fault: {exc}") from exc
        specs = decoded if isinstance(decoded, list) else [decoded]
        for spec in specs:
            problem = spec.problem(self.rules)
            if problem is not None:
                raise ControlError(400, f"invalid fault: {problem}")
        for spec in specs:
            self.shared.faults.add(spec)
        return self.shared.faults.pending()

    def pending_faults(self) -> list[dict[str, object]]:
        return self.shared.faults.pending()

    def clear_faults(self) -> None:
        self.shared.faults.clear()

    # --- inspection ------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "requests": self.shared.stats.requests(),
            "responses": self.shared.stats.responses(),
            "requests_per_second": self.shared.stats.per_second(),
        }
        for stand_in in self.stand_ins:
            stats.update(stand_in.stats())
        stats["prompt_attempts"] = self.shared.faults.attempts()
        stats["pending_faults"] = self.shared.faults.pending()
        return stats

    # --- lifecycle -------------------------------------------------------------------------------------------

    async def reset(self) -> None:
        """Back to the state at start-up: no tasks, counters, attempts or faults; config from the environment."""
        for stand_in in self.stand_ins:
            await stand_in.reset()
        self.shared.faults.reset()
        self.shared.stats.reset()
        self.shared.quota_buckets.clear()
        self.shared.config = self.settings.runtime
        self._queue_startup_faults()

    async def close(self) -> None:
        self.shared.stopping.set()
        for stand_in in self.stand_ins:
            await stand_in.close()
