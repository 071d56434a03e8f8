"""``python -m deploy.create_bucket``: the one-shot compose service that creates the results bucket.

Reads the S3 settings every service reads (S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_BUCKET, S3_SECURE),
waits for the server to answer, creates the bucket if it is missing and exits 0.
"""

from __future__ import annotations

import sys
import time

from services.shared.settings import Env, SettingsError, StorageSettings

from .probe import s3_client


def ensure_bucket(settings: StorageSettings, timeout: float = 60.0) -> bool:
    """Create the bucket unless it exists; returns True when it was created. Retries until ``timeout``."""
    client = s3_client(
        settings.endpoint, settings.access_key, settings.secret_key, secure=settings.secure, region=settings.region
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.bucket_exists(settings.bucket):
                return False
            client.make_bucket(settings.bucket)
            return True
        except Exception:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def main() -> int:
    try:
        settings = StorageSettings.from_env(Env())
    except SettingsError as exc:
        print(f"create_bucket: {exc}", file=sys.stderr)
        return 2
    try:
        created = ensure_bucket(settings)
    except Exception as exc:
        print(f"create_bucket: cannot create bucket {settings.bucket} at {settings.endpoint}: {exc}", file=sys.stderr)
        return 1
    print(f"bucket {settings.bucket} {'created' if created else 'already exists'} at {settings.endpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
