"""What the hand-written baselines (``sdk_*.py``: one Temporal workflow and activity; ``celery_app.py``: one
Celery task) share, written the way a team without the platform would: the provider's documented HTTP call with
a plain JSON body, the image taken from the answer, one object stored in the S3 server with the ``minio`` client.
Settings come from the environment the benchmark's stack gives every process (``PROVIDER_SIMULATOR_URL`` is the
simulator). Not imported by workflow code."""

from __future__ import annotations

import base64
import io
import json
import os
from dataclasses import dataclass

from minio import Minio

MODEL = "gemini-3.1-flash-image-preview"
# The key the simulator accepts (services/simulator/README.md).
SIMULATOR_KEY = "sim-gemini-key"
# How long one generateContent call may take before the attempt fails.
PROVIDER_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True)
class Settings:
    generate_url: str
    api_key: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    bucket: str

    @classmethod
    def from_env(cls) -> Settings:
        base = os.environ["PROVIDER_SIMULATOR_URL"].rstrip("/")
        return cls(
            generate_url=f"{base}/v1beta/models/{MODEL}:generateContent",
            api_key=SIMULATOR_KEY,
            s3_endpoint=os.environ["S3_ENDPOINT"],
            s3_access_key=os.environ["S3_ACCESS_KEY"],
            s3_secret_key=os.environ["S3_SECRET_KEY"],
            bucket=os.environ["S3_BUCKET"],
        )

    def headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self.api_key, "Content-Type": "application/json"}

    def s3(self) -> Minio:
        return Minio(self.s3_endpoint, access_key=self.s3_access_key, secret_key=self.s3_secret_key, secure=False)


def generate_body(prompt: str) -> bytes:
    return json.dumps(
        {
            "contents": [{"role": "user", "parts": [{"text": prompt}]}],
            "generationConfig": {
                "responseModalities": ["TEXT", "IMAGE"],
                "imageConfig": {"aspectRatio": "1:1", "imageSize": "1K"},
            },
        }
    ).encode()


def image_of(answer: bytes) -> bytes:
    """The PNG in a generateContent answer; raises on an answer without one."""
    parts = json.loads(answer)["candidates"][0]["content"]["parts"]
    data = next(part["inlineData"]["data"] for part in parts if "inlineData" in part)
    return base64.b64decode(data)


def put(client: Minio, bucket: str, key: str, data: bytes, content_type: str) -> None:
    client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)
