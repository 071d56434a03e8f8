"""The providers misbehave: bursts of 429 and 503, a request that hangs past the activity's timeout, malformed
JSON, a provider that never recovers, a job that fails on the provider's side. Transient faults are retried to
success; the rest fail the task once, with the provider's reason and no objects."""

from __future__ import annotations

import pytest

from .harness import IMAGE, VIDEO, Job, Platform, Simulator, image, video

pytestmark = [pytest.mark.integration, pytest.mark.faults]


async def test_provider_faults(scenario: Platform, sim: Simulator) -> None:
    # (job, provider attempts it takes: Gemini generateContent calls or Ark creates with its exact prompt)
    plan: list[tuple[Job, int]] = [
        (image("alice", "a 429 burst [sim:429x3]"), 4),
        (image("bob", "a 503 burst [sim:503x2]"), 3),
        (image("alice", "cut-off JSON [sim:malformedx2]"), 3),
        # GEMINI_TIMEOUT_SECONDS (8 s here) bounds the call inside the activity's 10 minutes.
        (image("bob", "a hung call [sim:hangx1]"), 2),
        (image("alice", "an outage [sim:503]", expect="failed", error_code="provider_unavailable"), 5),
        (video("bob", "a 429 burst on submit [sim:429x3]"), 4),
        (video("alice", "a 503 burst on submit [sim:503x2]"), 3),
        # An answer that cannot be read may hide a created job: never resubmitted, so never paid for twice.
        (video("bob", "cut-off JSON on submit [sim:malformed]", expect="failed", error_code="ark_submit_uncertain"), 1),
        (video("alice", "polled through 429 and 503"), 1),
        (video("bob", "polled through cut-off JSON", last_frame=True), 1),
        # Holds one query past the query activity's 20 s start-to-close timeout: Temporal retries it.
        (video("alice", "a poll that hangs"), 1),
        (
            video(
                "bob", "rejected by Ark [sim:fail]", expect="failed", error_code="OutputVideoSensitiveContentDetected"
            ),
            1,
        ),
    ]
    jobs = [job for job, _ in plan]
    by_name = {job.prompt.split(" (")[0]: job for job in jobs}

    def on_query(name: str, kind: str, count: int = 1) -> dict[str, object]:
        # Queued faults for Ark's GET of the task created with that job's prompt.
        return {"provider": "ark", "route": "get_task", "kind": kind, "count": count, "match": by_name[name].prompt}

    await sim.queue_faults(
        on_query("polled through 429 and 503", "429", 3),
        on_query("polled through 429 and 503", "503", 2),
        on_query("polled through cut-off JSON", "malformed_json", 2),
        on_query("a poll that hangs", "hang"),
    )
    tasks = await scenario.create(jobs)
    await scenario.check(tasks, timeout=180)

    provider = {IMAGE: "gemini", VIDEO: "ark"}
    attempts = {job.prompt: await sim.attempts(provider[job.integration], job.prompt) for job in jobs}
    assert attempts == {job.prompt: expected for job, expected in plan}
    stats = await sim.stats()
    assert stats["pending_faults"] == [], stats["pending_faults"]
    queries = stats["responses"]["ark"]["get_task"]
    assert {"200", "429", "503"} <= set(queries), queries
    scenario.mark(f"Ark task queries answered: {queries}")
