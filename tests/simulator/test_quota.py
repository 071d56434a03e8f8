"""A stand-in's quota (a token bucket, answered with the provider's 429 and ``Retry-After``), the requests per
second in the stats, and how many Ark tasks were unfinished at once."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient

from .helpers import ARK_HEADERS, ARK_TASKS, GEMINI_HEADERS, GEMINI_PATH, FakeClock, ark_body, gemini_body

Client = AsyncTestClient[Litestar]


async def generate(client: Client, prompt: str) -> int:
    return (await client.post(GEMINI_PATH, json=gemini_body(prompt), headers=GEMINI_HEADERS)).status_code


async def test_past_its_burst_a_request_is_refused_in_the_providers_words_until_a_token_is_back(
    clocked: Client, clock: FakeClock
) -> None:
    await clocked.post("/_sim/config", json={"gemini_requests_per_second": 2, "gemini_burst": 3})
    assert [await generate(clocked, f"p{i}") for i in range(4)] == [200, 200, 200, 429]
    refused = await clocked.post(GEMINI_PATH, json=gemini_body("again"), headers=GEMINI_HEADERS)
    assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    # Half a second gives back one token at 2 a second.
    assert refused.headers["retry-after"] == "1"
    clock.advance(0.5)
    assert [await generate(clocked, "later"), await generate(clocked, "later still")] == [200, 429]
    # Ark is not limited by Gemini's quota.
    assert (await clocked.post(ARK_TASKS, json=ark_body("a wave"), headers=ARK_HEADERS)).status_code == 200
    stats = (await clocked.get("/_sim/stats")).json()
    assert stats["responses"]["gemini"]["generate_content"] == {"200": 4, "429": 3}


async def test_without_a_burst_the_bucket_holds_one_seconds_worth(clocked: Client, clock: FakeClock) -> None:
    await clocked.post("/_sim/config", json={"ark_requests_per_second": 2})
    statuses = [(await clocked.get(f"{ARK_TASKS}/none", headers=ARK_HEADERS)).status_code for _ in range(3)]
    assert statuses == [404, 404, 429]
    clock.advance(1)
    assert (await clocked.get(f"{ARK_TASKS}/none", headers=ARK_HEADERS)).status_code == 404


async def test_requests_are_counted_by_the_second_they_arrive_in(clocked: Client, clock: FakeClock) -> None:
    second = int(clock.now)
    await generate(clocked, "one")
    await generate(clocked, "two")
    clock.advance(1)
    await generate(clocked, "three")
    per_second = (await clocked.get("/_sim/stats")).json()["requests_per_second"]
    assert per_second["gemini"]["generate_content"] == {str(second): 2, str(second + 1): 1}


async def test_the_most_unfinished_ark_tasks_at_once(clocked: Client, clock: FakeClock) -> None:
    # Each task is queued 0.2 s, then runs 0.3 s (the suite's settings): three overlap, the fourth starts later.
    for _ in range(3):
        assert (await clocked.post(ARK_TASKS, json=ark_body("a wave"), headers=ARK_HEADERS)).status_code == 200
        clock.advance(0.1)
    clock.advance(0.4)
    created = await clocked.post(ARK_TASKS, json=ark_body("a wave"), headers=ARK_HEADERS)
    clock.advance(0.1)
    # Cancelled while queued: unfinished only until then.
    await clocked.delete(f"{ARK_TASKS}/{created.json()['id']}", headers=ARK_HEADERS)
    assert (await clocked.get("/_sim/stats")).json()["ark_most_unfinished"] == 3
