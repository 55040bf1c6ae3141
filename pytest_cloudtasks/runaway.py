"""Bounding the drain where it can run away, and only there.

`advance()` is bounded by its window: an every-minute job advanced two days runs 2,880 times,
as it would on Google. What can run away is work that never lets the clock move (a task that
enqueues itself with no delay, a retry storm at one instant) and a drain with no end
(`run_until_empty()` while a job is enabled, or a task chain that never stops). Both stop after
`max_deliveries`, naming the task or job that ran most.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from pytest_cloudtasks.captured import CapturedJob
from pytest_cloudtasks.errors import PytestCloudTasksError

__all__ = ["RunawayError", "RunawayGuard"]


class RunawayError(PytestCloudTasksError, RuntimeError):
    """Raised by a drain that delivered `max_deliveries` times without the clock moving, or
    by `run_until_empty()` after `max_deliveries` deliveries."""


class RunawayGuard:
    """One drain's counters, checked before each delivery."""

    def __init__(self, limit: int, *, endless: bool) -> None:
        self.limit = limit
        self.endless = endless  # no window: run_until_empty()
        self._still = 0  # deliveries in a row without the drain moving the clock

    def check(self, done: Sequence[Any], *, moved: bool) -> None:
        """Before the next delivery: `done` are this drain's attempts so far, `moved` says
        whether the drain moves the clock forward to reach the next one."""
        __tracebackhide__ = True
        self._still = 0 if moved else self._still + 1
        if self._still > self.limit:
            recent = done[-self.limit:]
            raise RunawayError(
                f"stopped after {self.limit} deliveries in a row without the clock moving "
                f"(at {recent[-1].dispatch_time.isoformat()}): {_culprit(recent)} keeps "
                "enqueueing itself with no delay, or fails with no backoff? Raise the limit "
                "with @pytest.mark.cloudtasks(max_deliveries=...) if this is expected."
            )
        if self.endless and len(done) >= self.limit:
            raise RunawayError(
                f"run_until_empty() stopped after {len(done)} deliveries, {_culprit(done)}: "
                "a task chain that never ends, or an enabled job (its occurrences never run "
                "out), has no empty end. Use advance(...) to run what is due up to a time, or "
                "raise the limit with @pytest.mark.cloudtasks(max_deliveries=...)."
            )


def _culprit(attempts: Sequence[Any]) -> str:
    """The task (by endpoint or URL) or job with the most attempts, and how many."""
    counts = Counter(_key(attempt.task) for attempt in attempts)
    key, count = counts.most_common(1)[0]
    last = next(a.task for a in reversed(attempts) if _key(a.task) == key)
    return f"{last.describe()} ({count} of them)"


def _key(task: Any) -> str:
    if isinstance(task, CapturedJob):
        return f"job {task.short_name}"
    endpoint = task.endpoint
    if endpoint is not None:
        return f"{endpoint.__module__}.{endpoint.__qualname__}"
    return f"{task.method} {task.url.split('?', 1)[0]}"
