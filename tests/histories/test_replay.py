"""Every recorded history (``<integration>/**/*.json``, and ``platform/`` for main's platform worker, from
``./dev record-histories``) replays against today's workflow code: the workflows each integration's ``worker_spec``
registers and main's platform worker serves, the production data converter and the launcher's sandbox. A change
that would break a running workflow at the next deploy fails here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from services.async_task.launcher import WORKFLOW_RUNNER, LauncherSettings, load_spec, make_context
from services.main.webhooks.workflows import WebhookDeliveryWorkflow
from services.shared.converter import data_converter
from services.shared.discovery import discover
from services.shared.settings import Env

from .changed_workflows import EchoWaitsFirst

# main's platform worker's workflows (services/main/app.py), recorded under platform/.
PLATFORM = "platform"
PLATFORM_WORKFLOWS: Sequence[type] = (WebhookDeliveryWorkflow,)

HISTORIES = Path(__file__).resolve().parent
# What every worker reads when it starts; nothing is contacted while replaying.
WORKER_ENV = {
    "DEVELOPMENT_MODE": "true",
    "REPORT_TOKEN": "report-token",
    "S3_ACCESS_KEY": "access",
    "S3_SECRET_KEY": "secret",
    "GEMINI_API_KEY": "replay-key",
    "GEMINI_BASE_URL": "http://127.0.0.1:9",
    "ARK_API_KEY": "replay-key",
    "ARK_BASE_URL": "http://127.0.0.1:9",
    "EXAMPLE_API_KEY": "replay-key",
    "EXAMPLE_BASE_URL": "http://127.0.0.1:9",
}


def recorded() -> list[Path]:
    return sorted(HISTORIES.glob("*/**/*.json"))


def load(file: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"{file.parent.name}/{file.stem}", file.read_text())


@pytest.fixture(scope="module")
async def served() -> AsyncIterator[dict[str, Sequence[type]]]:
    """The workflows of every integration (the blacklisted example too), as the launcher registers them."""
    async with httpx.AsyncClient() as http:
        ctx = make_context(LauncherSettings.from_env(WORKER_ENV), Env(WORKER_ENV), http, 1)
        served = {i.name: load_spec(i, ctx).workflows for i in discover(blacklist=()).integrations}
        yield {**served, PLATFORM: PLATFORM_WORKFLOWS}


def replayer(workflows: Sequence[type]) -> Replayer:
    return Replayer(workflows=workflows, workflow_runner=WORKFLOW_RUNNER, data_converter=data_converter)


def integration_of(file: Path) -> str:
    return file.relative_to(HISTORIES).parts[0]


def test_every_workflow_has_histories(served: dict[str, Sequence[type]]) -> None:
    recorded_for = {integration_of(file) for file in recorded()}
    missing = {name for name in served if name != "example"} - recorded_for
    assert not missing, f"no recorded histories for {sorted(missing)}: run ./dev record-histories"
    assert recorded_for <= set(served), f"histories of unknown integrations: {sorted(recorded_for - set(served))}"


@pytest.mark.parametrize("file", recorded(), ids=lambda file: str(file.relative_to(HISTORIES)))
async def test_history_replays(served: dict[str, Sequence[type]], file: Path) -> None:
    await replayer(served[integration_of(file)]).replay_workflow(load(file))


@pytest.mark.parametrize("file", sorted((HISTORIES / "echo").glob("*.json")), ids=lambda file: file.name)
async def test_a_changed_workflow_fails_to_replay(file: Path) -> None:
    with pytest.raises(NondeterminismError):
        await replayer([EchoWaitsFirst]).replay_workflow(load(file))
