"""The Ark video task stand-in, through HTTP, in process.

Timelines are checked two ways: against a fake clock (exact, instant) and against the wall clock with tiny
queue/run times, waiting on conditions (as a real poller would)."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.simulator.media import encode_png, png_size, render_rows
from services.simulator.mp4 import iter_boxes

from .helpers import ARK_HEADERS, ARK_MODEL, ARK_TASKS, CallbackReceiver, FakeClock, ark_body, ark_status, wait_for

Client = AsyncTestClient[Litestar]
TASK_ID = re.compile(r"^cgt-\d{14}-[a-z0-9]{5}$")


async def create(client: Client, text: str, **extra: Any) -> str:
    response = await client.post(ARK_TASKS, headers=ARK_HEADERS, json=ark_body(text, **extra))
    assert response.status_code == 200, response.text
    task_id = response.json()["id"]
    assert TASK_ID.match(task_id)
    return str(task_id)


async def get(client: Client, task_id: str) -> dict[str, Any]:
    response = await client.get(f"{ARK_TASKS}/{task_id}", headers=ARK_HEADERS)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ark_error(response: Any, status: int, code: str, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == kind
    assert "Request id" in error["message"]
    return error


async def test_task_moves_queued_running_succeeded(clocked: Client, clock: FakeClock) -> None:
    task_id = await create(clocked, "a red kite over hills --ratio 9:16 --dur 3 --rs 720p", return_last_frame=True)
    queued = await get(clocked, task_id)
    assert queued["status"] == "queued"
    assert "content" not in queued
    assert queued["created_at"] == queued["updated_at"] == int(clock.now)
    assert (queued["model"], queued["ratio"], queued["duration"], queued["resolution"]) == (
        ARK_MODEL,
        "9:16",
        3,
        "720p",
    )
    assert queued["framespersecond"] == 24
    clock.advance(0.25)
    assert (await get(clocked, task_id))["status"] == "running"
    clock.advance(0.3)
    done = await get(clocked, task_id)
    assert done["status"] == "succeeded"
    assert done["updated_at"] >= done["created_at"]
    assert done["content"]["video_url"].startswith(f"http://testserver.local/_media/{task_id}.mp4")
    assert done["content"]["last_frame_url"].startswith(f"http://testserver.local/_media/{task_id}-last.png")
    assert done["usage"]["completion_tokens"] == done["usage"]["total_tokens"] > 0
    assert "error" not in done


async def test_state_machine_on_the_wall_clock(client: Client) -> None:
    # Phases long enough that a busy machine still sees each status at least once.
    assert (
        await client.post("/_sim/config", json={"ark_queue_seconds": 0.6, "ark_run_seconds": 0.6})
    ).status_code == 200
    task_id = await create(client, "waves on a pier")
    seen = [(await get(client, task_id))["status"]]

    async def finished() -> bool:
        status = await ark_status(client, task_id)
        if status != seen[-1]:
            seen.append(status)
        return status == "succeeded"

    await wait_for(finished, within=10)
    assert seen == ["queued", "running", "succeeded"]


async def test_defaults_and_top_level_fields(clocked: Client) -> None:
    task_id = await create(
        clocked, "a fox --ratio 1:1 --duration 4", ratio="21:9", resolution="480p", seed=42, camera_fixed=True
    )
    task = await get(clocked, task_id)
    assert (task["ratio"], task["duration"], task["resolution"], task["seed"]) == ("21:9", 4, "480p", 42)
    default = await get(clocked, await create(clocked, "plain"))
    assert (default["ratio"], default["duration"], default["resolution"]) == ("16:9", 5, "1080p")
    assert 0 <= default["seed"] < 2**32
    assert default["execution_expires_after"] == 172800


async def test_adaptive_ratio_follows_a_png_first_frame(clocked: Client) -> None:
    frame = encode_png(20, 36, render_rows(20, 36, (1, 2, 3), (4, 5, 6), 0))
    url = "data:image/png;base64," + base64.b64encode(frame).decode()
    body = {
        "model": ARK_MODEL,
        "content": [
            {"type": "text", "text": "she turns around"},
            {"type": "image_url", "image_url": {"url": url}, "role": "first_frame"},
        ],
    }
    response = await clocked.post(ARK_TASKS, headers=ARK_HEADERS, json=body)
    assert response.status_code == 200, response.text
    assert (await get(clocked, response.json()["id"]))["ratio"] == "9:16"


async def test_wrong_key_is_401(client: Client) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic sim-ark-key"}):
        response = await client.post(ARK_TASKS, headers=headers, json=ark_body("x"))
        ark_error(response, 401, "AuthenticationError", "Unauthorized")
    ark_error(await client.get(f"{ARK_TASKS}/cgt-x", headers={}), 401, "AuthenticationError", "Unauthorized")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (ark_body("x", ratio="5:1"), "ratio"),
        (ark_body("x --ratio 5:1"), "ratio"),
        (ark_body("x", duration=13), "duration"),
        (ark_body("x --dur many"), "duration"),
        (ark_body("x", resolution="4k"), "resolution"),
        (ark_body("x", seed="7"), "seed"),
        (ark_body("x", callback_url="ftp://host/cb"), "callback_url"),
        (ark_body("x", return_last_frame="yes"), "return_last_frame"),
        (ark_body("x --fps 30"), "framespersecond"),
        ({"model": ARK_MODEL, "content": [{"type": "video", "text": "x"}]}, "content.type"),
        ({"model": ARK_MODEL, "content": [{"type": "text", "text": "   "}]}, "content"),
        (
            {
                "model": ARK_MODEL,
                "content": [
                    {"type": "text", "text": "x"},
                    {"type": "image_url", "image_url": {"url": "https://img/a.png"}, "role": "reference_image"},
                ],
            },
            "content.role",
        ),
        (
            {
                "model": ARK_MODEL,
                "content": [
                    {"type": "image_url", "image_url": {"url": "https://img/a.png"}, "role": "first_frame"},
                    {"type": "image_url", "image_url": {"url": "https://img/b.png"}, "role": "reference_image"},
                ],
            },
            "content.role",
        ),
        (
            {"model": ARK_MODEL, "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}]},
            "content.image_url.url",
        ),
    ],
)
async def test_invalid_parameters_are_400(client: Client, body: dict[str, Any], param: str) -> None:
    response = await client.post(ARK_TASKS, headers=ARK_HEADERS, json=body)
    assert ark_error(response, 400, "InvalidParameter", "BadRequest")["param"] == param


async def test_missing_parts_and_unknown_model(client: Client) -> None:
    missing = await client.post(ARK_TASKS, headers=ARK_HEADERS, json={"model": ARK_MODEL})
    ark_error(missing, 400, "MissingParameter", "BadRequest")
    unknown = await client.post(ARK_TASKS, headers=ARK_HEADERS, json={**ark_body("x"), "model": "no-such-model"})
    ark_error(unknown, 404, "InvalidEndpointOrModel.NotFound", "NotFound")
    garbage = await client.post(ARK_TASKS, headers={**ARK_HEADERS, "Content-Type": "application/json"}, content=b"{")
    ark_error(garbage, 400, "InvalidParameter", "BadRequest")


async def test_unknown_task_is_404(client: Client) -> None:
    for method in ("GET", "DELETE"):
        response = await client.request(method, f"{ARK_TASKS}/cgt-20250101000000-zzzzz", headers=ARK_HEADERS)
        ark_error(response, 404, "ResourceNotFound", "NotFound")


async def test_list_filters_and_pages(clocked: Client, clock: FakeClock) -> None:
    first = await create(clocked, "one")
    clock.advance(1)  # first has finished; the next two are queued
    second = await create(clocked, "two")
    third = await create(clocked, "three", model="doubao-seedance-1-0-lite-t2v-250428")

    async def listing(query: str) -> dict[str, Any]:
        response = await clocked.get(f"{ARK_TASKS}?{query}", headers=ARK_HEADERS)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    everything = await listing("")
    assert everything["total"] == 3
    assert [t["id"] for t in everything["items"]] == [third, second, first]  # newest first
    assert [t["id"] for t in (await listing("filter.status=succeeded"))["items"]] == [first]
    assert (await listing("filter.status=queued"))["total"] == 2
    by_ids = await listing(f"filter.task_ids={first}&filter.task_ids={third}")
    assert {t["id"] for t in by_ids["items"]} == {first, third}
    assert [t["id"] for t in (await listing("filter.model=doubao-seedance-1-0-lite-t2v-250428"))["items"]] == [third]
    page = await listing("page_num=2&page_size=2")
    assert page["total"] == 3
    assert [t["id"] for t in page["items"]] == [first]
    bad = await clocked.get(f"{ARK_TASKS}?page_size=0", headers=ARK_HEADERS)
    ark_error(bad, 400, "InvalidParameter", "BadRequest")
    bad_status = await clocked.get(f"{ARK_TASKS}?filter.status=done", headers=ARK_HEADERS)
    ark_error(bad_status, 400, "InvalidParameter", "BadRequest")


async def test_delete_cancels_queued_refuses_running_removes_finished(clocked: Client, clock: FakeClock) -> None:
    queued = await create(clocked, "cancel me")
    cancelled = await clocked.delete(f"{ARK_TASKS}/{queued}", headers=ARK_HEADERS)
    assert cancelled.status_code == 200
    assert cancelled.json() == {}
    clock.advance(10)  # long past when it would have finished
    assert (await get(clocked, queued))["status"] == "cancelled"
    again = await clocked.delete(f"{ARK_TASKS}/{queued}", headers=ARK_HEADERS)
    ark_error(again, 400, "InvalidParameter", "BadRequest")

    running = await create(clocked, "busy")
    clock.advance(0.25)
    assert (await get(clocked, running))["status"] == "running"
    refused = await clocked.delete(f"{ARK_TASKS}/{running}", headers=ARK_HEADERS)
    ark_error(refused, 400, "InvalidParameter", "BadRequest")

    clock.advance(1)
    assert (await get(clocked, running))["status"] == "succeeded"
    deleted = await clocked.delete(f"{ARK_TASKS}/{running}", headers=ARK_HEADERS)
    assert deleted.status_code == 200
    gone = await clocked.get(f"{ARK_TASKS}/{running}", headers=ARK_HEADERS)
    ark_error(gone, 404, "ResourceNotFound", "NotFound")
    listed = (await clocked.get(ARK_TASKS, headers=ARK_HEADERS)).json()
    assert [t["id"] for t in listed["items"]] == [queued]


async def test_failed_task_carries_an_error(clocked: Client, clock: FakeClock) -> None:
    default = await create(clocked, "forbidden scene [sim:fail]")
    chosen = await create(clocked, "broken [sim:fail=InternalServiceError]")
    clock.advance(0.25)
    assert (await get(clocked, default))["status"] == "running"
    clock.advance(0.3)
    failed = await get(clocked, default)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "OutputVideoSensitiveContentDetected"
    assert failed["error"]["message"]
    assert "content" not in failed
    assert (await get(clocked, chosen))["error"]["code"] == "InternalServiceError"


async def test_expired_task_never_runs(clocked: Client, clock: FakeClock) -> None:
    task_id = await create(clocked, "too late [sim:expired]")
    clock.advance(0.25)
    assert (await get(clocked, task_id))["status"] == "queued"
    clock.advance(0.3)
    expired = await get(clocked, task_id)
    assert expired["status"] == "expired"
    assert "content" not in expired


async def test_queued_outcome_faults(clocked: Client, clock: FakeClock) -> None:
    faults = [
        {"provider": "ark", "kind": "expired", "match": "sunset"},
        {"provider": "ark", "kind": "task_failed", "error_code": "InputTextSensitiveContentDetected"},
    ]
    assert (await clocked.post("/_sim/faults", json=faults)).status_code == 200
    failing = await create(clocked, "a sunrise")
    expiring = await create(clocked, "a sunset")
    clock.advance(1)
    assert (await get(clocked, failing))["error"]["code"] == "InputTextSensitiveContentDetected"
    assert (await get(clocked, expiring))["status"] == "expired"


async def test_request_faults_on_create(client: Client) -> None:
    limited = await client.post(ARK_TASKS, headers=ARK_HEADERS, json=ark_body("rush [sim:429]"))
    ark_error(limited, 429, "RateLimitExceeded.EndpointRPMExceeded", "TooManyRequests")
    overloaded = await client.post(ARK_TASKS, headers=ARK_HEADERS, json=ark_body("rush [sim:429=ServerOverloaded]"))
    ark_error(overloaded, 429, "ServerOverloaded", "TooManyRequests")
    prompt = "wobbly [sim:503x1]"
    first = await client.post(ARK_TASKS, headers=ARK_HEADERS, json=ark_body(prompt))
    ark_error(first, 503, "ServiceUnavailable", "ServiceUnavailable")
    await create(client, prompt)
    stats = (await client.get("/_sim/stats")).json()
    assert stats["requests"]["ark"]["create_task"] == 4
    assert len(stats["ark_tasks"]) == 1  # faulted creates make no task


async def test_request_faults_on_polling(client: Client) -> None:
    task_id = await create(client, "poll me")
    faults = [
        {"provider": "ark", "kind": "500", "route": "get_task"},
        {"provider": "ark", "kind": "malformed_json", "route": "get_task", "match": "poll me"},
    ]
    assert (await client.post("/_sim/faults", json=faults)).status_code == 200
    url = f"{ARK_TASKS}/{task_id}"
    ark_error(await client.get(url, headers=ARK_HEADERS), 500, "InternalServiceError", "InternalServerError")
    garbled = await client.get(url, headers=ARK_HEADERS)
    assert garbled.status_code == 200
    with pytest.raises(ValueError, match=r".*"):
        garbled.json()
    assert (await get(client, task_id))["id"] == task_id  # both faults used up


async def test_hang_on_create_times_out(client: Client) -> None:
    response = await client.post(ARK_TASKS, headers=ARK_HEADERS, json=ark_body("frozen [sim:hang]"))
    ark_error(response, 504, "RequestTimeout", "GatewayTimeout")


async def test_slow_tag_sets_the_run_time(clocked: Client, clock: FakeClock) -> None:
    task_id = await create(clocked, "a long take [sim:slow=5]")
    control = (await clocked.get(f"/_sim/ark/tasks/{task_id}")).json()
    assert control["run_seconds"] == 5
    clock.advance(3)
    assert (await get(clocked, task_id))["status"] == "running"
    clock.advance(3)
    assert (await get(clocked, task_id))["status"] == "succeeded"


async def test_queries_are_counted(clocked: Client) -> None:
    task_id = await create(clocked, "count my polls")
    other = await create(clocked, "not polled")
    for _ in range(3):
        await get(clocked, task_id)
    control = (await clocked.get(f"/_sim/ark/tasks/{task_id}")).json()
    assert control["queries"] == 3
    assert control["prompt"] == "count my polls"
    stats = (await clocked.get("/_sim/stats")).json()
    assert stats["ark_tasks"][task_id]["queries"] == 3
    assert stats["ark_tasks"][other]["queries"] == 0
    assert stats["requests"]["ark"]["get_task"] == 3


async def test_control_api_changes_a_task(clocked: Client, clock: FakeClock) -> None:
    assert (await clocked.post("/_sim/config", json={"ark_queue_seconds": 100})).status_code == 200
    task_id = await create(clocked, "waiting forever")
    assert (await get(clocked, task_id))["status"] == "queued"
    patched = await clocked.post(
        f"/_sim/ark/tasks/{task_id}", json={"queue_seconds": 0, "run_seconds": 0, "outcome": "failed"}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["task"]["status"] == "failed"
    conflict = await clocked.post(f"/_sim/ark/tasks/{task_id}", json={"run_seconds": 9})
    assert conflict.status_code == 409
    assert (await clocked.post("/_sim/ark/tasks/nope", json={})).status_code == 404
    assert (await clocked.post(f"/_sim/ark/tasks/{task_id}", json={"colour": "red"})).status_code == 400


async def test_media_is_real_and_expires(clocked: Client, clock: FakeClock) -> None:
    task_id = await create(clocked, "a bird --rs 480p --rt 1:1 --dur 2", return_last_frame=True)
    early = await clocked.get(f"/_media/{task_id}.mp4")
    assert early.status_code == 404  # no video before the task succeeds
    clock.advance(1)
    content = (await get(clocked, task_id))["content"]
    video = await clocked.get(content["video_url"].removeprefix("http://testserver.local"))
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    boxes = [kind for kind, _, _ in iter_boxes(video.content)]
    assert boxes == [b"ftyp", b"moov", b"mdat"]
    assert video.content[8:12] == b"isom"
    frame = await clocked.get(content["last_frame_url"].removeprefix("http://testserver.local"))
    assert frame.status_code == 200
    assert png_size(frame.content) == (640 // 8, 640 // 8)
    clock.advance(24 * 3600 + 1)
    expired = await clocked.get(f"/_media/{task_id}.mp4")
    assert expired.status_code == 403
    assert b"AccessDenied" in expired.content
    assert (await clocked.get("/_media/cgt-unknown.mp4")).status_code == 404


async def test_request_faults_on_media(clocked: Client, clock: FakeClock) -> None:
    task_id = await create(clocked, "a slow download --dur 2")
    other = await create(clocked, "a quick download --dur 2")
    clock.advance(5)
    fault = {"provider": "ark", "kind": "503", "route": "media", "match": "slow download", "count": 2}
    assert (await clocked.post("/_sim/faults", json=fault)).status_code == 200
    assert (await clocked.get(f"/_media/{other}.mp4")).status_code == 200  # another task's prompt
    for _ in range(2):
        ark_error(await clocked.get(f"/_media/{task_id}.mp4"), 503, "ServiceUnavailable", "ServiceUnavailable")
    assert (await clocked.get(f"/_media/{task_id}.mp4")).status_code == 200
    stats = (await clocked.get("/_sim/stats")).json()
    assert stats["responses"]["ark"]["media"] == {"200": 2, "503": 2}


async def test_no_last_frame_unless_asked(clocked: Client, clock: FakeClock) -> None:
    task_id = await create(clocked, "no frame please")
    clock.advance(1)
    assert "last_frame_url" not in (await get(clocked, task_id))["content"]
    assert (await clocked.get(f"/_media/{task_id}-last.png")).status_code == 404


async def test_callbacks_follow_the_status(client: Client) -> None:
    async with CallbackReceiver() as receiver:
        task_id = await create(client, "call me back", callback_url=receiver.url)
        running = await receiver.next()
        assert (running["id"], running["status"]) == (task_id, "running")
        done = await receiver.next()
        assert done["status"] == "succeeded"
        assert f"/_media/{task_id}.mp4" in done["content"]["video_url"]
        assert set(done) == set(await get(client, task_id))  # same shape as GET
    control = (await client.get(f"/_sim/ark/tasks/{task_id}")).json()
    assert [(c["status"], c["delivered"]) for c in control["callbacks"]] == [("running", True), ("succeeded", True)]


async def test_callbacks_are_retried(client: Client) -> None:
    async with CallbackReceiver(fail_first=2) as receiver:
        task_id = await create(client, "retry the call", callback_url=receiver.url)
        first = await receiver.next()
        assert first["status"] == "running"
        assert (await receiver.next())["status"] == "succeeded"
    control = (await client.get(f"/_sim/ark/tasks/{task_id}")).json()
    assert control["callbacks"][0]["attempts"] == 3
    assert control["callbacks"][0]["delivered"] is True


async def test_undeliverable_callbacks_give_up(client: Client) -> None:
    async with CallbackReceiver() as receiver:
        url = receiver.url  # closed when the block ends: nothing listens there any more
    task_id = await create(client, "nobody home", callback_url=url)

    async def gave_up() -> bool:
        callbacks = (await client.get(f"/_sim/ark/tasks/{task_id}")).json()["callbacks"]
        return len(callbacks) == 2 and all(c["attempts"] == 3 for c in callbacks)

    await wait_for(gave_up)
    stats = (await client.get("/_sim/stats")).json()
    assert stats["ark_tasks"][task_id]["callbacks_failed"] == 2


async def test_cancel_sends_a_callback(client: Client) -> None:
    assert (await client.post("/_sim/config", json={"ark_queue_seconds": 30})).status_code == 200
    async with CallbackReceiver() as receiver:
        task_id = await create(client, "never mind", callback_url=receiver.url)
        assert (await client.delete(f"{ARK_TASKS}/{task_id}", headers=ARK_HEADERS)).status_code == 200
        assert (await receiver.next())["status"] == "cancelled"


async def test_reset_forgets_everything(client: Client) -> None:
    task_id = await create(client, "ephemeral")
    await client.post("/_sim/faults", json={"provider": "ark", "kind": "429"})
    await client.post("/_sim/config", json={"latency_ms": 5})
    assert (await client.post("/_sim/reset")).status_code == 200
    ark_error(await client.get(f"{ARK_TASKS}/{task_id}", headers=ARK_HEADERS), 404, "ResourceNotFound", "NotFound")
    stats = (await client.get("/_sim/stats")).json()
    assert stats["pending_faults"] == []
    assert stats["ark_tasks"] == {}
    assert stats["requests"] == {"ark": {"get_task": 1}}
    assert (await client.get("/_sim/config")).json()["latency_ms"] == 0
