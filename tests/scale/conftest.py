"""The scale shape as local processes: PostgreSQL, NATS, two main and two communication replicas
(``deploy-tool up --shape scale``)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from deploy.local import LocalStack
from tests.stack import USERS, running_stack


@pytest.fixture(scope="package")
def scale_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    environ = {**os.environ, "API_KEYS": ",".join(f"{key}:{user}" for user, key in USERS.items())}
    with running_stack(tmp_path_factory, "scale", "postgres", environ, shape="scale") as stack:
        yield stack
