"""The Cloud Scheduler model: HTTP-target jobs fired on their cron schedule, with retries.

Occurrences come from cronsim in the job's time zone. Around DST changes we follow Debian
cron, as cronsim does: a fixed-time job whose local time is skipped by a spring-forward runs
once at the first instant after the gap; one whose local time repeats at a fall-back runs
once, at the first of the two; jobs with `*` in the minute or hour field run by elapsed time.
"""

from __future__ import annotations

import itertools
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from cronsim import CronSim
from google.api_core import exceptions
from google.cloud import scheduler_v1

from fastapi_cloud_tasks.engine.clock import Clock
from fastapi_cloud_tasks.engine.cloud_tasks import DispatchError, Outcome
from fastapi_cloud_tasks.engine.due_index import DueIndex
from fastapi_cloud_tasks.engine.fields import check_mask, check_times, copy_paths, page
from fastapi_cloud_tasks.engine.http_target import unsendable
from fastapi_cloud_tasks.engine.locations_iam import get_location, list_locations
from fastapi_cloud_tasks.engine.pubsub_target import (
    PUBLISH_URL,
    check_pubsub_target,
    publish_request,
)
from fastapi_cloud_tasks.engine.retry import backoff, later
from fastapi_cloud_tasks.engine.scheduler_app_engine import (
    app_engine_job_request,
    check_app_engine_target,
)
from fastapi_cloud_tasks.engine.store import NO_STORE, Store
from fastapi_cloud_tasks.engine.task_messages import (
    METHOD_NAMES,
    check_method,
    grpc_code,
    set_timestamp,
)
from fastapi_cloud_tasks.engine.tokens import TokenIssuer
from fastapi_cloud_tasks.exceptions import InvalidScheduleError
from fastapi_cloud_tasks.schedules import check_schedule, check_time_zone, complete_retry_config

__all__ = ["CloudSchedulerEngine", "JobDispatch", "JobPublish", "JobRecord"]

LOCATION = re.compile(r"^projects/[^/]+/locations/[^/]+$")
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
DEADLINE_RANGE = (timedelta(seconds=15), timedelta(minutes=30))
DEFAULT_DEADLINE = timedelta(seconds=180)
BAD_SCHEDULE = "Schedule or time zone is invalid."
NOT_FOUND = "Job not found."
PUBLISH_FAILED = "The message could not be published to the Pub/Sub topic."
MAX_JOBS_PAGE = 500  # ListJobsRequest.page_size: "The maximum page size is 500."
State = scheduler_v1.Job.State


@dataclass(eq=False)
class JobRecord:
    job: scheduler_v1.Job
    zone: ZoneInfo
    next_run: datetime | None  # the next occurrence (UTC); None while paused
    seq: int
    run_schedule_time: datetime | None = None  # the occurrence the current run belongs to
    attempt_count: int = 0  # attempts in the current run
    retry_at: datetime | None = None
    forced: bool = False
    in_flight: bool = False
    cron: Any = None  # the CronSim iterator that produced next_run

    @property
    def name(self) -> str:
        return str(self.job.name)

    def due_time(self) -> datetime | None:
        if self.in_flight:
            return None
        if self.retry_at is not None:
            return self.retry_at
        return self.next_run


@dataclass(frozen=True)
class JobDispatch:
    """One attempt of a job run: the HTTP request exactly as Cloud Scheduler makes it."""

    record: JobRecord
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    deadline: timedelta
    schedule_time: datetime  # the occurrence, the same on every retry of it
    dispatch_time: datetime


@dataclass(frozen=True)
class JobPublish(JobDispatch):
    """One attempt of a Pub/Sub target job's run: a publish of this message to `topic_name`
    (its method, URL and body: Pub/Sub's REST publish call). See pubsub_target.py."""

    topic_name: str = field(default="", kw_only=True)
    data: bytes = field(default=b"", kw_only=True)
    attributes: dict[str, str] = field(default_factory=dict, kw_only=True)


