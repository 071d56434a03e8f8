"""The task kit: what an integration's ``api.py`` declares, and the routes main builds from it.

An integration's ``api.py`` defines ``api = IntegrationApi(...)``; main mounts
``POST /api/integrations/<name>/tasks`` (typed input, 202), ``GET /api/integrations/<name>/tasks/{task_id}``
and the integration's own extra routes under the same prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from .store import TaskRecord

RequestT = TypeVar("RequestT")


class InputError(Exception):
    """Raised by an integration's ``check`` for invalid combinations of otherwise valid fields; becomes 422."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class StartContext:
    """What main knows when it starts a task's workflow, beyond the task itself."""

    # Where the provider may call back for this task (secret included); None unless the integration asks.
    callback_url: str | None


@dataclass(frozen=True)
class IntegrationApi(Generic[RequestT]):
    request_type: type[RequestT]
    # The workflow's run method (or its registered name) started for every new task.
    workflow: Callable[..., Any] | str
    # Builds the workflow's single input from the stored task, the validated request and the start context.
    build_input: Callable[[TaskRecord, RequestT, StartContext], Any]
    check: Callable[[RequestT], None] | None = None
    # Extra Litestar route handlers mounted under /api/integrations/<name>.
    routes: Sequence[Any] = ()
    execution_timeout: timedelta | None = None
    # Whether each task gets a secret and a callback URL,
    # ``{MAIN_PUBLIC_URL}/api/integrations/<name>/tasks/<id>/callback?secret=...``; the route is the integration's.
    callback_secret: bool = False
    summary: str = ""
