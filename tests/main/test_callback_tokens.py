"""The callback token: derived from the task id under main's key, bound to that task, and accepted under the
previous key while the key is rotated (then no longer)."""

from __future__ import annotations

from services.main.callback_tokens import accepts, callback_token
from services.shared.settings import TokenPair

OLD, NEW = "callback-key-old-0123456789abcdef0123", "callback-key-new-0123456789abcdef0123"


def test_a_token_belongs_to_one_task_under_one_key() -> None:
    token = callback_token(NEW, "task-1")
    assert token == callback_token(NEW, "task-1")
    assert len(token) == 43 and "=" not in token  # the whole SHA-256, URL-safe
    keys = TokenPair(NEW)
    assert accepts(keys, "task-1", token)
    assert not accepts(keys, "task-2", token)
    assert not accepts(keys, "task-1", token[:-1])
    assert not accepts(keys, "task-1", callback_token(OLD, "task-1"))
    assert not accepts(keys, "task-1", "ä" + token[1:])


def test_rotation_accepts_the_previous_keys_tokens_until_it_is_retired() -> None:
    issued = callback_token(OLD, "task-1")
    assert accepts(TokenPair(NEW, previous=OLD), "task-1", issued)
    assert accepts(TokenPair(NEW, previous=OLD), "task-1", callback_token(NEW, "task-1"))
    assert not accepts(TokenPair(NEW), "task-1", issued)
