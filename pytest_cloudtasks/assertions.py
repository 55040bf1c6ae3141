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

__all__ = ["Expectation", "RequestExpectation", "check_times", "job_expectation", "listing",
           "task_expectation", "unhandled"]


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


_MISSING = object()
REQUEST_FIELDS = ("url", "method", "json", "body", "headers", "queue")


class RequestExpectation:
    """A task's HTTP request, for tasks no route builder made (Google's client called
    directly): `url` (a string, or a compiled pattern that must match all of it), `method`,
    `json` (the decoded body), `body` (bytes), `headers` (these, case-insensitively, among
    others) and `queue` (its id or full name). What is not given matches anything."""

    def __init__(self, assertion: str, fields: Mapping[str, Any]) -> None:
        __tracebackhide__ = True
        unknown = sorted(set(fields) - set(REQUEST_FIELDS))
        if unknown:
            raise CloudTasksUsageError(
                f"{assertion}() without an endpoint matches the task's request: got unknown "
                f"field(s) {', '.join(unknown)}; known: {', '.join(REQUEST_FIELDS)}. To match "
                "an endpoint's arguments, pass the endpoint first."
            )
        if not fields:
            raise CloudTasksUsageError(
                f"{assertion}() needs an endpoint, or some of {', '.join(REQUEST_FIELDS)} "
                "(e.g. url=..., method='POST', json={...})."
            )
        self.fields = dict(fields)
        if "method" in self.fields:
            self.fields["method"] = str(self.fields["method"]).upper()
        if "headers" in self.fields:
            self.fields["headers"] = {str(k).lower(): v
                                      for k, v in dict(self.fields["headers"]).items()}
        shown = ", ".join(f"{k}={getattr(v, 'pattern', v)!r}" for k, v in fields.items())
        self.text = f"a task with {shown}"

    def matches(self, captured: Any) -> bool:
        return all(self._field(name, expected, captured)
                   for name, expected in self.fields.items())

    @staticmethod
    def _field(name: str, expected: Any, captured: Any) -> bool:
        if name == "url":
            if hasattr(expected, "fullmatch"):
                return expected.fullmatch(captured.url) is not None
            return bool(captured.url == expected)
        if name == "json":
            try:
                return _same(captured.json(), expected)
            except ValueError:  # not JSON
                return False
        if name == "headers":
            have = {k.lower(): v for k, v in captured.headers.items()}
            return all(have.get(k, _MISSING) == v for k, v in expected.items())
        if name == "queue":
            return bool(captured.queue == expected or captured.queue.endswith(f"/{expected}"))
        return _same(getattr(captured, name), expected)  # method, body

    def select(self, captured: Iterable[T]) -> list[T]:
        return [item for item in captured if self.matches(item)]


def task_expectation(assertion: str, endpoint: Any,
                     arguments: Mapping[str, Any]) -> Expectation | RequestExpectation:
    """The endpoint and its arguments; without an endpoint, fields of the task's request."""
    __tracebackhide__ = True
    if endpoint is None:
        return RequestExpectation(assertion, arguments)
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
