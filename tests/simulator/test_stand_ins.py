"""A provider stand-in is one module in ``services/simulator/providers/``: in a copy of the services, a module
written here (and nothing else changed) is served with its routes, faults, prompt tags, settings, API keys,
counters and control routes, beside Gemini and Ark."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from services.simulator.providers import stand_ins

from .helpers import GEMINI_HEADERS, GEMINI_PATH, gemini_body
from .test_process import REPO_ROOT, serving

pytestmark = pytest.mark.integration

ACME = '''
"""Acme word counting: POST /acme/count with the text as the body, key in X-Acme-Key."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler

from ..errors import ProviderError, json_response
from ..stand_in import StandIn
from ..state import Incoming, Shared


class AcmeErrors:
    malformed_body = b'{"words": '

    def rate_limited(self, code: str | None) -> ProviderError:
        return ProviderError(429, {"problem": code or "slow down"})

    def server_error(self, status: int, code: str | None) -> ProviderError:
        return ProviderError(status, {"problem": "broken"})

    def timed_out(self) -> ProviderError:
        return ProviderError(504, {"problem": "too slow"})


class AcmeKnobs(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    acme_bonus_words: int = 0


class Acme(StandIn):
    name = "acme"
    routes = frozenset({"count"})
    prompt_routes = frozenset({"count"})
    outcome_tags = {"silent": "silent"}
    knobs = AcmeKnobs

    def __init__(self, shared: Shared) -> None:
        super().__init__(shared)
        self.errors = AcmeErrors()
        self.counted = 0

    def http_routes(self) -> list[HTTPRouteHandler]:
        @post("/acme/count", status_code=200)
        async def count(request: Request[Any, Any, Any]) -> Response[bytes]:
            return await self.serve("count", await self.shared.incoming(request), self._check_key, self._count)

        return [count]

    def control_routes(self) -> list[HTTPRouteHandler]:
        @get("/counted")
        async def counted() -> dict[str, int]:
            return {"counted": self.counted}

        return [counted]

    def stats(self) -> dict[str, Any]:
        return {"acme_counted": self.counted}

    async def reset(self) -> None:
        self.counted = 0

    def _check_key(self, incoming: Incoming) -> None:
        if incoming.headers.get("x-acme-key") not in self.api_keys:
            raise ProviderError(401, {"problem": "who are you"})

    async def _count(self, incoming: Incoming) -> Response[bytes]:
        text = incoming.body.decode()
        decision = self.shared.faults.decide(self.name, "count", text)
        if decision.fault is not None:
            return await self.fault_response(decision.fault, incoming)
        self.counted += 1
        bonus = self.shared.config.of(AcmeKnobs).acme_bonus_words
        return json_response({"words": 0 if decision.outcome else len(text.split()) + bonus})


STAND_IN = Acme
'''


def test_gemini_and_ark_are_stand_in_modules() -> None:
    assert [(s.__module__, s.name) for s in stand_ins()] == [
        ("services.simulator.providers.ark", "ark"),
        ("services.simulator.providers.gemini", "gemini"),
    ]


async def test_a_new_stand_in_module_is_served_with_everything_shared(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "services", copy / "services", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "services" / "simulator" / "providers" / "acme.py").write_text(ACME)
    env = {
        "SIMULATOR_ACME_API_KEY": "acme-key",
        "SIMULATOR_ACME_BONUS_WORDS": "2",
        "SIMULATOR_FAULTS": '[{"provider": "acme", "kind": "503", "match": "first"}]',
    }
    async with (
        serving(env, tmp_path / "simulator.log", cwd=copy) as base_url,
        httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=10.0) as client,
    ):

        async def count(text: str, key: str = "acme-key") -> httpx.Response:
            return await client.post("/acme/count", content=text, headers={"X-Acme-Key": key})

        # A fault queued from SIMULATOR_FAULTS, in the stand-in's own error shape; then the answer.
        assert (await count("the first try")).json() == {"problem": "broken"}
        answer = await count("the first try")
        assert answer.status_code == 200
        assert answer.json() == {"words": 3 + 2}
        assert (await count("hello", key="wrong")).status_code == 401
        # Shared prompt tags and its own outcome tag.
        limited = await count("busy [sim:429=quota]")
        assert (limited.status_code, limited.json()) == (429, {"problem": "quota"})
        assert (await count("say nothing [sim:silent]")).json() == {"words": 0}

        # Its setting and its latency are run-time settings like every other.
        config = (await client.get("/_sim/config")).json()
        assert (config["acme_bonus_words"], config["acme_latency_ms"]) == (2, None)
        assert "ark_queue_seconds" in config
        assert (await client.post("/_sim/config", json={"acme_bonus_words": 10})).status_code == 200
        assert (await count("two words")).json() == {"words": 12}

        # Faults are checked against what it declares.
        refused = await client.post("/_sim/faults", json={"provider": "acme", "kind": "blocked"})
        assert refused.status_code == 400
        assert "does not apply to acme" in refused.json()["detail"]
        accepted = await client.post("/_sim/faults", json={"provider": "acme", "kind": "500", "route": "count"})
        assert accepted.status_code == 200
        assert (await count("unlucky")).status_code == 500

        stats = (await client.get("/_sim/stats")).json()
        assert stats["requests"]["acme"] == {"count": 7}
        assert stats["responses"]["acme"]["count"] == {"200": 3, "401": 1, "429": 1, "500": 1, "503": 1}
        assert stats["acme_counted"] == 3
        assert "ark_tasks" in stats
        assert (await client.get("/_sim/acme/counted")).json() == {"counted": 3}
        assert (await client.post("/_sim/reset")).status_code == 200
        assert (await client.get("/_sim/acme/counted")).json() == {"counted": 0}

        # The others are still there.
        image = await client.post(GEMINI_PATH, headers=GEMINI_HEADERS, json=gemini_body("beside acme"))
        assert image.status_code == 200
