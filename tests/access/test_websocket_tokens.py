"""communication's socket admits only tokens main signed and that have not expired, through either way of passing
one (``?token=`` and the ``bearer.<token>`` subprotocol); anything else is closed with 4401 and a reason."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from deploy.local import LocalStack
from services.shared import realtime_token
from tests.stack import Api, wait_for

pytestmark = pytest.mark.integration


def ws_url(stack: LocalStack) -> str:
    return stack.communication_url.replace("http", "ws", 1) + "/ws"


def tampered(token: str, **claims: object) -> str:
    """A genuine token with its claims changed and its signature kept."""
    payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    changed = base64.urlsafe_b64encode(json.dumps({**decoded, **claims}).encode()).rstrip(b"=").decode()
    return f"{changed}.{signature}"


async def open_socket(stack: LocalStack, token: str, how: str) -> ClientConnection:
    if how == "query":
        return await connect(f"{ws_url(stack)}?token={token}")
    return await connect(ws_url(stack), subprotocols=[Subprotocol(f"bearer.{token}")])


async def refused(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


@pytest.mark.parametrize("how", ["query", "subprotocol"])
async def test_bad_tokens_are_closed_with_4401(stack: LocalStack, how: str) -> None:
    secret = stack.secrets.realtime_secret
    genuine, exp = realtime_token.issue(secret, "alice", ttl_seconds=300)
    cases = {
        "forged": (realtime_token.issue("not-the-secret", "alice", 300)[0], "invalid token signature"),
        "expired": (realtime_token.issue(secret, "alice", ttl_seconds=-1)[0], "token expired"),
        "another user, same signature": (tampered(genuine, sub="bob"), "invalid token signature"),
        "longer life, same signature": (tampered(genuine, exp=exp + 3600), "invalid token signature"),
        "no signature": (genuine.split(".")[0], "malformed token"),
        "empty signature": (genuine.split(".")[0] + ".", "invalid token signature"),
        "garbage": ("a.b.c", "malformed token"),
    }
    for what, (token, reason) in cases.items():
        ws = await open_socket(stack, token, how)
        assert await refused(ws) == (4401, reason), what


async def test_a_token_that_expires_is_refused_from_then_on(stack: LocalStack) -> None:
    token, exp = realtime_token.issue(stack.secrets.realtime_secret, "alice", ttl_seconds=2)
    for how in ("query", "subprotocol"):
        ws = await open_socket(stack, token, how)
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert (hello["event"], hello["channel"], hello["expires_at"]) == ("connected", "user:alice", exp)
        await ws.close()

    async def expired() -> bool:
        return time.time() >= exp

    await wait_for(expired, 10, "the token to expire", interval=0.1)
    for how in ("query", "subprotocol"):
        ws = await open_socket(stack, token, how)
        assert await refused(ws) == (4401, "token expired")


async def test_main_issues_tokens_for_the_caller_only(stack: LocalStack, alice: Api) -> None:
    issued = (await alice.http.post("/api/realtime/token", json={"user": "bob", "channel": "user:bob"})).json()
    assert issued["channel"] == "user:alice"
    assert realtime_token.verify(stack.secrets.realtime_secret, issued["token"]).sub == "alice"
    # A subprotocol token is echoed back (browsers need it) and admits the same user.
    ws = await open_socket(stack, issued["token"], "subprotocol")
    assert ws.subprotocol == f"bearer.{issued['token']}"
    hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert hello["channel"] == "user:alice"
    await ws.close()
