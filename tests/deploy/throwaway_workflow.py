"""A throwaway workflow and activity, used to prove a Temporal server started by the deploy tool really runs
workflows. Kept in its own module so the workflow sandbox re-imports nothing but this."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    import msgspec


class Greeting(msgspec.Struct, frozen=True):
    name: str
    times: int


@activity.defn
async def compose_greeting(greeting: Greeting) -> str:
    return " ".join([f"hello {greeting.name}"] * greeting.times)


@workflow.defn
class GreetingWorkflow:
    @workflow.run
    async def run(self, greeting: Greeting) -> str:
        return await workflow.execute_activity(compose_greeting, greeting, start_to_close_timeout=timedelta(seconds=30))
