from __future__ import annotations

from datetime import timedelta

from services.main.kit import sync_call_api

from .workflows import Request, StalledWorkflow

EXECUTION_TIMEOUT = timedelta(seconds=20)

api = sync_call_api(Request, StalledWorkflow.run, execution_timeout=EXECUTION_TIMEOUT)
