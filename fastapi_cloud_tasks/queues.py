"""Resource paths, and creating a queue once before the first task goes to it."""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Any

from google.api_core import exceptions
from google.cloud import tasks_v2

__all__ = ["ensure_queue", "ensure_queue_async", "location_path", "queue_path"]


def queue_path(project: str, location: str, queue: str) -> str:
    """`projects/{project}/locations/{location}/queues/{queue}`."""
    return tasks_v2.CloudTasksClient.queue_path(project, location, queue)


def location_path(project: str, location: str) -> str:
    """`projects/{project}/locations/{location}`: the parent of queues and scheduler jobs."""
    return f"projects/{project}/locations/{location}"


def _new_queue_request(path: str) -> tasks_v2.CreateQueueRequest:
    parent = path.rsplit("/queues/", 1)[0]
    return tasks_v2.CreateQueueRequest(parent=parent, queue=tasks_v2.Queue(name=path))


def ensure_queue(client: tasks_v2.CloudTasksClient, path: str, timeout: float = 10.0) -> None:
    """Create the queue at `path` with Cloud Tasks' defaults unless it exists already.

    Any error other than AlreadyExists (a missing permission, say) is raised.
    """
    with contextlib.suppress(exceptions.AlreadyExists):
        client.create_queue(request=_new_queue_request(path), timeout=timeout)


async def ensure_queue_async(
    client: tasks_v2.CloudTasksAsyncClient, path: str, timeout: float = 10.0
) -> None:
    """`ensure_queue` through an asyncio client."""
    with contextlib.suppress(exceptions.AlreadyExists):
        await client.create_queue(request=_new_queue_request(path), timeout=timeout)


class EnsuredQueues:
    """Remembers, per client object, which queues exist already, so each is created once."""

    def __init__(self) -> None:
        self._seen: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def known(self, client: Any, path: str) -> bool:
        with self._lock:
            return path in self._seen.get(client, ())

    def add(self, client: Any, path: str) -> None:
        with self._lock:
            self._seen.setdefault(client, set()).add(path)


ensured_queues = EnsuredQueues()
