"""Webhooks: signed deliveries of a task's changes to the URL its creator gave, each run by a Temporal workflow on the
platform task queue (``services/main/platform_worker.py``)."""
