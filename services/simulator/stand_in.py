"""What a provider stand-in is: a ``StandIn`` subclass in a module of ``providers/``, found at start-up.

A stand-in declares its name, the routes faults may target, its outcome faults and prompt tags, and its run-time
settings; it provides the provider's HTTP routes, optionally control routes under ``/_sim/<name>/`` and extra
entries for ``GET /_sim/stats``. Everything else (latency, request faults, counters, API keys, settings from the
environment, the ``/_sim`` API) is shared and needs no change for a new stand-in.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, ClassVar

import msgspec
from litestar import Response
from litestar.handlers import HTTPRouteHandler

from .errors import ErrorShapes, ProviderError
from .faults import Fault
from .state import Incoming, Shared, request_fault_response

NonNegative = Annotated[float, msgspec.Meta(ge=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]


class NoKnobs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """For a stand-in without run-time settings of its own."""


class StandIn(ABC):
    # Names its faults ("provider"), its counters, its control routes (/_sim/<name>/...) and its settings:
    # SIMULATOR_<NAME>_API_KEY (accepted keys, default sim-<name>-key) and <name>_latency_ms.
    name: ClassVar[str]
    # Every route a queued fault may name, and those whose requests carry a prompt: there attempts are counted
    # and prompt tags and outcome faults apply.
    routes: ClassVar[frozenset[str]]
    prompt_routes: ClassVar[frozenset[str]]
    # Prompt tag -> outcome fault, e.g. {"fail": "task_failed"}: the outcome faults this stand-in knows.
    outcome_tags: ClassVar[Mapping[str, str]] = {}
    # Its run-time settings, a Struct whose fields all have defaults. The field names are global (shared with
    # the other stand-ins in POST /_sim/config); each is also read from SIMULATOR_<FIELD> at start-up.
    knobs: ClassVar[type[msgspec.Struct]] = NoKnobs
    # How the provider words the errors of request faults (429, 500, 503, hang, malformed JSON).
    errors: ErrorShapes

    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    @abstractmethod
    def http_routes(self) -> list[HTTPRouteHandler]:
        """The provider's HTTP contract, mounted at the root."""

    def control_routes(self) -> list[HTTPRouteHandler]:
        """Routes of the control API, mounted under ``/_sim/<name>``."""
        return []

    def stats(self) -> dict[str, Any]:
        """Entries added to ``GET /_sim/stats``."""
        return {}

    async def reset(self) -> None:  # noqa: B027 - optional, like the other hooks
        """Back to the state at start-up (``POST /_sim/reset``)."""

    async def close(self) -> None:  # noqa: B027 - optional, like the other hooks
        """The simulator stops."""

    @property
    def api_keys(self) -> tuple[str, ...]:
        return self.shared.settings.api_keys[self.name]

    async def serve(
        self,
        route: str,
        incoming: Incoming,
        authenticate: Callable[[Incoming], None],
        handle: Callable[[Incoming], Awaitable[Response[bytes]]],
    ) -> Response[bytes]:
        """One provider request: counted, authenticated, held to the quota (a 429 in the provider's words, with
        ``Retry-After``), delayed by the configured latency, handled; a ProviderError raised on the way becomes the
        provider's error answer."""
        stats = self.shared.stats
        stats.request(self.name, route, self.shared.clock())
        try:
            authenticate(incoming)
            wait = self.shared.over_quota(self.name)
            await self.shared.latency(self.name)
            if wait is None:
                response = await handle(incoming)
            else:
                response = self.errors.rate_limited(None).response()
                response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        except ProviderError as error:
            response = error.response()
        stats.response(self.name, route, response.status_code or 200)
        return response

    async def fault_response(self, fault: Fault, incoming: Incoming) -> Response[bytes]:
        """The answer to a request fault, in the provider's words."""
        return await request_fault_response(self.shared, fault, incoming, self.errors)