class CloudSchedulerEngine:
    """In-memory Cloud Scheduler. Thread-safe; time comes from `clock`. `on_ready`, as for
    `CloudTasksEngine`: called when a run may have become due sooner (a job created, updated,
    resumed or forced)."""

    def __init__(self, clock: Clock, *, tokens: TokenIssuer | None = None,
                 on_ready: Callable[[], None] | None = None, store: Store = NO_STORE,
                 app_engine_host: str | None = None) -> None:
        self.clock = clock
        # HOST:PORT standing in for the App Engine app; None refuses App Engine target jobs.
        self.app_engine_host = app_engine_host
        self.tokens = tokens or TokenIssuer()  # its key is made on first use
        self.on_ready = on_ready
        self._jobs: dict[str, JobRecord] = {}
        self._seq = itertools.count()
        self._random = random.Random()
        self._lock = threading.RLock()
        # Jobs by their next due time (then creation order), and forced runs (RunJob) by
        # creation order: a dispatch looks at the first of each, not at every job.
        self._due: DueIndex[JobRecord] = DueIndex()
        self._forced: DueIndex[JobRecord] = DueIndex()
        self._store = store  # told of every change; NO_STORE keeps nothing
        self._restore()

    def _restore(self) -> None:
        """Take back the stored jobs; an enabled one runs at its next occurrence from now
        (occurrences that fell while the emulator was down are not made up)."""
        last = -1
        for seq, job in self._store.load_jobs():
            record = JobRecord(job, check_time_zone(job.time_zone), None, seq)
            self._jobs[record.name] = record
            if job.state == State.ENABLED:
                self._schedule_next(record, self.clock.now())
            self._index(record)
            last = max(last, seq)
        self._seq = itertools.count(last + 1)

    # -- RPCs ----------------------------------------------------------------------------

    def create_job(self, request: scheduler_v1.CreateJobRequest) -> scheduler_v1.Job:
        with self._lock:
            check_times(scheduler_v1.Job.pb(request.job), "job")
            if not LOCATION.match(request.parent):
                raise exceptions.InvalidArgument(f"Invalid parent {request.parent!r}.")
            job = scheduler_v1.Job(request.job)
            if not job.name:
                # CreateJobRequest.job: "If a name is not specified then the system will
                # generate a random unique name that will be returned (name) in the response."
                # The id's shape is undocumented; we use 20 random decimal digits, as Cloud
                # Tasks does for the task ids it generates.
                job.name = f"{request.parent}/jobs/{self._random.randrange(10**20):020d}"
            parent, _, job_id = job.name.rpartition("/jobs/")
            if parent != request.parent or not JOB_ID.match(job_id):
                raise exceptions.InvalidArgument(
                    f"Job name {job.name!r} must be {request.parent}/jobs/JOB_ID, the id made "
                    "of letters, numbers, hyphens or underscores (at most 500)."
                )
            if job.name in self._jobs:
                raise exceptions.AlreadyExists("Job already exists.")
            zone = _complete(job, self.app_engine_host)
            job.state = State.ENABLED  # type: ignore[assignment]
            job.user_update_time = self.clock.now()
            record = JobRecord(job, zone, None, next(self._seq))
            self._schedule_next(record, self.clock.now())
            self._jobs[job.name] = record
            self._index(record)
            self._store.put_job(record.seq, job)
            return self._view(record)

    def get_job(self, request: scheduler_v1.GetJobRequest) -> scheduler_v1.Job:
        with self._lock:
            return self._view(self._job(request.name))

    def list_jobs(self, request: scheduler_v1.ListJobsRequest) -> scheduler_v1.ListJobsResponse:
        with self._lock:
            jobs = [self._view(r) for name, r in sorted(self._jobs.items())
                    if name.startswith(request.parent + "/jobs/")]
            items, token = page(jobs, request.page_size, request.page_token,
                                scope=f"ListJobs {request.parent}", maximum=MAX_JOBS_PAGE)
            return scheduler_v1.ListJobsResponse(jobs=items, next_page_token=token)

    def update_job(self, request: scheduler_v1.UpdateJobRequest) -> scheduler_v1.Job:
        """UpdateJob: never creates; changes the fields in the mask (snake_case), or every
        field the request sets; keeps the state."""
        with self._lock:
            raw = scheduler_v1.Job.pb(request.job)
            check_times(raw, "job")
            check_mask(list(request.update_mask.paths), raw, "Job")
            record = self._job(request.job.name)
            job = scheduler_v1.Job(record.job)
            paths = list(request.update_mask.paths) or [
                name for name in type(request.job).meta.fields
                if name in request.job and name not in ("name", "state")
            ]
            copy_paths(raw, scheduler_v1.Job.pb(job), paths)
            job.state = record.job.state
            record.zone = _complete(job, self.app_engine_host)
            record.cron = None  # the schedule or zone may have changed
            job.user_update_time = self.clock.now()
            record.job = job
            record.retry_at = None
            if job.state == State.ENABLED:
                self._schedule_next(record, self.clock.now())
            self._index(record)
            self._store.put_job(record.seq, job)
            return self._view(record)

    def delete_job(self, request: scheduler_v1.DeleteJobRequest) -> None:
        with self._lock:
            self._job(request.name)
            record = self._jobs.pop(request.name)
            self._due.discard(record)
            self._forced.discard(record)
            self._store.delete_job(request.name)

    def pause_job(self, request: scheduler_v1.PauseJobRequest) -> scheduler_v1.Job:
        with self._lock:
            record = self._job(request.name)
            if record.job.state != State.ENABLED:
                raise exceptions.FailedPrecondition("Only an ENABLED job can be paused.")
            record.job.state = State.PAUSED  # type: ignore[assignment]
            record.next_run = record.retry_at = None
            self._index(record)
            self._store.put_job(record.seq, record.job)
            return self._view(record)

    def resume_job(self, request: scheduler_v1.ResumeJobRequest) -> scheduler_v1.Job:
        with self._lock:
            record = self._job(request.name)
            if record.job.state != State.PAUSED:
                raise exceptions.FailedPrecondition("Only a PAUSED job can be resumed.")
            record.job.state = State.ENABLED  # type: ignore[assignment]
            self._schedule_next(record, self.clock.now())
            self._index(record)
            self._store.put_job(record.seq, record.job)
            return self._view(record)

    def run_job(self, request: scheduler_v1.RunJobRequest) -> scheduler_v1.Job:
        """RunJob: a run now, even while paused or while a run is in flight."""
        with self._lock:
            record = self._job(request.name)
            record.forced = True
            self._index(record)
            self._ready()
            return self._view(record)

    # The clients' Locations methods (see locations_iam); CloudSchedulerClient has no IAM ones.

    def resource_names(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def list_locations(self, request: Any) -> Any:
        return list_locations(request, self.resource_names())

    def get_location(self, request: Any) -> Any:
        return get_location(request)

    def _job(self, name: str) -> JobRecord:
        record = self._jobs.get(name)
        if record is None:
            raise exceptions.NotFound(NOT_FOUND)
        return record

    def _view(self, record: JobRecord) -> scheduler_v1.Job:
        job = scheduler_v1.Job(record.job)
        if record.next_run is not None:
            job.schedule_time = record.next_run
        return job

    def _schedule_next(self, record: JobRecord, after: datetime) -> None:
        """The first occurrence strictly after `after`, without walking minute by minute.

        Stepping on from the occurrence just taken reuses the job's cron iterator; any other
        start (create, update, resume, skipped runs) builds a new one.
        """
        if record.cron is None or after != record.next_run:
            record.cron = CronSim(record.job.schedule, after.astimezone(record.zone))
        record.next_run = next(record.cron).astimezone(timezone.utc)
        self._ready()

    def _ready(self) -> None:
        if self.on_ready is not None:
            self.on_ready()

    # -- dispatching (the driver's side) -------------------------------------------------

    def jobs(self) -> list[JobRecord]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda r: r.seq)

    def next_due_time(self) -> datetime | None:
        with self._lock:
            first = [self._first(self._due), self._first(self._forced)]
            return min((when for when, _, _ in filter(None, first)), default=None)

    def take_due(self) -> JobDispatch | None:
        """Start the next run attempt due now: of the jobs due and the forced runs (due now),
        the earliest, then the first created."""
        with self._lock:
            now = self.clock.now()
            first = [self._first(self._due), self._first(self._forced, now)]
            ready = [item for item in first if item is not None and item[0] <= now]
            if not ready:
                return None
            when, _, record = min(ready, key=lambda item: item[:2])
            if record.forced:
                record.forced = False
                record.run_schedule_time, record.attempt_count = now, 0
                record.retry_at = None
            elif record.retry_at is None:  # a new occurrence
                record.run_schedule_time, record.attempt_count = when, 0
                self._schedule_next(record, when)
            record.retry_at = None
            record.in_flight = True
            self._index(record)
            try:
                return self._dispatch(record, now)
            except Exception as exc:
                # One job must never stop every delivery: this attempt fails alone.
                assert record.run_schedule_time is not None
                self._record_attempt(record, record.run_schedule_time, now, None)
                raise DispatchError(
                    f"The request of job {record.name} could not be built; that attempt "
                    "counts as failed without a response."
                ) from exc

    def _index(self, record: JobRecord) -> None:
        """File `record` by when it is next due (not while a run is in flight, nor paused) and
        whether a RunJob waits; called after every change to its schedule, retries, runs or
        existence."""
        present = self._jobs.get(record.name) is record
        due = record.due_time() if present and not record.forced else None  # forced: now
        if due is None:
            self._due.discard(record)
        else:
            self._due.set(record, (due, record.seq))
        if record.forced and present:
            self._forced.set(record, record.seq)
        else:
            self._forced.discard(record)

    def _first(self, index: DueIndex[JobRecord], now: datetime | None = None
               ) -> tuple[datetime, int, JobRecord] | None:
        """The first job of `index`: when it is due (a forced run: `now`, the caller's, as a
        real clock has moved on since it read it), its creation order and record, after
        checking the entry still describes the job (and filing it again where it does not)."""
        while (entry := index.peek()) is not None:
            key, record = entry
            if self._jobs.get(record.name) is record:
                if index is self._forced and record.forced:
                    return now or self.clock.now(), record.seq, record
                if index is self._due and not record.forced and key == (record.due_time(),
                                                                         record.seq):
                    return key[0], record.seq, record
            self._index(record)
        return None

    def _dispatch(self, record: JobRecord, now: datetime) -> JobDispatch:
        job = scheduler_v1.Job.pb(record.job)  # raw reads: this runs on every attempt
        assert record.run_schedule_time is not None
        if job.HasField("pubsub_target"):
            return _publish(record, job.pubsub_target, now)
        occurrence = record.run_schedule_time.astimezone(record.zone)
        if job.HasField("app_engine_http_target"):
            if self.app_engine_host is None:  # stored with one, taken back without
                raise RuntimeError(
                    f"Job {record.name} has an App Engine target and no App Engine host is "
                    "set: restart the emulator with --app-engine-host HOST:PORT to run it."
                )
            method, url, sent, body = app_engine_job_request(
                job.app_engine_http_target, self.app_engine_host, {
                    "X-CloudScheduler": "true",
                    "X-CloudScheduler-JobName": record.name.rsplit("/", 1)[1],
                    "X-CloudScheduler-ScheduleTime": occurrence.isoformat(),
                })
            return JobDispatch(record, method, url, sent, body,
                               job.attempt_deadline.ToTimedelta(), record.run_schedule_time, now)
        target = job.http_target
        headers = {k: v for k, v in target.headers.items()
                   if k.lower() not in ("user-agent", "host", "content-length")}
        headers.update({
            "User-Agent": "Google-Cloud-Scheduler",
            "X-CloudScheduler": "true",
            "X-CloudScheduler-JobName": record.name.rsplit("/", 1)[1],
            "X-CloudScheduler-ScheduleTime": occurrence.isoformat(),
        })
        if target.body and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/octet-stream"
        if target.HasField("oidc_token"):
            audience = target.oidc_token.audience or target.uri
            token = self.tokens.id_token(
                email=target.oidc_token.service_account_email, audience=audience, now=now
            )
            headers["Authorization"] = f"Bearer {token}"
        method = METHOD_NAMES[target.http_method]  # set and checked at create
        return JobDispatch(record, method, target.uri, headers, target.body,
                           job.attempt_deadline.ToTimedelta(), record.run_schedule_time, now)

    def finish(
        self, dispatch: JobDispatch, status: int | None, retry_after: timedelta | None = None
    ) -> Outcome:
        """Record an attempt's result (None: no response before the attempt deadline)."""
        with self._lock:
            return self._record_attempt(dispatch.record, dispatch.schedule_time,
                                        dispatch.dispatch_time, status)

    def _record_attempt(self, record: JobRecord, schedule_time: datetime,
                        dispatch_time: datetime, status: int | None) -> Outcome:
        try:
            return self._settle(record, schedule_time, dispatch_time, status)
        finally:
            self._index(record)  # due again: its next occurrence, or a retry

    def _settle(self, record: JobRecord, schedule_time: datetime, dispatch_time: datetime,
                status: int | None) -> Outcome:
        now = self.clock.now()
        record.in_flight = False
        if record.next_run is not None and record.next_run < now:
            # Runs never overlap: occurrences that fell while this one ran are skipped.
            self._schedule_next(record, now - timedelta(microseconds=1))
        record.attempt_count += 1
        job = scheduler_v1.Job.pb(record.job)
        set_timestamp(job.last_attempt_time, dispatch_time)
        ok = status is not None and 200 <= status < 300
        # Job.status: "The response from the target for the last attempted execution", a
        # google.rpc.Status: the HTTP status mapped to its code as Cloud Tasks maps it for
        # Attempt.response_status (404 NOT_FOUND, 503 UNAVAILABLE...); no response before the
        # attempt deadline is DEADLINE_EXCEEDED.
        job.status.code = 0 if ok else grpc_code(status) if status is not None else 4
        job.status.message = "" if ok else f"HTTP {status or 504}"
        if not ok and job.HasField("pubsub_target"):
            # A publish that failed: Google documents no status for it; we pick UNAVAILABLE.
            job.status.code, job.status.message = 14, PUBLISH_FAILED
        if record.name in self._jobs:  # its status and last attempt, kept
            self._store.put_job(record.seq, record.job)
        if ok or record.name not in self._jobs:
            return Outcome.SUCCEEDED if ok else Outcome.FAILED
        config = record.job.retry_config
        retry_at = later(now, backoff(record.attempt_count, config.min_backoff_duration,
                                      config.max_backoff_duration, config.max_doublings))
        # "If specified with retry_count, the job will be retried until both limits are
        # reached" (RetryConfig.max_retry_duration; 0 = no duration limit).
        out_of_time = config.max_retry_duration <= timedelta(0) or (
            retry_at - schedule_time > config.max_retry_duration
        )
        if (
            (record.attempt_count > config.retry_count and out_of_time)
            or (record.next_run is not None and retry_at >= record.next_run)
            or job.state != State.ENABLED
        ):
            return Outcome.FAILED  # the schedule goes on: the next occurrence still runs
        record.retry_at = retry_at
        return Outcome.RETRYING


