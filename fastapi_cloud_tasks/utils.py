"""Helpers kept at the import path the 0.1 releases used."""

from __future__ import annotations

from fastapi_cloud_tasks.clients import (
    emulator_async_client,
    emulator_client,
    emulator_scheduler_async_client,
    emulator_scheduler_client,
)
from fastapi_cloud_tasks.queues import ensure_queue, ensure_queue_async, location_path, queue_path

__all__ = [
    "emulator_async_client",
    "emulator_client",
    "emulator_scheduler_async_client",
    "emulator_scheduler_client",
    "ensure_queue",
    "ensure_queue_async",
    "location_path",
    "queue_path",
]
