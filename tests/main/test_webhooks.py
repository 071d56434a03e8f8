"""Webhook signing checked by an independent implementation of the specification (``standardwebhooks``), the
webhook settings, and the delivery workflow's schedule in Temporal's time-skipping environment."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from services.main.settings import WebhookSettings
from services.main.webhooks.inputs import DELIVER_ACTIVITY, GIVE_UP_ACTIVITY
from services.main.webhooks.signing import new_secret, signed_headers
from services.main.webhooks.starter import delivery_input, execution_timeout
from services.main.webhooks.workflows import WebhookDeliveryWorkflow
from services.shared.outbound import OutboundError
from services.shared.settings import Env, SettingsError
from tests.temporal_env import time_skipping

BODY = b'{"id":"t1","status":"succeeded"}'


def test_a_signature_verifies_with_the_specifications_own_implementation() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    headers = signed_headers([secret], "msg_1", int(time.time()), BODY)
    assert Webhook(secret).verify(BODY, headers, json_parse=False) is None
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY + b" ", headers, json_parse=False)


def test_two_secrets_sign_and_either_verifies() -> None:
    current, previous = new_secret(), new_secret()
    headers = signed_headers([current, previous], "msg_2", int(time.time()), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (current, previous):
        Webhook(secret).verify(BODY, headers, json_parse=False)
    with pytest.raises(ValueError, match="at least one secret"):
        signed_headers([], "msg_3", 0, BODY)


def test_the_default_schedule_tries_for_more_than_a_day_with_bounded_attempts() -> None:
    settings = WebhookSettings()
    waits = settings.retry_waits()
    assert len(waits) == settings.max_attempts - 1 <= 20
    assert timedelta(days=1) < timedelta(seconds=sum(waits)) < timedelta(days=2)
    assert max(waits) == settings.retry_max_seconds
    assert execution_timeout(settings) > timedelta(seconds=sum(waits))


def test_webhook_settings_from_the_environment() -> None:
    settings = WebhookSettings.from_env(
        Env(
            {
                "MAIN_WEBHOOK_ALLOW_HTTP": "true",
                "MAIN_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1:9000",
                "MAIN_WEBHOOK_RETRY_INITIAL_SECONDS": "0.5",
                "MAIN_WEBHOOK_RETRY_MAX_SECONDS": "2",
                "MAIN_WEBHOOK_MAX_ATTEMPTS": "5",
                "MAIN_WEBHOOK_SECRET_OVERLAP_SECONDS": "60",
            }
        )
    )
    assert settings.retry_waits() == [0.5, 1.0, 2.0, 2.0]
    assert settings.secret_overlap_seconds == 60
    settings.outbound.check_destination("http://127.0.0.1:9000/hook")
    with pytest.raises(OutboundError):
        settings.outbound.check_destination("http://127.0.0.1:9001/hook")
    # Unset: https to public addresses, an attempt within 15 s.
    defaults = WebhookSettings.from_env(Env({}))
    assert defaults == WebhookSettings()
    assert (defaults.outbound.allow_http, defaults.outbound.max_fetch_seconds) == (False, 15.0)
    for url in ("http://hooks.example/", "https://10.0.0.1/", "https://169.254.169.254/", "https://localhost/"):
        with pytest.raises(OutboundError):
            defaults.outbound.check_destination(url)
    defaults.outbound.check_destination("https://hooks.example/in")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MAIN_WEBHOOK_RETRY_INITIAL_SECONDS": "0"}, "MAIN_WEBHOOK_RETRY_INITIAL_SECONDS must be positive"),
        ({"MAIN_WEBHOOK_RETRY_BACKOFF": "0.5"}, "MAIN_WEBHOOK_RETRY_BACKOFF must be at least 1"),
        ({"MAIN_WEBHOOK_RETRY_MAX_SECONDS": "1"}, "at least MAIN_WEBHOOK_RETRY_INITIAL_SECONDS"),
        ({"MAIN_WEBHOOK_MAX_ATTEMPTS": "0"}, "MAIN_WEBHOOK_MAX_ATTEMPTS must be at least 1"),
        ({"MAIN_WEBHOOK_MAX_FETCH_SECONDS": "0"}, "MAIN_WEBHOOK_MAX_FETCH_SECONDS must be positive"),
    ],
)
def test_bad_webhook_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        WebhookSettings.from_env(Env(env))


@pytest.mark.parametrize(("failures", "outcome"), [(2, "delivered"), (100, "failed")])
async def test_the_workflow_retries_on_its_schedule_and_gives_up_after_the_last_attempt(
    failures: int, outcome: str
) -> None:
    settings = WebhookSettings(retry_initial_seconds=60, retry_backoff=2, retry_max_seconds=3600, max_attempts=6)
    attempts: list[int] = []
    given_up: list[str] = []

    @activity.defn(name=DELIVER_ACTIVITY)
    async def deliver(delivery_id: str) -> str:
        attempts.append(activity.info().attempt)
        if len(attempts) <= failures:
            raise ApplicationError("HTTP 500")
        return "delivered"

    @activity.defn(name=GIVE_UP_ACTIVITY)
    async def give_up(delivery_id: str) -> None:
        given_up.append(delivery_id)

    environment = await time_skipping()
    queue = str(uuid.uuid4())
    try:
        async with Worker(
            environment.client, task_queue=queue, workflows=[WebhookDeliveryWorkflow], activities=[deliver, give_up]
        ):
            result = await environment.client.execute_workflow(
                WebhookDeliveryWorkflow.run,
                delivery_input("d1", settings),
                id=f"webhook-{queue}",
                task_queue=queue,
                execution_timeout=execution_timeout(settings),
            )
    finally:
        await environment.shutdown()
    assert result == outcome
    assert attempts == list(range(1, min(failures, settings.max_attempts - 1) + 2))
    assert given_up == (["d1"] if outcome == "failed" else [])
