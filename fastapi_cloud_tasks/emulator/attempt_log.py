"""The emulator's last attempts, for its dashboard: a bounded ring, fed where each one ends.

It observes the dispatcher's sources instead of the dispatcher: `observe(engine)` is the
engine with `finish` wrapped (its `take_due` and `next_due_time` are the engine's own bound
methods, so the dispatcher's hot path gains no call), and every outcome the engine records is
appended here with what was sent. Attempts that never reached `finish` (a request the engine
could not build) are in the log, not here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from fastapi_cloud_tasks.engine.clock import Clock

__all__ = ["AttemptEntry", "AttemptLog", "RECENT_ATTEMPTS"]

RECENT_ATTEMPTS = 200  # kept in memory: a page a person reads, not a history


class AttemptEntry(NamedTuple):
    """One finished attempt of a task or a job run, as it was sent and answered (a tuple:
    built on every delivery: ~0.2 µs, a frozen dataclass ~0.9 µs)."""

    kind: str  # "task" or "job"
    name: str  # the task's or the job's full name
    dispatch_time: datetime
    duration: timedelta  # from dispatch to the recorded outcome
    method: str
    url: str
    headers: Mapping[str, str]  # as sent (the dispatch's own dict, never changed after)
    status: int | None  # the HTTP status; None: no response within the deadline
    outcome: str  # "succeeded", "retrying", "failed" or "not recorded"
    retry_count: int  # attempts before this one (of the task, or of this run of the job)
    number: int  # 1 for the emulator's first attempt, and so on


class AttemptLog:
    """The last `size` attempts, newest last."""

    def __init__(self, clock: Clock, size: int = RECENT_ATTEMPTS) -> None:
        self.clock = clock
        self.entries: deque[AttemptEntry] = deque(maxlen=size)
        self.count = 0  # attempts seen, those dropped from the ring included

    def observe(self, source: Any) -> Any:
        """`source` (a Cloud Tasks or Cloud Scheduler engine) as the dispatcher needs it,
        its outcomes recorded here."""
        return _Observed(source, self)

    def recent(self) -> list[AttemptEntry]:
        """Newest first."""
        return list(reversed(self.entries))


class _Observed:
    __slots__ = ("_finish", "_kind", "_log", "next_due_time", "take_due")

    def __init__(self, source: Any, log: AttemptLog) -> None:
        self.next_due_time: Callable[[], Any] = source.next_due_time
        self.take_due: Callable[[], Any] = source.take_due
        self._finish: Callable[..., Any] = source.finish
        self._log = log
        self._kind = "job" if hasattr(source, "jobs") else "task"

    def finish(self, dispatch: Any, status: int | None,
               retry_after: timedelta | None = None) -> Any:
        record = dispatch.record
        # Read before `finish` counts this attempt: Cloud Tasks' X-CloudTasks-TaskRetryCount.
        retries = record.dispatch_count if self._kind == "task" else record.attempt_count
        outcome = "not recorded"
        try:
            result = self._finish(dispatch, status, retry_after)
            outcome = result.value
            return result
        finally:
            log = self._log
            log.count += 1
            log.entries.append(AttemptEntry(
                self._kind, record.name, dispatch.dispatch_time,
                log.clock.now() - dispatch.dispatch_time, dispatch.method, dispatch.url,
                dispatch.headers, status, outcome, retries, log.count))
