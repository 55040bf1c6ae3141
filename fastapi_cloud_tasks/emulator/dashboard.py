"""The emulator's dashboard: its queues, tasks, recent attempts and jobs at `/` on the HTTP
port, and buttons for what a developer does by hand (pause, resume, purge a queue; run,
delete a task; run, pause, resume a job).

Server-rendered by Jinja2 with autoescaping on every template: task URLs, headers, names and
messages are whatever a client sent. The page polls `/dashboard/state` (the tables alone) with
a small inline script allowed by a per-page CSP nonce; without script it is a plain page with
plain forms.

An action is a POST form that runs the very RPC a client would (`rpcs.bind` on the engine,
with the RPC's real request message), so it answers with the same errors. A web page of
another origin cannot make the emulator run one: the HTTP server refuses a foreign `Origin` or
`Host` and `Sec-Fetch-Site: cross-site` (`same_origin.py`), and each form carries this
process's random token, which only a page that could read the dashboard knows (a page of
another origin cannot: same-origin policy, and the Host check against DNS rebinding).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlencode

from google.api_core import exceptions
from google.cloud import scheduler_v1, tasks_v2
from google.rpc import code_pb2

from fastapi_cloud_tasks.emulator import INSTALL_EMULATOR
from fastapi_cloud_tasks.emulator.attempt_log import AttemptEntry, AttemptLog
from fastapi_cloud_tasks.emulator.http_server import HttpRequest, HttpResponse, RouteHandler, Router
from fastapi_cloud_tasks.emulator.rpcs import SCHEDULER, TASKS, Service, bind

__all__ = ["ACTIONS", "Dashboard", "MAX_ROWS"]

MAX_ROWS = 100  # queues, tasks per queue, jobs: a page stays readable and cheap to build
STATE_PATH = "/dashboard/state"
ACTION_PREFIX = "/dashboard/actions/"
_FORM = "application/x-www-form-urlencoded"
_HTML = "text/html; charset=utf-8"
_SECURITY_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),  # no clickjacking of the buttons
    # Not no-referrer: under it Chromium sends its form POSTs with `Origin: null`, which the
    # same-origin rule refuses. same-origin sends no URL of the emulator to another site.
    ("Referrer-Policy", "same-origin"),
)


@dataclass(frozen=True)
class Action:
    label: str  # the button's text
    done: str  # what the notice after it says, before the resource's name
    service: Service
    rpc: str  # the RPC it runs, with the resource's name as `name`


ACTIONS = {
    "pause-queue": Action("Pause", "Paused queue", TASKS, "PauseQueue"),
    "resume-queue": Action("Resume", "Resumed queue", TASKS, "ResumeQueue"),
    "purge-queue": Action("Purge", "Purged every task of queue", TASKS, "PurgeQueue"),
    "run-task": Action("Run", "Sent for dispatch now: task", TASKS, "RunTask"),
    "delete-task": Action("Delete", "Deleted task", TASKS, "DeleteTask"),
    "run-job": Action("Run", "Started a run of job", SCHEDULER, "RunJob"),
    "pause-job": Action("Pause", "Paused job", SCHEDULER, "PauseJob"),
    "resume-job": Action("Resume", "Resumed job", SCHEDULER, "ResumeJob"),
}


class Dashboard:
    """The pages and actions over `tasks` and `scheduler` (the emulator's engines) and the
    attempts `attempts` has seen."""

    def __init__(self, tasks: Any, scheduler: Any, attempts: AttemptLog,
                 published: Callable[[], Iterable[Any]] = tuple) -> None:
        self.tasks = tasks
        self.scheduler = scheduler
        self.attempts = attempts
        self.published = published  # the Pub/Sub messages kept or published, oldest first
        self.token = secrets.token_urlsafe(32)  # in every form; see the module's docstring
        engines = {TASKS.name: tasks, SCHEDULER.name: scheduler}
        self._calls: dict[str, tuple[Callable[[Any], Any], Any]] = {}
        for key, action in ACTIONS.items():
            rpc = next(r for r in action.service.rpcs if r.name == action.rpc)
            self._calls[key] = (bind(action.service, rpc, engines[action.service.name]),
                                rpc.request_type)
        self._env: Any = None

    def add_routes(self, router: Router) -> None:
        router.add("GET", "/", _guard(lambda request, match: self.page(request)))
        router.add("GET", STATE_PATH, _guard(lambda request, match: self._html(
            200, self._render("state.html", **self.state()))))
        router.add("POST", ACTION_PREFIX + "([^/]*)",
                   _guard(lambda request, match: self.act(match.group(1), request)))

    # -- pages ---------------------------------------------------------------------------

    def page(self, request: HttpRequest, *, status: int = 200, error: str = "") -> HttpResponse:
        """The whole page; after an action, its notice (`?done=ACTION&name=NAME`)."""
        query = parse_qs(request.query, max_num_fields=4) if request.query else {}
        notice = ""
        done = ACTIONS.get(query.get("done", [""])[0])
        if done is not None and not error:
            notice = f"{done.done} {query.get('name', [''])[0]}."
        nonce = secrets.token_urlsafe(16)
        csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
               "base-uri 'none'")
        body = self._render("dashboard.html", nonce=nonce, notice=notice, error=error,
                            state_path=STATE_PATH, **self.state())
        return self._html(status, body, (("Content-Security-Policy", csp),))

    def state(self) -> dict[str, Any]:
        """What the tables show, as plain values for the templates."""
        return {
            "queues": [self._queue(name) for name in sorted(self.tasks.resource_names())
                       [:MAX_ROWS]],
            "queue_count": len(self.tasks.resource_names()),
            "attempts": [_attempt(entry) for entry in self.attempts.recent()],
            "messages": [_message(m) for m in reversed(list(self.published()))][:MAX_ROWS],
            "jobs": [self._job(record.name) for record in self.scheduler.jobs()[:MAX_ROWS]],
            "job_count": len(self.scheduler.jobs()),
            "token": self.token,
            "prefix": ACTION_PREFIX,
            "labels": {key: action.label for key, action in ACTIONS.items()},
            "max_rows": MAX_ROWS,
        }

    def _queue(self, name: str) -> dict[str, Any]:
        queue = self.tasks.get_queue(tasks_v2.GetQueueRequest(name=name))
        records = self.tasks.pending(name)
        rates, retry = queue.rate_limits, queue.retry_config
        return {
            "name": name, "id": _short(name), "anchor": _anchor("queue", name),
            "state": queue.state.name, "paused": queue.state == tasks_v2.Queue.State.PAUSED,
            "rate": f"{rates.max_dispatches_per_second:g}/s",
            "burst": rates.max_burst_size, "concurrent": rates.max_concurrent_dispatches,
            "max_attempts": "unlimited" if retry.max_attempts < 0 else retry.max_attempts,
            "backoff": f"{_duration(retry.min_backoff)} to {_duration(retry.max_backoff)}",
            "doublings": retry.max_doublings,
            "retry_duration": _duration(retry.max_retry_duration) or "unlimited",
            "pending": len(records),
            "in_flight": sum(record.in_flight for record in records),
            "tasks": [_task(record) for record in records[:MAX_ROWS]],
        }

    def _job(self, name: str) -> dict[str, Any]:
        job = self.scheduler.get_job(scheduler_v1.GetJobRequest(name=name))
        raw = scheduler_v1.Job.pb(job)
        status = "" if not raw.HasField("last_attempt_time") else (
            "OK" if raw.status.code == 0
            else f"{code_pb2.Code.Name(raw.status.code)} ({raw.status.message})")
        kind = raw.WhichOneof("target") or ""
        target = (raw.http_target.uri if kind == "http_target"
                  else f"Pub/Sub {raw.pubsub_target.topic_name}" if kind == "pubsub_target"
                  else kind.replace("_", " "))
        paused = job.state == scheduler_v1.Job.State.PAUSED
        return {
            "name": name, "id": _short(name), "anchor": _anchor("job", name),
            "target": target, "schedule": raw.schedule, "time_zone": raw.time_zone,
            "state": job.state.name, "paused": paused, "status": status,
            "last_run": _when(job.last_attempt_time),
            "next_run": "" if paused else _when(job.schedule_time),
        }

    # -- actions -------------------------------------------------------------------------

    def act(self, key: str, request: HttpRequest) -> HttpResponse:
        """Run action `key` from a dashboard form; then back to the page (303), or the page
        with the RPC's error."""
        action = ACTIONS.get(key)
        if action is None:
            return self.page(request, status=404, error=(
                f"The dashboard has no action {key!r}; it has "
                f"{', '.join(sorted(ACTIONS))}."))
        refusal, name = self._form(request)
        if refusal:
            return self.page(_as_get(request), status=403, error=refusal)
        call, request_type = self._calls[key]
        try:
            call(request_type(name=name))
        except exceptions.GoogleAPICallError as exc:
            code = exc.grpc_status_code.name if exc.grpc_status_code is not None else "UNKNOWN"
            return self.page(_as_get(request), status=exc.code or 500,
                             error=f"{action.label} {key.split('-')[1]} {name} failed: "
                                   f"{code}: {exc.message}")
        location = "/?" + urlencode({"done": key, "name": name})
        return HttpResponse(303, b"", _HTML, (("Location", location), *_SECURITY_HEADERS))

    def _form(self, request: HttpRequest) -> tuple[str, str]:
        """(why the form is refused, or "", the resource name it names)."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != _FORM:
            return (f"A dashboard action takes a form ({_FORM}), not {content_type!r}: use "
                    "the dashboard's buttons, or the API.", "")
        try:
            fields = parse_qs(request.body.decode("utf-8"), max_num_fields=4)
        except (UnicodeDecodeError, ValueError):
            return "The form could not be read: use the dashboard's buttons.", ""
        token = fields.get("token", [""])[0]
        if not hmac.compare_digest(token.encode(), self.token.encode()):
            return ("The form does not carry this emulator's dashboard token (the emulator "
                    "restarted since the page was loaded, or another page sent it): nothing "
                    "was done. Reload the dashboard and try again.", "")
        names = fields.get("name", [])
        if len(names) != 1 or not names[0]:
            return f"A dashboard action names one resource, got {names!r}.", ""
        return "", names[0]

    # -- rendering -----------------------------------------------------------------------

    def _render(self, template: str, **values: Any) -> str:
        if self._env is None:
            self._env = _environment()  # Jinja2 is imported on the first page, not at start
        text: str = self._env.get_template(template).render(**values)
        return text

    @staticmethod
    def _html(status: int, body: str,
              headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
        return HttpResponse(status, body.encode(), _HTML, (*_SECURITY_HEADERS, *headers))


class _NoJinja(Exception):
    """Raised when the dashboard is asked for and Jinja2 (the `[emulator]` extra) is missing."""


def _guard(handler: RouteHandler) -> RouteHandler:
    """`handler`, or a 503 naming the extra to install when Jinja2 is missing (the rest of
    the emulator works without it)."""

    def guarded(request: HttpRequest, match: re.Match[str]) -> HttpResponse:
        try:
            return handler(request, match)
        except _NoJinja:
            return HttpResponse(503, (
                "The emulator's dashboard needs Jinja2, which is not installed: run "
                f"`{INSTALL_EMULATOR}`.\n").encode(), "text/plain; charset=utf-8",
                _SECURITY_HEADERS)

    return guarded


def _environment() -> Any:
    try:
        import jinja2
    except ImportError:
        raise _NoJinja from None

    return jinja2.Environment(
        loader=jinja2.PackageLoader("fastapi_cloud_tasks.emulator", "templates"),
        autoescape=True,  # every template, whatever its name: all of it is HTML
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _as_get(request: HttpRequest) -> HttpRequest:
    return HttpRequest("GET", "/", "", request.headers, b"")


def _task(record: Any) -> dict[str, Any]:
    raw = tasks_v2.Task.pb(record.task)
    kind = raw.WhichOneof("message_type")
    if kind == "http_request":
        method, url = tasks_v2.HttpMethod(raw.http_request.http_method).name, raw.http_request.url
    elif kind == "app_engine_http_request":
        target = raw.app_engine_http_request
        method = tasks_v2.HttpMethod(target.http_method).name
        url = f"App Engine {target.relative_uri or '/'}"
    else:
        method, url = "", ""
    last = ""
    if raw.HasField("last_attempt"):
        status = raw.last_attempt.response_status
        last = status.message if status.code == 0 else (
            f"{status.message} ({code_pb2.Code.Name(status.code)})")
    return {
        "name": record.name, "id": _short(record.name), "anchor": _anchor("task", record.name),
        "method": method, "url": url, "schedule_time": _when(record.schedule_time),
        "dispatches": record.dispatch_count, "responses": record.response_count,
        "last_response": last, "in_flight": record.in_flight,
    }


_REDACTED = ("authorization", "proxy-authorization")


def _attempt(entry: AttemptEntry) -> dict[str, Any]:
    headers = []
    for key, value in entry.headers.items():
        if key.lower() in _REDACTED:  # an ID or access token: a credential, never shown
            scheme = value.split(" ", 1)[0]
            value = f"{scheme} (a token of {len(value) - len(scheme) - 1} characters, not shown)"
        headers.append((key, value))
    return {
        "time": _when(entry.dispatch_time, precise=True), "kind": entry.kind,
        "name": entry.name, "id": _short(entry.name), "method": entry.method, "url": entry.url,
        "status": "no response" if entry.status is None else str(entry.status),
        "ok": entry.status is not None and 200 <= entry.status < 300,
        "outcome": entry.outcome, "duration": _duration(entry.duration, precise=True),
        "retry_count": entry.retry_count, "headers": headers, "number": entry.number,
    }


def _message(message: Any) -> dict[str, Any]:
    """A Pub/Sub target job's message, as the dashboard lists it (newest first)."""
    return {
        "time": _when(message.publish_time, precise=True),
        "job": _short(message.job_name),
        "topic": message.topic_name,
        "size": len(message.data),
        "data": message.data[:200].decode("utf-8", "replace"),
        "attributes": ", ".join(f"{k}={v}" for k, v in sorted(message.attributes.items())),
        "where": f"published as {message.message_id}" if message.message_id else "kept here",
    }


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _anchor(kind: str, name: str) -> str:
    """A stable element id for a resource (kept across refreshes, so focus can be put back)."""
    return f"{kind}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def _when(moment: datetime | None, precise: bool = False) -> str:
    if moment is None:
        return ""
    moment = moment.astimezone(timezone.utc)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if precise:
        text += f".{moment.microsecond // 1000:03d}"
    return text + " UTC"


def _duration(value: timedelta, precise: bool = False) -> str:
    seconds = value.total_seconds()
    if not seconds:
        return "0 ms" if precise else ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if precise else f"{seconds:g} s"
    return f"{seconds:.3g} s" if precise else f"{seconds:g} s"
