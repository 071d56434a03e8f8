"""The web console in headless Chromium against the real stack: tasks created from the page and followed live
over communication's websocket, results shown, cancel and refresh, recovery after the socket drops or communication
restarts (the page resumes from the last event it saw), and a token renewed before communication closes the socket at
its expiry (the new socket resumes from the last event the old one delivered)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from playwright.async_api import Browser, Route

from deploy.local import LocalStack
from tests.console.conftest import Console, is_task_read, open_console
from tests.stack import USERS, Api, Launcher, MainProcess, wait_for

pytestmark = pytest.mark.integration

IMAGE = "nanobanana2-image"
VIDEO = "fangzhouVideoGeneration"
# The console builds one form per integration main serves, with ids from the integration's name.
IMAGE_FORM, VIDEO_FORM, ECHO_FORM = f"form-{IMAGE}", f"form-{VIDEO}", "form-echo"


async def test_console_is_served_outside_the_api_schema(stack: LocalStack) -> None:
    async with httpx.AsyncClient(base_url=stack.main_url) as anonymous:
        page = await anonymous.get("/console")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert '<script src="/console/console.js"' in page.text
        script = await anonymous.get("/console/console.js")
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]
        assert (await anonymous.get("/console/console.css")).status_code == 200
        assert (await anonymous.get("/console/missing.js")).status_code == 404
        paths = (await anonymous.get("/docs/openapi.json")).json()["paths"]
    assert not [p for p in paths if p.startswith("/console")]


async def test_console_rejects_a_wrong_key(console: Console) -> None:
    page = console.page
    await page.goto(f"{console.stack.main_url}/console")
    await page.get_by_label("API key").fill("not-a-key")
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_text("That API key is not accepted.").wait_for()
    assert await page.locator("#workspace").is_hidden()
    assert await page.evaluate("sessionStorage.length") == 0


async def test_console_hides_forms_of_integrations_that_are_not_mounted(console: Console) -> None:
    async def without_video(route: Route) -> None:
        response = await route.fetch()
        doc = await response.json()
        doc["paths"] = {path: op for path, op in doc["paths"].items() if VIDEO not in path}
        await route.fulfill(response=response, body=json.dumps(doc))

    await console.page.route("**/docs/openapi.json", without_video)
    await console.sign_in(USERS["alice"])
    assert await console.page.locator(f"#{IMAGE_FORM}").is_visible()
    assert await console.page.locator(f"#{VIDEO_FORM}").is_hidden()
    assert await console.page.locator(f"#{ECHO_FORM}").is_visible()


async def test_a_newly_served_integration_gets_its_form_with_no_console_change(
    console: Console, stack: LocalStack, worker_env: dict[str, str], bob: Api
) -> None:
    # A second main that also serves the example integration, which the default blacklist keeps out and which
    # declares no console hints: its form comes from the OpenAPI schema alone.
    main = MainProcess(worker_env, stack.state_dir / "console-main-with-example.log", INTEGRATIONS_BLACKLIST="")
    url = main.url
    try:
        await main.wait_ready()
        page = console.page
        await page.goto(f"{url}/console")
        await page.get_by_label("API key").fill(USERS["bob"])
        await page.get_by_role("button", name="Sign in").click()
        form = page.locator("#form-example")
        await form.wait_for()
        assert (await form.locator("h3").inner_text()).strip() == "example"
        prompt = form.get_by_label("Prompt", exact=True)
        assert (await prompt.get_attribute("required"), await prompt.get_attribute("maxlength")) == ("", "10000")
        # Numbers take their type and limits from the schema too (echo's hints give only a label).
        echo = page.locator(f"#{ECHO_FORM}")
        delay = echo.get_by_label("Delay (s)", exact=True)
        assert (await delay.get_attribute("type"), await delay.get_attribute("max")) == ("number", "3600")
        assert await echo.get_by_label("Fail attempts", exact=True).get_attribute("step") == "1"
        for known in (IMAGE_FORM, VIDEO_FORM, ECHO_FORM):
            assert await page.locator(f"#{known}").is_visible(), known

        await prompt.fill("from a form nobody wrote")
        async with page.expect_response(lambda r: r.url.endswith("/api/integrations/example/tasks")) as created:
            await form.get_by_role("button", name="Create task").click()
        response = await created.value
        assert response.status == 202, await response.text()
        # Empty fields stay out of the body, so main applies the defaults.
        assert response.request.post_data_json == {"prompt": "from a form nobody wrote"}
        task_id = (await response.json())["id"]
        card = console.card(task_id)
        await card.wait_for()
        assert await card.get_by_role("button", name="Cancel").count() == 1
        # Per-task actions come from the pattern: the example is no submit-poll integration, so no refresh.
        assert await card.get_by_role("button", name="Refresh").count() == 0
        assert (await bob.http.post(f"/api/tasks/{task_id}/cancel")).status_code == 202
    finally:
        main.kill()


async def test_console_follows_tasks_live(
    console: Console, echo_worker: Launcher, provider_workers: Launcher, alice: Api
) -> None:
    page, timeline = console.page, console.timeline
    await console.sign_in(USERS["alice"])
    for form in (IMAGE_FORM, VIDEO_FORM, ECHO_FORM):
        assert await page.locator(f"#{form}").is_visible(), form
    # Allowed values come from main's OpenAPI schema.
    ratios = await page.locator(f"#{VIDEO}-ratio option").evaluate_all("options => options.map(o => o.value)")
    assert ratios == ["", "16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive"]
    assert await page.locator(f"#{VIDEO}-duration").get_attribute("max") == "12"
    start = timeline.mark()

    # [sim:slow=N] makes the simulator take that long, so each task is visibly running for a while.
    image = await console.submit(
        IMAGE_FORM,
        {"Prompt": "a lighthouse at dusk [sim:slow=3]", "Aspect ratio": "16:9", "Size": "1K"},
    )
    video = await console.submit(
        VIDEO_FORM,
        {"Prompt": "waves rolling onto a beach [sim:slow=8]", "Ratio": "16:9", "Duration (s)": "3"},
    )
    blocked = await console.submit(IMAGE_FORM, {"Prompt": "something forbidden [sim:blocked]", "Size": "512"})
    doomed = await console.submit(ECHO_FORM, {"Message": "cancel me", "Delay (s)": "600"})
    echo = await console.submit(ECHO_FORM, {"Message": "hello console", "Delay (s)": "2"})

    # The video is refreshed while running: the page asks main, which asks the workflow to query Ark now.
    await console.wait_shown(video, "running")
    async with page.expect_response(lambda r: r.url.endswith(f"/tasks/{video}/refresh")) as refreshed:
        await console.card(video).get_by_role("button", name="Refresh").click()
    assert (await refreshed.value).status == 200

    await console.wait_shown(doomed, "running")
    await console.card(doomed).get_by_role("button", name="Cancel").click()
    await console.wait_status(doomed, "cancelled")
    await console.card(doomed).locator(".error-code", has_text="cancelled").wait_for()

    for task_id in (image, video, echo):
        await console.wait_status(task_id, "succeeded")
    await console.wait_status(blocked, "failed")

    # Every change reached the page over the websocket: between showing a task running and showing it
    # succeeded, the page read no task from main, and it read the list only once, when the socket connected.
    for task_id in (image, video, echo):
        assert timeline.statuses(task_id)[-2:] == ["running", "succeeded"], timeline.statuses(task_id)
        running, succeeded = timeline.index_of(task_id, "running"), timeline.index_of(task_id, "succeeded")
        between = timeline.requests(running, succeeded)
        assert not [r for r in between if is_task_read(*r)], between
    assert not [r for r in timeline.requests(start) if is_task_read(*r)], timeline.requests(start)
    assert [r for r in timeline.requests() if is_task_read(*r)] == [("GET", "/api/tasks?limit=50")]
    assert await page.evaluate("window.__console.connectionLog") == ["connecting", "connected"]

    # Results straight from their presigned URLs.
    img = console.card(image).locator("img")
    await page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=await img.element_handle())
    assert (await img.get_attribute("src") or "").startswith("http")
    video_element = console.card(video).locator("video")
    assert await video_element.get_attribute("controls") is not None
    await page.wait_for_function("v => v.readyState >= 1", arg=await video_element.element_handle())
    assert await video_element.evaluate("v => v.duration") == pytest.approx(3, abs=0.2)
    assert await console.card(echo).get_by_role("link", name="Download text").count() == 1

    # Structured errors, and the workflow's page in the Temporal UI.
    blocked_error = console.card(blocked).locator(".error")
    assert (await blocked_error.locator(".error-code").inner_text()).strip()
    expected = await alice.task(blocked)
    assert await blocked_error.inner_text() == f"{expected['error']['code']} {expected['error']['message']}"
    link = console.card(image).get_by_role("link", name="Workflow in Temporal UI")
    assert await link.get_attribute("href") == (await alice.task(image))["links"]["temporal_ui"]
    for task_id in (image, video, echo, blocked, doomed):
        assert await console.card(task_id).get_by_role("button", name="Cancel").count() == 0

    # A reload keeps the session (sessionStorage) and rebuilds the list from main.
    await page.reload()
    await console.wait_connection("connected")
    await console.wait_status(image, "succeeded")
    # The video plays (then pauses on a frame, for the picture).
    played = (
        await console.card(video)
        .locator("video")
        .evaluate(
            """async v => {
            v.muted = true;
            await v.play();
            await new Promise(resolve => setTimeout(resolve, 800));
            v.pause();
            return v.currentTime;
        }"""
        )
    )
    assert played > 0
    await console.screenshot("console")


async def test_console_recovers_after_the_socket_drops(console: Console, echo_worker: Launcher, alice: Api) -> None:
    page, timeline = console.page, console.timeline
    await console.sign_in(USERS["alice"])
    task = await console.submit(ECHO_FORM, {"Message": "cancelled while the page is offline", "Delay (s)": "600"})
    await console.wait_status(task, "running")

    # Hold the page's next token request, so it stays disconnected while things change.
    release = asyncio.Event()

    async def held(route: Route) -> None:
        await release.wait()
        await route.continue_()

    await page.route("**/api/realtime/token", held)
    dropped = timeline.mark()
    await page.evaluate("window.__console.socket.close(4000, 'test drops the socket')")
    await console.wait_connection("reconnecting")
    await page.get_by_role("status").get_by_text("Reconnecting").wait_for()

    # Another client cancels the page's task and creates one of its own.
    assert (await alice.http.post(f"/api/tasks/{task}/cancel")).status_code == 202
    await alice.wait_status(task, {"cancelled"})
    elsewhere = (await alice.create("echo", {"message": "created by another client"})).json()["id"]
    await alice.wait_status(elsewhere, {"succeeded"})
    await asyncio.sleep(0.5)
    assert await console.card(task).get_attribute("data-status") == "running"
    assert await console.card(elsewhere).count() == 0

    release.set()
    await console.wait_connection("connected")
    await console.wait_status(task, "cancelled")
    await console.wait_status(elsewhere, "succeeded")
    await console.card(task).locator(".error-code", has_text="cancelled").wait_for()
    await page.unroute("**/api/realtime/token")

    log = await page.evaluate("window.__console.connectionLog")
    assert log[:2] == ["connecting", "connected"]
    assert "reconnecting" in log[2:]
    assert log[-1] == "connected"
    # What changed while the page was offline came from the events the resumed socket replayed: the list is not read
    # again; only the task the page had never heard of is read once, to fill its card.
    after = timeline.requests(dropped)
    assert [r for r in after if is_task_read(*r)] == [("GET", f"/api/tasks/{elsewhere}")]
    token_at = timeline.entries.index(("request", "POST", "/api/realtime/token"), dropped)
    assert timeline.index_of(task, "cancelled") > token_at


async def test_console_resumes_after_communication_restarts(
    console: Console, echo_worker: Launcher, alice: Api, stack: LocalStack
) -> None:
    """A communication restart leaves no stale task on screen: the page resumes from the last event it saw."""
    page, timeline = console.page, console.timeline
    await console.sign_in(USERS["alice"])
    task = await console.submit("form-echo", {"Message": "finished while communication restarts", "Delay (s)": "2"})
    await console.wait_status(task, "running")
    seq_before = await page.evaluate("window.__console.lastSeq")
    restarted = timeline.mark()
    await asyncio.to_thread(stack.stop, "communication")
    await console.wait_connection("reconnecting")
    await alice.wait_status(task, {"succeeded"})
    assert await console.card(task).get_attribute("data-status") == "running"
    await asyncio.to_thread(stack.start, "communication")
    await console.wait_connection("connected", timeout=60)
    await console.wait_status(task, "succeeded")
    await console.card(task).locator("[data-object]").first.wait_for()
    assert [r for r in timeline.requests(restarted) if is_task_read(*r)] == []
    assert await page.evaluate("window.__console.lastSeq") > seq_before


TOKEN_TTL = 20


async def test_console_renews_its_token_before_communication_closes_the_socket(
    browser: Browser, stack: LocalStack, worker_env: dict[str, str], echo_worker: Launcher, alice: Api
) -> None:
    # A main beside the stack's whose websocket tokens live 20 s; the console renews 15 s before expiry.
    main = MainProcess(worker_env, stack.state_dir / "main-short-tokens.log", REALTIME_TOKEN_TTL_SECONDS=str(TOKEN_TTL))
    try:
        await main.wait_ready()
        async with open_console(browser, stack, main.url, "token-renewal") as console:
            page, timeline = console.page, console.timeline
            # A task that runs while the token is renewed: its events come over both sockets.
            during = (await alice.create("echo", {"message": "across a renewal", "delay_seconds": TOKEN_TTL})).json()
            await console.sign_in(USERS["alice"])
            first = await page.evaluate("window.__console.socket.url")
            signed_in = time.monotonic()

            async def renewed_past_expiry() -> bool:
                tokens = timeline.requests().count(("POST", "/api/realtime/token"))
                return tokens >= 3 and time.monotonic() > signed_in + TOKEN_TTL + 2

            await wait_for(renewed_past_expiry, 3 * TOKEN_TTL, "two renewals and the first token's expiry")
            renewed = await page.evaluate("window.__console.socket.url")
            assert renewed != first
            # The renewed socket resumed from the last event the previous one delivered.
            assert "since=" in renewed
            # Live all along: never reconnecting, and no task list re-read for a renewal.
            assert set(await page.evaluate("window.__console.connectionLog")) == {"connecting", "connected"}
            assert [r for r in timeline.requests() if is_task_read(*r)] == [("GET", "/api/tasks?limit=50")]
            await console.wait_status(during["id"], "succeeded")
            # Events still come over the renewed socket.
            task = (await alice.create("echo", {"message": "after a renewal"})).json()["id"]
            await console.wait_status(task, "succeeded")
    finally:
        main.kill()