def _complete(job: scheduler_v1.Job, app_engine_host: str | None = None) -> ZoneInfo:
    """Fill the service's defaults into `job` and check it; returns its time zone."""
    try:
        check_schedule(job.schedule)
        zone = check_time_zone(job.time_zone or "UTC")
    except InvalidScheduleError:
        raise exceptions.InvalidArgument(BAD_SCHEDULE) from None
    job.time_zone = job.time_zone or "UTC"
    if "pubsub_target" in job:
        return _complete_pubsub(job, zone)
    if "app_engine_http_target" in job:
        check_app_engine_target(job, app_engine_host)
        _complete_retry_config(job)
        return zone
    if "http_target" not in job:
        raise exceptions.InvalidArgument("Only HTTP target jobs are supported here.")
    target = scheduler_v1.Job.pb(job).http_target  # raw: an unknown enum value warns in proto-plus
    if not target.uri.startswith(("http://", "https://")):
        raise exceptions.InvalidArgument("HttpTarget.uri must start with 'http://' or 'https://'.")
    check_method(target, "HttpTarget")
    problem = unsendable(target.uri, target.headers, "HttpTarget.uri")
    if problem is not None:
        raise exceptions.InvalidArgument(problem)
    _complete_retry_config(job)
    if "attempt_deadline" not in job:
        job.attempt_deadline = DEFAULT_DEADLINE
    elif not DEADLINE_RANGE[0] <= job.attempt_deadline <= DEADLINE_RANGE[1]:
        raise exceptions.InvalidArgument("attempt_deadline must be between 15s and 30m.")
    return zone


