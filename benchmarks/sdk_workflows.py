"""The hand-written Temporal baseline: what a user writes with the SDK alone for the platform's echo and image jobs,
one workflow and one activity each, with the SDK's defaults (data converter, sandbox). Sandbox-safe: only
temporalio and the standard library are imported here; the activities are in ``sdk_activities.py``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow

STORE_TEXT = "sdk.store_text"
GENERATE_IMAGE = "sdk.generate_image"
TIMEOUT = timedelta(minutes=5)


@dataclass
class TextJob:
    job_id: str
    text: str


@dataclass
class ImageJob:
    job_id: str
    prompt: str


@workflow.defn(name="SdkEchoWorkflow")
class SdkEchoWorkflow:
    @workflow.run
    async def run(self, job: TextJob) -> str:
        key: str = await workflow.execute_activity(STORE_TEXT, job, result_type=str, start_to_close_timeout=TIMEOUT)
        return key


@workflow.defn(name="SdkImageWorkflow")
class SdkImageWorkflow:
    @workflow.run
    async def run(self, job: ImageJob) -> str:
        key: str = await workflow.execute_activity(GENERATE_IMAGE, job, result_type=str, start_to_close_timeout=TIMEOUT)
        return key
