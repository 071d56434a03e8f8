"""Short-lived tokens that main issues and communication verifies, so a websocket is tied to one user.

Format: ``<base64url(payload JSON)>.<base64url(HMAC-SHA256(secret, payload))>`` with payload
``{"sub": user, "exp": unix_seconds, "nonce": ...}``. Both services share ``REALTIME_SECRET``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

import msgspec


class TokenError(Exception):
    """The token is malformed, forged or expired; the message says which."""


class TokenClaims(msgspec.Struct, frozen=True):
    sub: str
    exp: int
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(secret: str, user: str, ttl_seconds: int, now: float | None = None) -> tuple[str, int]:
    """Returns the token and its expiry (unix seconds)."""
    exp = int((time.time() if now is None else now) + ttl_seconds)
    payload = msgspec.json.encode(TokenClaims(sub=user, exp=exp, nonce=secrets.token_hex(8)))
    signature = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(signature)}", exp


def verify(secret: str, token: str, now: float | None = None) -> TokenClaims:
    try:
        payload_part, signature_part = token.split(".")
        payload, signature = _unb64(payload_part), _unb64(signature_part)
    except ValueError as exc:
        raise TokenError("malformed token") from exc
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise TokenError("invalid token signature")
    try:
        claims = msgspec.json.decode(payload, type=TokenClaims)
    except msgspec.DecodeError as exc:
        raise TokenError("malformed token payload") from exc
    if claims.exp <= (time.time() if now is None else now):
        raise TokenError("token expired")
    return claims


def user_channel(user: str) -> str:
    return f"user:{user}"
