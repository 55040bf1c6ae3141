"""Task options: builder settings, `@task_default_options` and `.options()`, checked locally
against Cloud Tasks' rules so a mistake fails at the call site, not in Google's API."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, TypedDict, TypeVar
from urllib.parse import urlsplit

from google.cloud import tasks_v2

from fastapi_cloud_tasks.exceptions import InvalidTaskOptionError

__all__ = [
    "TaskOptionArgs",
    "TaskOptions",
    "as_duration",
    "check_base_url",
    "check_queue_path",
    "positive_seconds",
    "run_hook",
]

Request = TypeVar("Request")

DelayedHook = Callable[[tasks_v2.CreateTaskRequest], tasks_v2.CreateTaskRequest]

TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")
QUEUE_PATH = re.compile(r"projects/[^/\s]+/locations/[^/\s]+/queues/[A-Za-z0-9-]{1,100}")
MAX_SCHEDULE_AHEAD = timedelta(days=30)
DISPATCH_DEADLINE_RANGE = (timedelta(seconds=15), timedelta(minutes=30))


def check_base_url(base_url: object) -> str:
    """Validate a worker base URL and return it without a trailing slash."""
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise InvalidTaskOptionError(
            f"base_url={base_url!r} must be a string starting with 'http://' or 'https://' "
            "(Cloud Tasks and Cloud Scheduler call only HTTP(S) URLs)."
        )
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018 - parsed on access: raises for a port that is no number
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535"...
        raise InvalidTaskOptionError(
            f"base_url={base_url!r} is not a valid URL ({exc}); write it as "
            "'https://host[:port][/prefix]', an IPv6 host in brackets ('http://[::1]:8000')."
        ) from None
    if not parts.netloc or "?" in base_url or "#" in base_url:
        # The route's path is appended to base_url: a query or fragment would swallow it.
        raise InvalidTaskOptionError(
            f"base_url={base_url!r} must name a host and have no query string or fragment; "
            "the endpoint's path is appended to it."
        )
    return base_url.rstrip("/")


def as_duration(
    name: str, value: object, allowed: tuple[timedelta, timedelta] | None = None
) -> timedelta:
    """A `timedelta` from a timedelta, a protobuf Duration or a number of seconds, optionally
    range-checked."""
    if isinstance(value, timedelta):
        duration = value
    elif hasattr(value, "ToTimedelta"):  # a protobuf Duration
        duration = value.ToTimedelta()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            duration = timedelta(seconds=value)
        except (OverflowError, ValueError):  # NaN, infinity, or beyond timedelta's range
            raise InvalidTaskOptionError(
                f"{name}={value!r} is not a usable number of seconds."
            ) from None
    else:
        raise InvalidTaskOptionError(
            f"{name}={value!r} must be a datetime.timedelta, a protobuf Duration or a number "
            "of seconds."
        )
    if allowed is not None and not allowed[0] <= duration <= allowed[1]:
        raise InvalidTaskOptionError(
            f"{name}={duration!r} is outside the range Google allows "
            f"({allowed[0].total_seconds():g} s to {allowed[1].total_seconds():g} s)."
        )
    return duration


def positive_seconds(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidTaskOptionError(f"{name}={value!r} must be a positive number of seconds.")
    return float(value)


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """Everything `.delay()` needs besides the endpoint's arguments."""

    base_url: str
    queue_path: str
    task_create_timeout: float = 10.0
    pre_create_hook: DelayedHook | None = None
    client: Any = None
    auto_create_queue: bool = True
    countdown: timedelta | None = None
    schedule_time: datetime | None = None
    task_id: str | None = None
    dispatch_deadline: timedelta | None = None

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(cls))

    def merged(self, overrides: Mapping[str, Any]) -> TaskOptions:
        """These options with `overrides` applied; every value is checked here."""
        unknown = sorted(set(overrides) - self.names())
        if unknown:
            raise InvalidTaskOptionError(
                f"Unknown task option(s) {', '.join(map(repr, unknown))}; the options are "
                f"{', '.join(sorted(self.names()))}. Endpoint arguments go to .delay(), "
                "options to .options()."
            )
        changes = {name: _CHECKS[name](name, value) for name, value in overrides.items()}
        # countdown and schedule_time are two spellings of one setting: the later layer wins.
        if "countdown" in changes and "schedule_time" in changes:
            if changes["countdown"] is not None and changes["schedule_time"] is not None:
                raise InvalidTaskOptionError(
                    "Pass either countdown or schedule_time, not both: they both set when the "
                    "task first runs."
                )
        elif "countdown" in changes:
            changes["schedule_time"] = None
        elif "schedule_time" in changes:
            changes["countdown"] = None
        return dataclasses.replace(self, **changes)

    def run_hook(self, request: tasks_v2.CreateTaskRequest) -> tasks_v2.CreateTaskRequest:
        """The request after `pre_create_hook`, if any (see `run_hook`)."""
        if self.pre_create_hook is None:
            return request
        return run_hook(self.pre_create_hook, request)

    def first_run(self, now: datetime) -> datetime | None:
        """The schedule time to send, or None for "now"; rejects more than 30 days ahead."""
        if self.countdown is not None:
            # Compared before adding: a huge countdown would overflow datetime.
            ahead, when_text = self.countdown, f"{self.countdown} from now"
        elif self.schedule_time is not None:
            ahead, when_text = self.schedule_time - now, f"at {self.schedule_time.isoformat()}"
        else:
            return None
        if ahead > MAX_SCHEDULE_AHEAD:
            raise InvalidTaskOptionError(
                f"The task would first run {when_text}, more than 30 days after now "
                f"({now.isoformat()}); Cloud Tasks rejects that. Schedule it later, or store it "
                "and enqueue it nearer the time."
            )
        return now + ahead