def _complete_retry_config(job: scheduler_v1.Job) -> None:
    try:
        job.retry_config = complete_retry_config(job.retry_config)
    except InvalidScheduleError as exc:
        raise exceptions.InvalidArgument(str(exc)) from None


def _complete_pubsub(job: scheduler_v1.Job, zone: ZoneInfo) -> ZoneInfo:
    """A Pub/Sub target job: its message checked, its retry config completed; its
    attempt_deadline is kept as given ("For Pub/Sub targets, this field is ignored")."""
    target = scheduler_v1.Job.pb(job).pubsub_target
    check_pubsub_target(job.name, target.topic_name, target.data, dict(target.attributes))
    _complete_retry_config(job)
    return zone


def _publish(record: JobRecord, target: Any, now: datetime) -> JobPublish:
    """The publish of a Pub/Sub target job's run. Cloud Scheduler publishes the job's data and
    attributes as they are; it documents no attribute of its own, so none is added."""
    attributes = dict(target.attributes)
    assert record.run_schedule_time is not None
    return JobPublish(
        record, "POST", PUBLISH_URL.format(topic=target.topic_name),
        {"Content-Type": "application/json"},
        publish_request(target.topic_name, target.data, attributes),
        DEFAULT_DEADLINE, record.run_schedule_time, now,
        topic_name=target.topic_name, data=target.data, attributes=attributes,
    )
