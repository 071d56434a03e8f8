"""The simulator as one object: both provider stand-ins plus the operations of the ``/_sim`` control API."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec

from .ark import ArkService, ControlError, Media, TaskPatch
from .config import RuntimeConfig, SimulatorSettings
from .faults import FaultSpec
from .gemini import GeminiService
from .state import Shared


class Simulator:
    def __init__(self, settings: SimulatorSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.shared = Shared(settings=settings, config=settings.runtime, clock=clock)
        self.gemini = GeminiService(self.shared)
        self.ark = ArkService(self.shared)
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
            problem = spec.problem()
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
        return {
            "requests": self.shared.stats.requests(),
            "responses": self.shared.stats.responses(),
            "ark_tasks": self.ark.snapshot(),
            "prompt_attempts": self.shared.faults.attempts(),
            "pending_faults": self.shared.faults.pending(),
        }

    def ark_task(self, task_id: str) -> dict[str, Any]:
        return self.ark.inspect(task_id)

    def patch_ark_task(self, task_id: str, body: bytes) -> dict[str, Any]:
        try:
            patch = msgspec.json.decode(body, type=TaskPatch)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ControlError(400, f"invalid task change: {exc}") from exc
        return self.ark.patch(task_id, patch)

    async def media(self, name: str) -> Media:
        stats = self.shared.stats
        stats.request("ark", "media")
        try:
            media = await self.ark.media(name)
        except ControlError as error:
            stats.response("ark", "media", error.status)
            raise
        stats.response("ark", "media", 200)
        return media

    # --- lifecycle -------------------------------------------------------------------------------------------

    async def reset(self) -> None:
        """Back to the state at start-up: no tasks, counters, attempts or faults; config from the environment."""
        await self.ark.reset()
        self.shared.faults.reset()
        self.shared.stats.reset()
        self.shared.config = self.settings.runtime
        self._queue_startup_faults()

    async def close(self) -> None:
        self.shared.stopping.set()
        await self.ark.close()