class TaskOptionArgs(TypedDict, total=False):
    """The keywords of `.options()` and `@task_default_options`, for type checkers (the
    fields of `TaskOptions`; a test keeps the two in step)."""

    base_url: str
    queue_path: str
    task_create_timeout: float
    pre_create_hook: DelayedHook | None
    client: tasks_v2.CloudTasksClient | tasks_v2.CloudTasksAsyncClient | None
    auto_create_queue: bool
    countdown: timedelta | float | None
    schedule_time: datetime | None
    task_id: str | None
    dispatch_deadline: timedelta | float | None


def run_hook(hook: Callable[[Request], Request], request: Request) -> Request:
    """`hook(request)`, which must return a request of the same type (the one it was given,
    changed or not, or a new one)."""
    result = hook(request)
    if not isinstance(result, type(request)):
        qualname = getattr(hook, "__qualname__", None)
        name = f"{getattr(hook, '__module__', '?')}.{qualname}" if qualname else repr(hook)
        got = ("None" if result is None
               else f"a {type(result).__name__}, not a {type(request).__name__}")
        raise InvalidTaskOptionError(
            f"pre_create_hook {name} returned {got}; return the (modified) request."
        )
    return result


def _optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    return lambda name, value: None if value is None else check(name, value)


def _check_countdown(name: str, value: Any) -> timedelta:
    duration = as_duration(name, value)
    if duration < timedelta(0):
        raise InvalidTaskOptionError(f"{name}={value!r} is negative; use 0 to run at once.")
    return duration


def _check_schedule_time(name: str, value: Any) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidTaskOptionError(
            f"{name}={value!r} must be a timezone-aware datetime "
            "(e.g. datetime.now(timezone.utc) + timedelta(hours=1))."
        )
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:  # e.g. datetime.max in a zone west of UTC
        raise InvalidTaskOptionError(
            f"{name}={value!r} is outside the range of datetime once converted to UTC; Cloud "
            "Tasks runs a task at most 30 days ahead, so pass a time within that."
        ) from None


def _check_task_id(name: str, value: Any) -> str:
    if not isinstance(value, str) or not TASK_ID.fullmatch(value):
        raise InvalidTaskOptionError(
            f"{name}={value!r} is not a valid Cloud Tasks task id: use 1 to 500 letters, digits, "
            "hyphens or underscores (hash longer keys, e.g. with hashlib.sha256)."
        )
    return value


def check_queue_path(value: Any, name: str = "queue_path") -> str:
    """Validate a full queue path."""
    if not isinstance(value, str) or not QUEUE_PATH.fullmatch(value):
        raise InvalidTaskOptionError(
            f"{name}={value!r} is not a queue path; expected "
            "'projects/PROJECT/locations/LOCATION/queues/QUEUE' with a queue id of letters, "
            "digits and hyphens (build it with fastapi_cloud_tasks.queue_path())."
        )
    return value


def _check_hook(name: str, value: Any) -> Any:
    if not callable(value):
        raise InvalidTaskOptionError(f"{name}={value!r} must be a callable taking the request.")
    return value


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidTaskOptionError(f"{name}={value!r} must be True or False.")
    return value


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "base_url": lambda name, value: check_base_url(value),
    "queue_path": lambda name, value: check_queue_path(value, name),
    "task_create_timeout": positive_seconds,
    "pre_create_hook": _optional(_check_hook),
    "client": lambda name, value: value,
    "auto_create_queue": _check_bool,
    "countdown": _optional(_check_countdown),
    "schedule_time": _optional(_check_schedule_time),
    "task_id": _optional(_check_task_id),
    "dispatch_deadline": _optional(
        lambda name, value: as_duration(name, value, DISPATCH_DEADLINE_RANGE)
    ),
}
