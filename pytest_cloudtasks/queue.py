"""`cloudtasks_queue`: the test's view of Cloud Tasks — what was enqueued, and time to run it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from google.cloud import tasks_v2

from pytest_cloudtasks.assertions import check_times, listing, task_expectation
from pytest_cloudtasks.captured import CapturedTask
from pytest_cloudtasks.harness import Attempt, Harness

__all__ = ["CloudTasksQueue", "Timeline"]


def delta_of(delta: timedelta | float | None, **units: float) -> timedelta:
    if delta is None:
        delta = timedelta(0)
    elif not isinstance(delta, timedelta):
        delta = timedelta(seconds=delta)
    total = delta + timedelta(**units)
    if total < timedelta(0):
        raise ValueError(f"cannot move the clock backwards ({total!r})")
    return total


class Timeline:
    """The clock both fixtures share: reading it and moving it."""

    def __init__(self, harness: Harness) -> None:
        self._harness = harness

    @property
    def now(self) -> datetime:
        """The virtual time, aware UTC."""
        return self._harness.clock.now()

    def advance(self, delta: timedelta | float | None = None, **units: float) -> list[Attempt]:
        """Move the clock by `delta` (or seconds=, minutes=, hours=, days=) and deliver, in time
        order, everything due up to then."""
        __tracebackhide__ = True
        return self._harness.run(self._harness.after(delta_of(delta, **units)))

    async def aadvance(
        self, delta: timedelta | float | None = None, **units: float
    ) -> list[Attempt]:
        """`advance` on the test's own event loop (async tests)."""
        __tracebackhide__ = True
        return await self._harness.arun(self._harness.after(delta_of(delta, **units)))



class CloudTasksQueue(Timeline):
    """Every Cloud Task the app enqueues during the test, and a virtual clock to run them."""

    # -- what is there ----------------------------------------------------------------------

    @property
    def tasks(self) -> list[CapturedTask]:
        """Pending tasks, in dispatch order."""
        return [CapturedTask(record) for record in self._harness.engine.pending()]

    def __len__(self) -> int:
        return len(self._harness.engine.pending())

    @property
    def created(self) -> list[CapturedTask]:
        """Every task created during the test, run or not, in creation order."""
        return [CapturedTask(record) for record in self._harness.engine.history or ()]

    @property
    def attempts(self) -> list[Attempt]:
        """Every delivery so far, tasks and scheduled jobs, in time order."""
        return list(self._harness.attempts)

    @property
    def client(self) -> tasks_v2.CloudTasksClient:
        """A real `CloudTasksClient` backed by this test's engine."""
        return self._harness.tasks_client

    def route(self, base_url: str, app: Any) -> None:
        """Deliver tasks whose URL starts with `base_url` to `app` instead of `cloudtasks_app`."""
        self._harness.router.add(base_url, app)

    # -- moving time -----------------------------------------------------------------------

    def run_until_empty(self) -> list[Attempt]:
        """Deliver every task (retries and tasks enqueued by tasks included), jumping the clock
        to each next schedule time, until nothing is left that could run."""
        __tracebackhide__ = True
        return self._harness.run(None)

    async def arun_until_empty(self) -> list[Attempt]:
        """`run_until_empty` on the test's own event loop (async tests)."""
        __tracebackhide__ = True
        return await self._harness.arun(None)

    def run_task(self, name: str) -> list[Attempt]:
        """RunTask: deliver the task now, even if its queue is paused; `name` may be short."""
        __tracebackhide__ = True
        self.client.run_task(name=self._full_name(name))
        # The task is due "now": pin now first, or real time would run past the drain's limit.
        self._harness.clock.freeze()
        return self._harness.run(self.now, forced_only=True)

    def _full_name(self, name: str) -> str:
        if "/" in name:
            return name
        for task in self.tasks:
            if task.short_name == name:
                return task.name
        raise LookupError(f"no pending task named {name!r}; pending: {self.tasks!r}")

    # -- assertions ------------------------------------------------------------------------

    def assert_enqueued(self, endpoint: Callable[..., Any] | None = None,
                        arguments: Mapping[str, Any] | None = None, /, *,
                        times: int | None = None, **kwargs: Any) -> CapturedTask:
        """Assert `endpoint` (the function or its `DelayedTask`) was enqueued in this test with
        these arguments (a subset of its parameters, validated and typed as `.delay()` does),
        exactly `times` times if given; returns the first matching task. Pass a parameter
        named `times` in the `arguments` dict.

        Without an endpoint (tasks made with Google's client directly), the keywords match the
        task's request: `url` (string or compiled pattern), `method`, `json`, `body`,
        `headers`, `queue`."""
        __tracebackhide__ = True
        check_times("assert_enqueued", times)
        expected = task_expectation("assert_enqueued", endpoint, {**(arguments or {}), **kwargs})
        created = self.created
        matched = expected.select(created)
        self._harness.asserted.update(task.name for task in matched)
        if not matched:
            raise AssertionError(
                f"{expected.text} was not enqueued. Enqueued in this test:\n"
                f"{listing(created, _at)}"
            )
        if times is not None and len(matched) != times:
            raise AssertionError(
                f"{expected.text} was enqueued {len(matched)} time(s), expected {times}:\n"
                f"{listing(matched, _at)}"
            )
        return matched[0]

    def assert_not_enqueued(self, endpoint: Callable[..., Any] | None = None,
                            arguments: Mapping[str, Any] | None = None, /,
                            **kwargs: Any) -> None:
        """Assert no task of `endpoint` with these arguments was enqueued in this test; without
        an endpoint, no task with that request (the keywords of `assert_enqueued`)."""
        __tracebackhide__ = True
        expected = task_expectation("assert_not_enqueued", endpoint,
                                    {**(arguments or {}), **kwargs})
        matched = expected.select(self.created)
        if matched:
            raise AssertionError(
                f"{expected.text} was enqueued {len(matched)} time(s), expected never:\n"
                f"{listing(matched, _at)}"
            )

    def __repr__(self) -> str:
        return f"<CloudTasksQueue {len(self)} pending at {self.now.isoformat()}>"


def _at(task: CapturedTask) -> str:
    return f"at {task.schedule_time.isoformat()}"
