"""Injected faults: queued through the control API or written into a prompt.

Two families of faults:

- request faults (``429``, ``500``, ``503``, ``hang``, ``malformed_json``) replace the whole answer to one
  request; nothing else happens (no image is made, no Ark task is created).
- outcome faults change what a successful request produces: Gemini ``blocked`` / ``no_image`` /
  ``image_safety``, Ark ``task_failed`` / ``expired`` (the task is created and ends that way). Each stand-in
  declares its own (``StandIn.outcome_tags``); ``FaultRules`` gathers what every stand-in declares.

Prompt tags (case-insensitive) let end-to-end tests inject faults without any control call::

    [sim:429] [sim:500] [sim:503] [sim:hang] [sim:malformed]         every attempt with this prompt
    [sim:503x2]                                                         only the first 2 attempts
    [sim:429=ServerOverloaded]                                          Ark error code to use
    [sim:blocked] [sim:no_image] [sim:image_safety]                     Gemini outcome
    [sim:fail] [sim:fail=SomeCode] [sim:expired]                        Ark task outcome
    [sim:slow=2.5]                                                      Gemini: answer 2.5 s later; Ark: run 2.5 s

Attempts are counted per provider and exact prompt text, on Gemini generateContent and Ark task creation.
Counted tags of one family apply one after another: ``[sim:429x1][sim:503x2]`` fails attempt 1 with 429,
attempts 2 and 3 with 503, and lets attempt 4 through.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated

import msgspec

REQUEST_KINDS: frozenset[str] = frozenset({"429", "500", "503", "hang", "malformed_json"})
_TAG = re.compile(r"\[sim:(?P<kind>\d{3}|[a-z_]+)(?:x(?P<count>\d+))?(?:=(?P<value>[^\]]*))?\]", re.IGNORECASE)
_REQUEST_TAGS: dict[str, str] = {
    "429": "429",
    "500": "500",
    "503": "503",
    "hang": "hang",
    "malformed": "malformed_json",
    "malformed_json": "malformed_json",
}


@dataclass(frozen=True)
class FaultRules:
    """Which faults apply where, per provider: what the stand-ins declare, gathered once."""

    # Every route a queued fault may name.
    routes: Mapping[str, frozenset[str]]
    # Routes whose requests carry a prompt of their own: attempts are counted and prompt tags and outcome faults
    # apply there.
    prompt_routes: Mapping[str, frozenset[str]]
    # Prompt tag -> outcome kind, per provider.
    outcome_tags: Mapping[str, Mapping[str, str]]

    @classmethod
    def of_stand_ins(cls) -> FaultRules:
        """The rules of every stand-in in ``providers/``."""
        from .providers import stand_ins

        found = stand_ins()
        return cls(
            routes={s.name: s.routes for s in found},
            prompt_routes={s.name: s.prompt_routes for s in found},
            outcome_tags={s.name: s.outcome_tags for s in found},
        )

    def outcomes(self, provider: str) -> frozenset[str]:
        return frozenset(self.outcome_tags.get(provider, {}).values())

    def tag_kind(self, word: str) -> str | None:
        """What a ``[sim:word]`` tag means: a request fault, ``slow``, or any provider's outcome."""
        if word == "slow":
            return word
        kind = _REQUEST_TAGS.get(word)
        return kind if kind is not None else next((t[word] for t in self.outcome_tags.values() if word in t), None)


class FaultSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One queued fault, as posted to ``/_sim/faults``."""

    # A stand-in's name: gemini, ark, ...
    provider: str
    # A request fault (REQUEST_KINDS) or one of the provider's outcome faults.
    kind: str
    # How many matching requests it applies to.
    count: Annotated[int, msgspec.Meta(ge=1)] = 1
    # Only requests whose prompt contains this text (for Ark reads and deletes: the task's prompt).
    match: str | None = None
    # Only this route of the provider (e.g. gemini generate_content; ark create_task, get_task, ...).
    route: str | None = None
    # Error code for 429/500/503/task_failed instead of the default one.
    error_code: str | None = None

    def problem(self, rules: FaultRules) -> str | None:
        """Why this fault cannot apply, or None."""
        if self.provider not in rules.routes:
            return f"provider must be one of {sorted(rules.routes)}"
        routes = rules.routes[self.provider]
        if self.route is not None and self.route not in routes:
            return f"route must be one of {sorted(routes)} for {self.provider}"
        if self.kind in REQUEST_KINDS:
            return None
        if self.kind not in rules.outcomes(self.provider):
            return f"kind {self.kind} does not apply to {self.provider}"
        prompt_routes = rules.prompt_routes[self.provider]
        if self.route is not None and self.route not in prompt_routes:
            return f"kind {self.kind} applies only to {sorted(prompt_routes)}"
        return None


@dataclass(frozen=True)
class Fault:
    kind: str
    error_code: str | None = None


@dataclass(frozen=True)
class Decision:
    """What one provider request should suffer."""

    fault: Fault | None = None  # a request fault: answer with it and do nothing else
    outcome: Fault | None = None  # an outcome fault for the work this request starts
    slow_seconds: float | None = None
    attempt: int = 0


@dataclass(frozen=True)
class _Tag:
    kind: str
    count: int | None
    value: str | None


@dataclass
class _Queued:
    spec: FaultSpec
    remaining: int

    def matches(self, provider: str, route: str, prompt: str | None, request_fault: bool) -> bool:
        spec = self.spec
        if spec.provider != provider or (spec.route is not None and spec.route != route):
            return False
        return (spec.kind in REQUEST_KINDS) == request_fault and (
            spec.match is None or (prompt is not None and spec.match in prompt)
        )


@dataclass
class FaultBook:
    rules: FaultRules = field(default_factory=FaultRules.of_stand_ins)
    _queue: list[_Queued] = field(default_factory=list)
    _attempts: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, spec: FaultSpec) -> None:
        problem = spec.problem(self.rules)
        if problem is not None:
            raise ValueError(problem)
        self._queue.append(_Queued(spec, spec.count))

    def pending(self) -> list[dict[str, object]]:
        return [{**msgspec.to_builtins(q.spec), "remaining": q.remaining} for q in self._queue]

    def clear(self) -> None:
        self._queue.clear()

    def reset(self) -> None:
        self._queue.clear()
        self._attempts.clear()

    def attempts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (provider, prompt), count in self._attempts.items():
            out.setdefault(provider, {})[prompt] = count
        return out

    def decide(self, provider: str, route: str, prompt: str | None) -> Decision:
        """Consume the faults that apply to this request and say what it should suffer."""
        carries_prompt = prompt is not None and route in self.rules.prompt_routes.get(provider, frozenset())
        tags = parse_tags(prompt, self.rules) if prompt is not None and carries_prompt else []
        attempt = 0
        if prompt is not None and carries_prompt:
            attempt = self._attempts[(provider, prompt)] = self._attempts.get((provider, prompt), 0) + 1
        slow = next((_seconds(t.value) for t in reversed(tags) if t.kind == "slow"), None)

        queued = self._take(provider, route, prompt, request_fault=True)
        if queued is None:
            queued = _from_tags([t for t in tags if t.kind in REQUEST_KINDS], attempt)
        if queued is not None:
            return Decision(fault=queued, slow_seconds=slow, attempt=attempt)
        outcome = self._take(provider, route, prompt, request_fault=False) if carries_prompt else None
        if outcome is None:
            outcome = _from_tags([t for t in tags if t.kind in self.rules.outcomes(provider)], attempt)
        return Decision(outcome=outcome, slow_seconds=slow, attempt=attempt)

    def _take(self, provider: str, route: str, prompt: str | None, *, request_fault: bool) -> Fault | None:
        for queued in self._queue:
            if queued.matches(provider, route, prompt, request_fault):
                queued.remaining -= 1
                if queued.remaining == 0:
                    self._queue.remove(queued)
                return Fault(queued.spec.kind, queued.spec.error_code)
        return None


def parse_tags(prompt: str, rules: FaultRules | None = None) -> list[_Tag]:
    """The ``[sim:...]`` tags in a prompt that mean something (to any stand-in, when ``rules`` is not given)."""
    rules = rules if rules is not None else FaultRules.of_stand_ins()
    tags: list[_Tag] = []
    for found in _TAG.finditer(prompt):
        kind = rules.tag_kind(found["kind"].lower())
        if kind is None:
            continue
        count = int(found["count"]) if found["count"] else None
        tags.append(_Tag(kind, count, found["value"]))
    return tags


def _from_tags(tags: list[_Tag], attempt: int) -> Fault | None:
    threshold = 0
    for tag in tags:
        if tag.count is None or attempt <= threshold + tag.count:
            return Fault(tag.kind, tag.value or None)
        threshold += tag.count
    return None


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value or "")
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


async def hold_open(wait_disconnect: Callable[[], Awaitable[None]], seconds: float, stop: asyncio.Event) -> bool:
    """Keep a request waiting. True if the client went away; False when the time ran out or the simulator stops."""
    disconnect = asyncio.ensure_future(wait_disconnect())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({disconnect, stopping}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        return disconnect in done
    finally:
        disconnect.cancel()
        stopping.cancel()
