"""Assertions on what a test enqueued or scheduled, and the teardown check that every task and
job was handled.

Expected arguments are validated with the endpoint's own fields, as `.delay()` validates them:
a dict for a model parameter matches the model, `"3"` for an `int` matches 3, and a name the
endpoint does not take is a usage error naming it (such an assertion could never pass).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from fastapi_cloud_tasks.delayed_route import delayed_task
from fastapi_cloud_tasks.exceptions import ArgumentProblem, UnsupportedRouteError
from fastapi_cloud_tasks.scheduled_route import scheduled_task
from pytest_cloudtasks.errors import AssertionArgumentsError, CloudTasksUsageError

T = TypeVar("T")

__all__ = ["Expectation", "check_times", "job_expectation", "listing", "task_expectation",
           "unhandled"]


class Expectation:
    """An endpoint and some of its arguments, typed as the endpoint receives them."""

    def __init__(self, assertion: str, side_for: Callable[[Any], Any], endpoint: Any,
                 arguments: Mapping[str, Any]) -> None:
        __tracebackhide__ = True
        name = getattr(endpoint, "__qualname__", repr(endpoint))
        self.text = f"{name}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"
        try:
            side = side_for(endpoint)
        except UnsupportedRouteError as exc:
            raise CloudTasksUsageError(f"{assertion}({name}, ...): {exc}") from None
        self.endpoint = side.endpoint
        params = side.signature.params
        problems: list[ArgumentProblem] = []
        self.values: dict[str, Any] = {}
        for key, value in arguments.items():
            param = params.get(key)
            if param is None:
                known = ", ".join(sorted(params)) or "no arguments"
                problems.append(ArgumentProblem(
                    "unknown", key, "", f"not a parameter of {name}; expected {known}", value))
                continue
            typed, errors = param.field.validate(value, {}, loc=(param.location, key))
            if errors:
                problems.extend(
                    ArgumentProblem("type", key, param.location, str(e.get("msg", e)), value)
                    for e in errors)
            else:
                self.values[key] = typed
        if problems:
            raise AssertionArgumentsError(f"{assertion}({self.text})", problems)

    def matches(self, captured: Any) -> bool:
        if captured.endpoint is not self.endpoint:
            return False
        try:
            decoded = captured.arguments
        except (LookupError, ValueError):  # a payload the endpoint would reject
            return False
        return all(key in decoded and _same(decoded[key], value)
                   for key, value in self.values.items())

    def select(self, captured: Iterable[T]) -> list[T]:
        return [item for item in captured if self.matches(item)]


def task_expectation(assertion: str, endpoint: Any, arguments: Mapping[str, Any]) -> Expectation:
    __tracebackhide__ = True
    return Expectation(assertion, delayed_task, endpoint, arguments)


def job_expectation(assertion: str, endpoint: Any, arguments: Mapping[str, Any]) -> Expectation:
    __tracebackhide__ = True
    return Expectation(assertion, scheduled_task, endpoint, arguments)


def check_times(assertion: str, times: object) -> None:
    __tracebackhide__ = True
    if times is not None and (isinstance(times, bool) or not isinstance(times, int)
                              or times < 1):
        never = assertion.replace("assert_", "assert_not_")
        raise CloudTasksUsageError(
            f"{assertion}(..., times={times!r}): give a count of 1 or more (for none, use "
            f"{never})."
        )


def _same(left: Any, right: Any) -> bool:
    try:
        return bool(left == right)
    except Exception:  # values without a usable ==: they cannot be told equal
        return False


def listing(items: Iterable[Any], when: Callable[[Any], str]) -> str:
    lines = [f"  {item.describe()} {when(item)}" for item in items]
    return "\n".join(lines) or "  (nothing)"


def unhandled(harness: Any) -> str | None:
    """The teardown message for tasks and jobs the test neither ran nor asserted, if any."""
    asserted = harness.asserted
    ran = {attempt.task.name for attempt in harness.attempts}
    # Imported here: the plugin imports this module only for tests that turn the check on.
    from pytest_cloudtasks.captured import CapturedJob, CapturedTask

    tasks = [CapturedTask(record) for record in harness.engine.pending()
             if record.dispatch_count == 0 and record.name not in asserted]
    jobs = [CapturedJob(record) for record in harness.scheduler.jobs()
            if record.name not in ran and record.name not in asserted]
    if not tasks and not jobs:
        return None
    lines = [f"  task {t.describe()} due {t.schedule_time.isoformat()}" for t in tasks]
    lines += [f"  {job.describe()}" for job in jobs]
    return (
        f"assert_all_handled: the test left {len(tasks)} task(s) and {len(jobs)} job(s) it "
        "neither ran nor asserted:\n" + "\n".join(lines) + "\nRun them (advance(), "
        "run_until_empty(), run_task(), run_job()), assert them (assert_enqueued(), "
        "assert_scheduled()), or turn the check off for this test with "
        "@pytest.mark.cloudtasks(assert_all_handled=False)."
    )
