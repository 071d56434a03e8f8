"""Object storage (MinIO or any S3 server) for produced files."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Callable
from datetime import timedelta
from typing import IO, BinaryIO, cast

from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.error import S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule
from temporalio import activity

from .settings import StorageSettings

# How often an upload running inside an activity heartbeats.
UPLOAD_HEARTBEAT_SECONDS = 1.0
# What an S3 server without bucket lifecycle configuration answers.
LIFECYCLE_UNSUPPORTED = frozenset({"NotImplemented", "NotSupported"})


class ObjectStore:
    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self._client = Minio(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=settings.secure,
            region=settings.region,
        )
        # Presigned URLs embed the host they were signed for, so they are signed by a client that
        # names the public endpoint; signing is offline and never contacts that host.
        self._signer = Minio(
            settings.public_endpoint or settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=settings.secure,
            region=settings.region,
        )

    async def ensure_bucket(self) -> None:
        def run() -> None:
            if not self._client.bucket_exists(self.bucket):
                self._client.make_bucket(self.bucket)

        await asyncio.to_thread(run)

    async def bucket_reachable(self) -> bool:
        try:
            return await asyncio.to_thread(self._client.bucket_exists, self.bucket)
        except Exception:
            return False

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        await self._upload(
            key,
            lambda: self._client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type),
        )

    async def put_file(self, key: str, file: IO[bytes], length: int, content_type: str) -> None:
        """Upload ``length`` bytes from an open file, read part by part: large objects never sit in memory."""
        data = cast(BinaryIO, file)  # minio reads any binary file object; its stubs name only BinaryIO
        await self._upload(
            key, lambda: self._client.put_object(self.bucket, key, data, length, content_type=content_type)
        )

    async def _upload(self, key: str, run: Callable[[], object]) -> None:
        """Run an upload in a thread. Inside an activity it heartbeats meanwhile, so a cancel reaches a slow upload
        and a long one is not taken for a dead worker. A thread cannot be stopped, so when the caller is cancelled
        the upload is let finish and what it stored is removed: a cancelled upload leaves nothing behind, however
        late the object store answers."""
        upload = asyncio.ensure_future(asyncio.to_thread(run))
        try:
            while not (await asyncio.wait({upload}, timeout=UPLOAD_HEARTBEAT_SECONDS))[0]:
                if activity.in_activity():
                    activity.heartbeat()
            upload.result()
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await upload
                await asyncio.to_thread(self._client.remove_object, self.bucket, key)
            raise

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object under ``prefix``; how many there were."""

        def run() -> int:
            keys = [o.object_name for o in self._client.list_objects(self.bucket, prefix=prefix, recursive=True)]
            for key in keys:
                if key is not None:
                    self._client.remove_object(self.bucket, key)
            return len(keys)

        return await asyncio.to_thread(run)

    async def expire_after(self, rule_id: str, prefix: str, days: int | None) -> bool:
        """Keep the bucket's lifecycle rule ``rule_id``: objects under ``prefix`` expire ``days`` after they were
        written; None removes the rule. The bucket's other rules stay. False when the server keeps no lifecycle
        configuration (it answers that it does not implement it)."""

        def run() -> bool:
            try:
                config = self._client.get_bucket_lifecycle(self.bucket)
                others = [rule for rule in (config.rules if config else []) if rule.rule_id != rule_id]
                ours = [rule for rule in (config.rules if config else []) if rule.rule_id == rule_id]
                current = [
                    (r.rule_filter.prefix if r.rule_filter else None, r.expiration.days if r.expiration else None)
                    for r in ours
                ]
                if current == ([] if days is None else [(prefix, days)]):
                    return True
                if days is not None:
                    rule = Rule(ENABLED, Filter(prefix=prefix), rule_id, expiration=Expiration(days=days))
                    others.append(rule)
                if others:
                    self._client.set_bucket_lifecycle(self.bucket, LifecycleConfig(others))
                else:
                    self._client.delete_bucket_lifecycle(self.bucket)
            except S3Error as exc:
                if exc.code in LIFECYCLE_UNSUPPORTED:
                    return False
                raise
            return True

        return await asyncio.to_thread(run)

    async def get_bytes(self, key: str) -> bytes:
        def run() -> bytes:
            response = self._client.get_object(self.bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return await asyncio.to_thread(run)

    async def exists(self, key: str) -> bool:
        def run() -> bool:
            try:
                self._client.stat_object(self.bucket, key)
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                    return False
                raise
            return True

        return await asyncio.to_thread(run)

    async def list_keys(self, prefix: str) -> list[str]:
        def run() -> list[str]:
            return [o.object_name for o in self._client.list_objects(self.bucket, prefix=prefix, recursive=True)]

        return await asyncio.to_thread(run)

    def presigned_get(self, key: str, expires_seconds: int | None = None) -> str:
        seconds = expires_seconds or self.settings.url_expiry_seconds
        return self._signer.presigned_get_object(self.bucket, key, expires=timedelta(seconds=seconds))
