"""Credentials that travel in URLs (a websocket's ``?token=``, a provider callback's ``?secret=``) never reach main's
log, in any of its worker processes, even with the access log on."""

from __future__ import annotations

import httpx
import pytest

from deploy.local import LocalStack
from tests.stack import USERS, MainProcess, wait_for

pytestmark = pytest.mark.integration


async def test_main_logs_no_token_or_secret_from_a_url(stack: LocalStack, worker_env: dict[str, str]) -> None:
    main = MainProcess(worker_env, stack.state_dir / "main-access-log.log", MAIN_ACCESS_LOG="true", MAIN_WORKERS="2")
    try:
        await main.wait_ready()
        secret, token = "callback-secret-do-not-log", "websocket-token-do-not-log"
        headers = {"Authorization": f"Bearer {USERS['alice']}"}
        async with httpx.AsyncClient(base_url=main.url, headers=headers) as http:
            # Several requests, so that both processes answer some.
            for n in range(8):
                await http.get(f"/api/tasks?token={token}&n={n}")
                await http.post(f"/api/integrations/fangzhouVideoGeneration/tasks/x{n}/callback?secret={secret}")

        async def logged() -> bool:
            return main.process.output().count("token=***") >= 8

        await wait_for(logged, 30, "the access log lines")
        output = main.process.output()
        assert "secret=***" in output
        assert secret not in output and token not in output
    finally:
        main.kill()
