"""A delivery's workflow: the deliver activity under the delivery's retry policy; when every attempt failed, the
delivery is marked failed. 2xx and 410 end the activity without an error (delivered, gone); any other answer or a
failed connection is an error, retried after the next wait of the schedule."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from .inputs import DELIVER_ACTIVITY, GIVE_UP_ACTIVITY, DeliveryInput

# Marking a delivery failed waits for the store as long as it must (within the workflow's execution timeout).
GIVE_UP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=60))


@workflow.defn(name="WebhookDelivery")
class WebhookDeliveryWorkflow:
    @workflow.run
    async def run(self, input: DeliveryInput) -> str:
        try:
            status: str = await workflow.execute_activity(
                DELIVER_ACTIVITY,
                input.delivery_id,
                result_type=str,
                start_to_close_timeout=timedelta(seconds=input.attempt_seconds),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=input.initial_seconds),
                    backoff_coefficient=input.backoff,
                    maximum_interval=timedelta(seconds=input.max_seconds),
                    maximum_attempts=input.max_attempts,
                ),
            )
        except ActivityError:
            await workflow.execute_activity(
                GIVE_UP_ACTIVITY,
                input.delivery_id,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=GIVE_UP_RETRY,
            )
            return "failed"
        return status
