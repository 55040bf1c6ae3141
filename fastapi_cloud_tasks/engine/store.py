"""Where the engines keep their state besides memory: nowhere (`NO_STORE`, the default), or a
store the emulator opens on `--data-dir` (emulator/persistence.py).

The engines call a store at every change worth keeping, while they hold their lock, so what is
stored is always what an RPC has answered: queues (with their state and settings), pending tasks
with their schedule time and counters, reserved task names with their expiry, names of deleted
queues, and jobs. What an engine derives (token buckets, cron iterators, a job's next run) is
rebuilt on load; an attempt in flight is not recorded, so after a crash it is made again, as
Cloud Tasks itself may deliver twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from google.cloud import scheduler_v1, tasks_v2

    from fastapi_cloud_tasks.engine.cloud_tasks import TaskRecord

__all__ = ["NO_STORE", "NoStore", "Store", "TasksState"]


@dataclass
class TasksState:
    """What a store holds for a Cloud Tasks engine, as loaded at start."""

    queues: list[tasks_v2.Queue] = field(default_factory=list)
    deleted_queues: list[str] = field(default_factory=list)
    tasks: list[TaskRecord] = field(default_factory=list)  # not in flight, counters as stored
    reserved: dict[str, datetime] = field(default_factory=dict)  # task name -> reserved until


class Store(Protocol):
    def atomic(self) -> contextlib.AbstractContextManager[None]:
        """Group the changes made inside into one transaction (nested: the outermost)."""
        ...

    def put_queue(self, queue: tasks_v2.Queue) -> None: ...

    def delete_queue(self, name: str) -> None:
        """The queue, its tasks, and its name kept refused for re-creation."""
        ...

    def put_task(self, record: TaskRecord) -> None: ...

    def delete_task(self, name: str, reserved_until: datetime) -> None: ...

    def put_job(self, seq: int, job: scheduler_v1.Job) -> None: ...

    def delete_job(self, name: str) -> None: ...

    def load_tasks(self, now: datetime) -> TasksState:
        """Everything stored for Cloud Tasks; names reserved until `now` or earlier are gone."""
        ...

    def load_jobs(self) -> Iterable[tuple[int, scheduler_v1.Job]]:
        """Every stored job with its creation order."""
        ...

    def close(self) -> None: ...


_UNGROUPED = contextlib.nullcontext()


class NoStore:
    """Memory only: every call does nothing, at the cost of a method call."""

    def atomic(self) -> contextlib.AbstractContextManager[None]:
        return _UNGROUPED

    def put_queue(self, queue: tasks_v2.Queue) -> None:
        pass

    def delete_queue(self, name: str) -> None:
        pass

    def put_task(self, record: TaskRecord) -> None:
        pass

    def delete_task(self, name: str, reserved_until: datetime) -> None:
        pass

    def put_job(self, seq: int, job: scheduler_v1.Job) -> None:
        pass

    def delete_job(self, name: str) -> None:
        pass

    def load_tasks(self, now: datetime) -> TasksState:
        return TasksState()

    def load_jobs(self) -> Iterable[tuple[int, scheduler_v1.Job]]:
        return ()

    def close(self) -> None:
        pass


NO_STORE = NoStore()
