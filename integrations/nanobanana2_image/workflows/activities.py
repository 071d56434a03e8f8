from __future__ import annotations

from datetime import timedelta

from temporalio import activity

from services.shared.activity_kit import ActivityKit

from ..schemas import GENERATE_ACTIVITY, GeneratedImage, GenerateInput, Usage
from .provider import GeminiClient, png_dimensions

# Google's own retryDelay is honoured, but never beyond the workflow's longest backoff.
MAX_RETRY_DELAY = timedelta(seconds=60)


class ImageActivities:
    def __init__(self, kit: ActivityKit, gemini: GeminiClient) -> None:
        self._kit = kit
        self._gemini = gemini

    @activity.defn(name=GENERATE_ACTIVITY)
    async def generate(self, input: GenerateInput) -> GeneratedImage:
        """Report running, call generateContent, put the image into object storage; where it is (never the
        bytes)."""
        async with self._kit.running(input.task):
            content = await self._kit.call(self._gemini.generate(input.job), MAX_RETRY_DELAY)
            image = await self._kit.put(input.task, "image", "png", content.image, content.mime_type)
        width, height = png_dimensions(content.image) or (None, None)
        return GeneratedImage(
            image=image,
            width=width,
            height=height,
            model_version=content.model_version,
            text=content.text,
            usage=Usage(content.prompt_tokens, content.output_tokens, content.total_tokens),
        )
