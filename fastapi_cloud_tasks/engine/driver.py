"""What a driver (the pytest harness, the emulator's dispatcher) needs of an engine: when work
is next due, the attempt due now, and a place to report how it went. Both engines are one."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from fastapi_cloud_tasks.engine.cloud_tasks import Outcome

__all__ = ["Attempt", "Source"]


class Attempt(Protocol):
    """One attempt to send, as `take_due` returns it (`Dispatch`, `JobDispatch`).

    A `JobPublish` (a Pub/Sub target job's run) is one too, its HTTP form Pub/Sub's REST
    publish call; a driver tells it by its type and publishes its message instead (the harness
    captures it, the emulator sends it to a Pub/Sub emulator or keeps it), then reports
    `finish(publish, 200)` if published, `finish(publish, None)` if not."""

    @property
    def method(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def headers(self) -> dict[str, str]: ...
    @property
    def body(self) -> bytes: ...
    @property
    def deadline(self) -> timedelta: ...  # the request's timeout (dispatch/attempt deadline)
    @property
    def schedule_time(self) -> datetime: ...
    @property
    def dispatch_time(self) -> datetime: ...


D = TypeVar("D", bound=Attempt)


class Source(Protocol[D]):
    """An engine seen by its driver: `CloudTasksEngine` is a `Source[Dispatch]`,
    `CloudSchedulerEngine` a `Source[JobDispatch]`."""

    def next_due_time(self) -> datetime | None:
        """When the next attempt may start; None if nothing can run."""
        ...

    def take_due(self) -> D | None:
        """Start the attempt due now, if any (None: nothing is due yet)."""
        ...

    def finish(self, dispatch: D, status: int | None,
               retry_after: timedelta | None = None) -> Outcome:
        """Report `dispatch`'s HTTP status (None: no response before its deadline)."""
        ...
