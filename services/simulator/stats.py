"""Request and response counters, per provider and route, for ``GET /_sim/stats``; requests also per second."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Stats:
    _requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    _responses: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    # Requests by the second (Unix time) they arrived in.
    _seconds: Counter[tuple[str, str, int]] = field(default_factory=Counter)

    def request(self, provider: str, route: str, at: float) -> None:
        self._requests[(provider, route)] += 1
        self._seconds[(provider, route, int(at))] += 1

    def response(self, provider: str, route: str, outcome: int | str) -> None:
        """``outcome`` is the HTTP status, or a word such as ``"disconnected"`` when nothing was sent."""
        self._responses[(provider, route, str(outcome))] += 1

    def reset(self) -> None:
        self._requests.clear()
        self._responses.clear()
        self._seconds.clear()

    def requests(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (provider, route), count in sorted(self._requests.items()):
            out.setdefault(provider, {})[route] = count
        return out

    def per_second(self) -> dict[str, dict[str, dict[str, int]]]:
        out: dict[str, dict[str, dict[str, int]]] = {}
        for (provider, route, second), count in sorted(self._seconds.items()):
            out.setdefault(provider, {}).setdefault(route, {})[str(second)] = count
        return out

    def responses(self) -> dict[str, dict[str, dict[str, int]]]:
        out: dict[str, dict[str, dict[str, int]]] = {}
        for (provider, route, outcome), count in sorted(self._responses.items()):
            out.setdefault(provider, {}).setdefault(route, {})[outcome] = count
        return out
