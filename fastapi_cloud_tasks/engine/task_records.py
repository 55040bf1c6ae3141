"""What the Cloud Tasks engine keeps of a queue and a task, and what it hands a driver."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import NamedTuple

from google.cloud import tasks_v2

from fastapi_cloud_tasks.engine.queue_config import TokenBucket

__all__ = ["Dispatch", "DispatchError", "Outcome", "QueueState", "TaskRecord"]


class DispatchError(Exception):
    """Raised by `take_due` when the engine itself failed to build one attempt's request (a
    bug, never the task's fault). That attempt is recorded as failed without a response and
    retried as any other; a driver logs this and goes on taking due work."""


class Outcome(Enum):
    SUCCEEDED = "succeeded"  # 2xx: the task is deleted
    RETRYING = "retrying"  # rescheduled with backoff
    FAILED = "failed"  # retries used up: the task is dropped


@dataclass(eq=False)
class TaskRecord:
    """A pending task and the counters Cloud Tasks keeps for it."""

    task: tasks_v2.Task  # FULL view, output fields kept current
    request: tasks_v2.CreateTaskRequest  # as created
    seq: int
    created: datetime
    name: str
    queue_name: str
    schedule_time: datetime  # mirrors task.schedule_time (read on every dispatch decision)
    dispatch_count: int = 0
    response_count: int = 0
    execution_count: int = 0  # attempts that got a non-5xx response
    previous_response: int | None = None
    first_attempt_time: datetime | None = None
    in_flight: bool = False
    version: int = 0
    retry_config: tasks_v2.RetryConfig | None = None  # the task's own, completed


class Dispatch(NamedTuple):
    """One attempt to send: the HTTP request exactly as Cloud Tasks makes it. (Immutable; a
    NamedTuple, as a frozen dataclass costs a call per field on every attempt.)"""

    record: TaskRecord
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    deadline: timedelta
    schedule_time: datetime
    dispatch_time: datetime


_RUNNING = int(tasks_v2.Queue.State.RUNNING)


class QueueState:
    """A queue as the engine keeps it: its settings, token bucket, pending heap and attempts
    in flight.

    `running` and `can_dispatch()` are read on every create and dispatch, so they read the raw
    protobuf under `queue` (kept with it, and changed in place with it) as plain ints,
    without proto-plus's per-access wrapping and enum comparisons."""

    __slots__ = ("_queue", "_raw", "bucket", "heap", "in_flight")

    def __init__(self, queue: tasks_v2.Queue, bucket: TokenBucket) -> None:
        self.queue = queue
        self.bucket = bucket
        self.heap: list[tuple[datetime, int, int, str]] = []
        self.in_flight = 0

    @property
    def queue(self) -> tasks_v2.Queue:
        return self._queue

    @queue.setter
    def queue(self, queue: tasks_v2.Queue) -> None:
        self._queue = queue
        self._raw = tasks_v2.Queue.pb(queue)

    @property
    def running(self) -> bool:
        return bool(self._raw.state == _RUNNING)

    @property
    def max_concurrent(self) -> int:
        return int(self._raw.rate_limits.max_concurrent_dispatches)

    def can_dispatch(self) -> bool:
        """Running and below its concurrency limit (tokens and due tasks aside)."""
        raw = self._raw
        return bool(raw.state == _RUNNING
                    and self.in_flight < raw.rate_limits.max_concurrent_dispatches)

