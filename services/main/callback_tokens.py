"""The token in a task's callback URL: an HMAC of the task id under main's ``CALLBACK_KEY``. main stores nothing
secret for a task; it checks a callback by deriving the token again. While the key is rotated, tokens made with
the previous key (``CALLBACK_KEY_PREVIOUS``) are accepted too."""

from __future__ import annotations

import base64
import hashlib
import hmac

from services.shared.settings import TokenPair

# Keeps these MACs apart from any other use of the key.
_PURPOSE = b"task-callback:"


def callback_token(key: str, task_id: str) -> str:
    digest = hmac.new(key.encode(), _PURPOSE + task_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def accepts(keys: TokenPair, task_id: str, presented: str) -> bool:
    """Whether ``presented`` is the task's token under the current or the previous key. Both are always compared,
    so the answer takes as long whichever matches."""
    given = presented.encode()
    current = hmac.compare_digest(given, callback_token(keys.current, task_id).encode())
    previous = keys.previous is not None and hmac.compare_digest(given, callback_token(keys.previous, task_id).encode())
    return current or previous
