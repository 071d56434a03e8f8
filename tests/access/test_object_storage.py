"""The bucket is private: only presigned URLs read it, each only for its object, its method and its lifetime."""

from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from deploy.local import LocalStack
from services.shared.storage import ObjectStore
from tests.stack import wait_for

pytestmark = pytest.mark.integration

LIFETIME = 3


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


@pytest.fixture
async def stored(objects: ObjectStore) -> str:
    key = f"access-test/{uuid.uuid4()}.txt"
    await objects.put_bytes(key, b"private", "text/plain")
    return key


async def test_presigned_url_is_refused_after_it_expires(objects: ObjectStore, stored: str) -> None:
    url = objects.presigned_get(stored, LIFETIME)
    signed_at = time.time()
    async with httpx.AsyncClient() as anonymous:
        fresh = await anonymous.get(url)
        assert (fresh.status_code, fresh.content) == (200, b"private")

        async def refused() -> httpx.Response | None:
            response = await anonymous.get(url)
            return response if response.status_code != 200 else None

        answer = await wait_for(refused, LIFETIME + 15, "the presigned URL to expire", interval=0.2)
    # Refused because it expired, and not before: S3 counts from the signing second.
    assert time.time() >= signed_at + LIFETIME - 1
    assert answer.status_code == 403, answer.text
    assert "<Code>AccessDenied</Code>" in answer.text
    assert "expired" in answer.text.lower()


async def test_a_presigned_url_reads_only_its_object_with_its_method(
    stack: LocalStack, objects: ObjectStore, stored: str
) -> None:
    other = f"access-test/{uuid.uuid4()}.txt"
    await objects.put_bytes(other, b"other", "text/plain")
    url = objects.presigned_get(stored, 600)
    bucket = objects.bucket
    # The same credential scope, another access key.
    _, scope = dict(parse_qsl(urlsplit(url).query))["X-Amz-Credential"].split("/", 1)
    credential = f"AKIANOBODY0000000000/{scope}"
    async with httpx.AsyncClient() as anonymous:
        assert (await anonymous.get(url)).status_code == 200
        attempts = {
            "another key": await anonymous.get(with_path(url, f"/{bucket}/{other}")),
            "a longer life": await anonymous.get(with_query(url, **{"X-Amz-Expires": "604800"})),
            "a changed signature": await anonymous.get(with_query(url, **{"X-Amz-Signature": "0" * 64})),
            "another access key": await anonymous.get(with_query(url, **{"X-Amz-Credential": credential})),
            "a PUT": await anonymous.put(url, content=b"overwritten"),
            "a DELETE": await anonymous.delete(url),
            "the bucket listing": await anonymous.get(with_path(url, f"/{bucket}")),
        }
    assert {what: r.status_code for what, r in attempts.items()} == {what: 403 for what in attempts}
    assert await objects.get_bytes(stored) == b"private"
    assert await objects.exists(stored)


async def test_the_bucket_refuses_anonymous_requests(stack: LocalStack, objects: ObjectStore, stored: str) -> None:
    base = f"http://{stack.s3_endpoint}"
    bucket = objects.bucket
    async with httpx.AsyncClient(base_url=base) as anonymous:
        attempts = {
            "object": await anonymous.get(f"/{bucket}/{stored}"),
            "object head": await anonymous.head(f"/{bucket}/{stored}"),
            "bucket listing": await anonymous.get(f"/{bucket}"),
            "bucket listing v2": await anonymous.get(f"/{bucket}", params={"list-type": "2", "prefix": "tasks/"}),
            "bucket policy": await anonymous.get(f"/{bucket}", params={"policy": ""}),
            "all buckets": await anonymous.get("/"),
            "upload": await anonymous.put(f"/{bucket}/access-test/anonymous.txt", content=b"x"),
            "delete": await anonymous.delete(f"/{bucket}/{stored}"),
        }
    assert {what: r.status_code for what, r in attempts.items()} == {what: 403 for what in attempts}
    assert all("AccessDenied" in r.text for what, r in attempts.items() if what != "object head")
    assert await objects.get_bytes(stored) == b"private"
    assert not await objects.exists("access-test/anonymous.txt")
