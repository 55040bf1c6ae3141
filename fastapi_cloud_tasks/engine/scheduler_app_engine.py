"""App Engine targets of Cloud Scheduler (`Job.app_engine_http_target`): the create-time checks
and the request of each run, sent to the one local host standing in for the App Engine app.

Google's rules, from the API reference (`AppEngineHttpTarget` and `Job.attempt_deadline` in
google-cloud-scheduler's `types/target.py` and `types/job.py`):
- URL = host + `relative_uri`: starts with "/" (empty means "/"), may hold a query and a
  `#` fragment, no spaces, at most 2083 characters; PATCH and OPTIONS are not permitted; a
  body only with POST or PUT; the default method is POST;
- headers: User-Agent "AppEngine-Google; (+http://code.google.com/appengine)" appended to
  the job's own, `X-CloudScheduler: true`, `X-CloudScheduler-JobName`,
  `X-CloudScheduler-ScheduleTime`; Content-Type application/octet-stream for a body without
  one; `X-Google-*` and `X-AppEngine-*` cannot be set. "Some App Engine headers, which contain
  job-specific information, are also sent": the fakes send `X-AppEngine-Cron: true`, the
  header App Engine's cron requests carry ("Scheduling jobs with cron.yaml", validating cron
  requests), which App Engine handlers check;
- success is a status in 200..299;
- `attempt_deadline`: unset means the service's timeout (10 minutes for automatic scaling
  standard apps): the fakes use 10 minutes; when set, 15 seconds .. 24 hours 15 seconds.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from google.api_core import exceptions
from google.cloud import scheduler_v1

from fastapi_cloud_tasks.engine.app_engine import APP_ENGINE_USER_AGENT
from fastapi_cloud_tasks.engine.http_target import unsendable
from fastapi_cloud_tasks.engine.task_messages import METHOD_NAMES, check_method

__all__ = ["app_engine_job_request", "check_app_engine_target"]

DEFAULT_DEADLINE = timedelta(minutes=10)
DEADLINE_RANGE = (timedelta(seconds=15), timedelta(hours=24, seconds=15))
_ALLOWED = {number for number, name in METHOD_NAMES.items() if name not in ("PATCH", "OPTIONS")}
_BODY = {int(scheduler_v1.HttpMethod.POST), int(scheduler_v1.HttpMethod.PUT)}


def check_app_engine_target(job: scheduler_v1.Job, host: str | None) -> None:
    """Check `job`'s App Engine target and fill in the defaults (POST, "/", the deadline).
    `host` None: no local App Engine app is configured, so the job is refused."""
    if host is None:
        raise exceptions.InvalidArgument(
            "Job.app_engine_http_target needs an App Engine app to deliver to: start the "
            "emulator with --app-engine-host HOST:PORT (the local server standing in for your "
            "App Engine app), or give the job an http_target."
        )
    target = scheduler_v1.Job.pb(job).app_engine_http_target
    if not target.relative_uri:
        target.relative_uri = "/"
    uri = target.relative_uri
    if not uri.startswith("/") or " " in uri or len(uri) > 2083:
        raise exceptions.InvalidArgument(
            f"AppEngineHttpTarget.relative_uri {uri[:100]!r} must begin with '/', contain no "
            "spaces and be at most 2083 characters long."
        )
    check_method(target, "AppEngineHttpTarget", allowed=_ALLOWED, refusal="is not permitted",
                 body_methods=_BODY,
                 body_rule="A body can only be set for POST or PUT App Engine requests.")
    for header in target.headers:
        if header.lower().startswith(("x-google-", "x-appengine-")):
            raise exceptions.InvalidArgument(
                f"Header {header!r} cannot be set: X-Google-* and X-AppEngine-* are Google's."
            )
    problem = unsendable(f"http://{host}{uri}", target.headers,
                         "AppEngineHttpTarget.relative_uri")
    if problem is not None:
        raise exceptions.InvalidArgument(problem)
    if "attempt_deadline" not in job:
        job.attempt_deadline = DEFAULT_DEADLINE
    elif not DEADLINE_RANGE[0] <= job.attempt_deadline <= DEADLINE_RANGE[1]:
        raise exceptions.InvalidArgument(
            "attempt_deadline must be between 15s and 24h15s for an App Engine target."
        )


def app_engine_job_request(
    target: Any, host: str, scheduler_headers: dict[str, str]
) -> tuple[str, str, dict[str, str], bytes]:
    """One run's method, URL, headers and body for the raw AppEngineHttpTarget `target`;
    `scheduler_headers` are the X-CloudScheduler-* ones of the run."""
    headers = {k: v for k, v in target.headers.items()
               if k.lower() not in ("host", "content-length")}
    agent = next((k for k in headers if k.lower() == "user-agent"), None)
    own = headers.pop(agent) if agent is not None else ""
    headers["User-Agent"] = f"{own} {APP_ENGINE_USER_AGENT}" if own else APP_ENGINE_USER_AGENT
    headers.update(scheduler_headers)
    headers["X-AppEngine-Cron"] = "true"
    if target.body and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/octet-stream"
    url = f"http://{host}{target.relative_uri.partition('#')[0]}"  # fragments stay local
    return METHOD_NAMES[target.http_method], url, headers, bytes(target.body)
