"""Headless Chromium (Debian's package, driven by Playwright) against main's console on the test stack."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Request, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from deploy.local import LocalStack
from tests.stack import REPO, Launcher, wait_for

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_INSTALLED = CHROMIUM.exists()
# Without the background-networking flags Chromium keeps dialling Google's hosts, which a closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts" / "console"

# Reports every status the page shows for a task card, in the order the DOM changes.
STATUS_OBSERVER = """
(() => {
  const seen = new Map();
  const report = (card) => {
    const id = card.dataset.taskId, status = card.dataset.status;
    if (!id || !status || seen.get(id) === status) return;
    seen.set(id, status);
    window.__statusShown(id, status);
  };
  const observer = new MutationObserver((records) => {
    for (const record of records) {
      if (record.type === "attributes") report(record.target);
      for (const node of record.addedNodes || []) {
        if (node.nodeType === 1 && node.matches("li[data-task-id]")) report(node);
      }
    }
  });
  const start = () => observer.observe(document.body, {
    subtree: true, childList: true, attributes: true, attributeFilter: ["data-status"],
  });
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
})();
"""


@dataclass
class Timeline:
    """What the page did, in order: HTTP requests to main and task statuses shown in the DOM."""

    main_origin: str
    entries: list[tuple[str, str, str]] = field(default_factory=list)

    def on_request(self, request: Request) -> None:
        if request.url.startswith(self.main_origin):
            self.entries.append(("request", request.method, request.url[len(self.main_origin) :]))

    def on_status(self, task_id: str, status: str) -> None:
        self.entries.append(("status", task_id, status))

    def mark(self) -> int:
        return len(self.entries)

    def requests(self, since: int = 0, until: int | None = None) -> list[tuple[str, str]]:
        return [(method, path) for kind, method, path in self.entries[since:until] if kind == "request"]

    def index_of(self, task_id: str, status: str) -> int:
        for i, entry in enumerate(self.entries):
            if entry == ("status", task_id, status):
                return i
        raise AssertionError(f"the page never showed task {task_id} as {status}: {self.entries}")

    def statuses(self, task_id: str) -> list[str]:
        return [status for kind, tid, status in self.entries if kind == "status" and tid == task_id]


def is_task_read(method: str, path: str) -> bool:
    """GET /api/tasks (the list) or GET /api/tasks/{id}: what a polling client would send."""
    return method == "GET" and re.match(r"^/api/tasks(?:[/?]|$)", path) is not None


@dataclass
class Console:
    page: Page
    timeline: Timeline
    stack: LocalStack
    # The main that serves the page: the stack's, or another one beside it.
    main_url: str

    async def sign_in(self, key: str) -> None:
        await self.page.goto(f"{self.main_url}/console")
        await self.page.get_by_label("API key").fill(key)
        # Signed in means connected and synced: the page reads the list once the socket says "connected".
        async with self.page.expect_response(lambda r: "/api/tasks?" in r.url) as synced:
            await self.page.get_by_role("button", name="Sign in").click()
        assert (await synced.value).status == 200
        await self.wait_connection("connected")

    async def wait_connection(self, state: str, timeout: float = 30) -> None:
        await self.page.wait_for_selector(f'#connection[data-state="{state}"]', timeout=timeout * 1000)

    def card(self, task_id: str) -> Any:
        return self.page.locator(f'li[data-task-id="{task_id}"]')

    async def wait_status(self, task_id: str, status: str, timeout: float = 60) -> None:
        try:
            await self.page.wait_for_selector(
                f'li[data-task-id="{task_id}"][data-status="{status}"]', state="attached", timeout=timeout * 1000
            )
        except PlaywrightTimeoutError:
            shown = self.timeline.statuses(task_id)
            raise AssertionError(f"task {task_id} not shown as {status} within {timeout}s; shown: {shown}") from None

    async def wait_shown(self, task_id: str, status: str, timeout: float = 60) -> None:
        """Until the page has shown ``task_id`` as ``status`` at some point (it may have moved on since)."""

        async def shown() -> bool:
            return status in self.timeline.statuses(task_id)

        await wait_for(shown, timeout, f"the page to show task {task_id} as {status}")

    async def submit(self, form_id: str, fields: dict[str, str]) -> str:
        """Fill and submit one of the task forms; the id of the task main created."""
        form = self.page.locator(f"#{form_id}")
        for label, value in fields.items():
            control = form.get_by_label(label, exact=True)
            if await control.evaluate("e => e.tagName") == "SELECT":
                await control.select_option(value)
            else:
                await control.fill(value)
        async with self.page.expect_response(
            lambda r: r.request.method == "POST" and r.url.endswith("/tasks") and "/api/integrations/" in r.url
        ) as created:
            await form.locator("button[type=submit]").click()
        response = await created.value
        assert response.status == 202, await response.text()
        task_id: str = (await response.json())["id"]
        return task_id

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM_INSTALLED:
        message = f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@contextlib.asynccontextmanager
async def open_console(browser: Browser, stack: LocalStack, main_url: str, name: str) -> AsyncIterator[Console]:
    """A fresh page on ``main_url``'s console; a screenshot named ``name`` when it closes."""
    context: BrowserContext = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    timeline = Timeline(main_url)
    page.on("request", timeline.on_request)
    await page.expose_function("__statusShown", timeline.on_status)
    await page.add_init_script(STATUS_OBSERVER)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    console = Console(page, timeline, stack, main_url)
    try:
        yield console
    finally:
        # The last picture of every test, passed or failed, for whoever looks at the run afterwards.
        await console.screenshot(name)
        await context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


@pytest.fixture
async def console(request: pytest.FixtureRequest, browser: Browser, stack: LocalStack) -> AsyncIterator[Console]:
    async with open_console(browser, stack, stack.main_url, request.node.name) as console:
        yield console


# Module scope: other test modules run their own workers on these task queues and must not share them with ours.
@pytest.fixture(scope="module")
async def provider_workers(stack: LocalStack, worker_env: dict[str, str]) -> AsyncIterator[Launcher]:
    """Workers for both provider integrations (talking to the simulator); quick polls keep the video test short."""
    env = {**worker_env, "ARK_POLL_INITIAL_SECONDS": "0.5", "ARK_POLL_MAX_SECONDS": "1"}
    launcher = Launcher(
        env, ["nanobanana2-image", "fangzhouVideoGeneration"], stack.state_dir / "console-provider-workers.log"
    )
    await launcher.wait_serving()
    yield launcher
    launcher.kill()
