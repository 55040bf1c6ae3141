"""The driver's side of the Cloud Tasks engine: which task is due next across queues (a
due-time index, so a dispatch costs the same beside 1,000 idle queues), the HTTP request of
each attempt exactly as Cloud Tasks makes it, and what an attempt's result does to its task
(deleted, retried with backoff, or dropped).

A mixin of `CloudTasksEngine`, which holds the state declared below and answers the RPCs.
"""

from __future__ import annotations

import heapq
import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from google.cloud import tasks_v2

from fastapi_cloud_tasks.engine.app_engine import app_engine_headers, app_engine_request
from fastapi_cloud_tasks.engine.clock import Clock
from fastapi_cloud_tasks.engine.due_index import DueIndex
from fastapi_cloud_tasks.engine.queue_target import apply_queue_target
from fastapi_cloud_tasks.engine.retry import backoff, later, retries_exhausted
from fastapi_cloud_tasks.engine.store import Store
from fastapi_cloud_tasks.engine.task_messages import METHOD_NAMES, attempt_message, set_timestamp
from fastapi_cloud_tasks.engine.task_records import (
    Dispatch,
    DispatchError,
    Outcome,
    QueueState,
    TaskRecord,
)
from fastapi_cloud_tasks.engine.tokens import TokenIssuer

__all__ = ["TaskDispatching"]

DEFAULT_DEADLINE = timedelta(minutes=10)
REPLACED_HEADERS = {"user-agent", "host", "content-length"}


class TaskDispatching:
    """Taking due tasks and settling their attempts; see the module docstring."""

    clock: Clock
    tokens: TokenIssuer
    on_ready: Callable[[], None] | None
    app_engine_host: str | None
    name_reservation: timedelta
    _lock: threading.RLock
    _queues: dict[str, QueueState]
    _tasks: dict[str, TaskRecord]
    _tombstones: dict[str, datetime]
    _sweep_at: int
    _forced: dict[str, TaskRecord]
    _ready_queues: DueIndex[QueueState]
    _throttled: DueIndex[QueueState]
    _random: random.Random
    _store: Store

    def _remove(self, record: TaskRecord, now: datetime | None = None) -> None:
        self._tasks.pop(record.name, None)
        self._forced.pop(record.name, None)
        record.version += 1
        now = now or self.clock.now()
        self._tombstones[record.name] = until = now + self.name_reservation
        self._store.delete_task(record.name, until)
        if len(self._tombstones) >= self._sweep_at:  # names are reserved for a while, not forever
            self._tombstones = {n: t for n, t in self._tombstones.items() if t > now}
            self._sweep_at = max(1024, 2 * len(self._tombstones))

    def _push(self, queue: QueueState, record: TaskRecord) -> None:
        record.version += 1
        heapq.heappush(queue.heap, (record.schedule_time, record.seq, record.version, record.name))
        if queue.running:  # a paused queue is in neither index (`_index` when it paused)
            self._index(queue)
            self._ready()

    def _ready(self) -> None:
        if self.on_ready is not None:
            self.on_ready()

    # -- dispatching (the driver's side) -------------------------------------------------

    def pending(self, queue_name: str | None = None) -> list[TaskRecord]:
        """Pending tasks in dispatch order (schedule time, then creation order)."""
        with self._lock:
            records = [r for r in self._tasks.values()
                       if queue_name is None or r.queue_name == queue_name]
            return sorted(records, key=lambda r: (r.schedule_time, r.seq))

    def next_due_time(self) -> datetime | None:
        """When the next dispatch may happen (forced tasks: now); None if nothing can run."""
        with self._lock:
            now = self.clock.now()
            if any(not r.in_flight for r in self._forced.values()):
                return now
            self._promote(now)
            times = []
            ready = self._first(self._ready_queues)
            if ready is not None:  # it has a token: due when its task is
                times.append(max(ready[1].schedule_time, now))
            throttled = self._first(self._throttled)
            if throttled is not None:
                queue, top = throttled
                times.append(max(top.schedule_time, queue.bucket.ready_at(now)))
            return min(times, default=None)

    def take_due(self) -> Dispatch | None:
        """Start the next attempt that is due now, if any, and return what to send: a forced
        task first, else the oldest due task (schedule time, then creation order) of the
        queues that are running, below their concurrency limit and have a token."""
        with self._lock:
            now = self.clock.now()
            forced = ([r for r in self._forced.values() if not r.in_flight] if self._forced
                      else None)  # most takes: nothing forced, no list built
            if forced:
                record = min(forced, key=lambda r: r.seq)
                del self._forced[record.name]
                return self._start(record, self._queues[record.queue_name], now, forced=True)
            self._promote(now)
            while (ready := self._first(self._ready_queues)) is not None:
                queue, top = ready
                if top.schedule_time > now:
                    return None
                if queue.bucket.ready_at(now) > now:  # not expected: a ready queue keeps its token
                    self._index(queue)
                    continue
                return self._start(top, queue, now, forced=False)
            return None

    def _index(self, queue: QueueState, now: datetime | None = None) -> None:
        """File `queue` by when it can next dispatch: under `_ready_queues` if it has a token
        now, `_throttled` if it waits for one, in neither if it cannot dispatch (paused, at
        its concurrency limit, or nothing pending). Called after every change to a queue's
        tasks, state, limits or attempts in flight that can move it (an attempt settling, only
        when that takes the queue off its concurrency limit); time alone only moves queues
        from `_throttled` to `_ready_queues` (`_promote`), as tokens only ever accrue."""
        top = None
        if queue.can_dispatch():
            top = self._top(queue)
        if top is None:
            self._ready_queues.discard(queue)
            self._throttled.discard(queue)
            return
        now = now or self.clock.now()
        token_at = queue.bucket.ready_at(now)
        if token_at <= now:
            self._throttled.discard(queue)
            self._ready_queues.set(queue, (top.schedule_time, top.seq))
        else:
            self._ready_queues.discard(queue)
            self._throttled.set(queue, (max(top.schedule_time, token_at), top.seq))

    def _promote(self, now: datetime) -> None:
        """File again the throttled queues whose token (and task) time has come."""
        while (entry := self._throttled.peek()) is not None and entry[0][0] <= now:
            self._index(entry[1])  # ready now, or throttled until a later instant

    def _first(self, index: DueIndex[QueueState]) -> tuple[QueueState, TaskRecord] | None:
        """The first queue of `index` and its oldest pending task, after checking the entry
        still describes the queue (and filing it again where it does not)."""
        while (entry := index.peek()) is not None:
            (when, seq), queue = entry
            top = self._top(queue)
            if (top is not None and top.seq == seq and top.schedule_time <= when
                    and queue.can_dispatch()
                    and (index is self._throttled or top.schedule_time == when)):
                return queue, top
            self._index(queue)
        return None

    def _top(self, queue: QueueState) -> TaskRecord | None:
        while queue.heap:
            _, _, version, name = queue.heap[0]
            record = self._tasks.get(name)
            if record is not None and record.version == version and not record.in_flight:
                return record
            heapq.heappop(queue.heap)
        return None

    def _start(
        self, record: TaskRecord, queue: QueueState, now: datetime, forced: bool
    ) -> Dispatch:
        if not forced:
            queue.bucket.take(now)
        queue.in_flight += 1
        record.in_flight = True
        record.version += 1  # drops its heap entry
        self._index(queue, now)
        try:
            return self._request(record, now)
        except Exception as exc:
            # One task must never stop every queue's deliveries: this attempt fails alone.
            self._record_attempt(record, record.schedule_time, now, None, None)
            raise DispatchError(
                f"The request of task {record.name} could not be built; that attempt counts "
                "as failed without a response and the task is retried as usual."
            ) from exc

    def _request(self, record: TaskRecord, now: datetime) -> Dispatch:
        task = tasks_v2.Task.pb(record.task)
        deadline = (
            task.dispatch_deadline.ToTimedelta() if task.HasField("dispatch_deadline")
            else DEFAULT_DEADLINE  # App Engine: the 10 min of automatic scaling (app_engine.py)
        )
        if task.HasField("app_engine_http_request"):
            return self._app_engine_request(record, task, deadline, now)
        http = task.http_request
        number, url, sent_headers, body, auth = (
            http.http_method, http.url, http.headers, http.body, http)
        queue = self._queues.get(record.queue_name)
        if queue is not None and tasks_v2.Queue.pb(queue.queue).HasField("http_target"):
            # Queue.http_target applies to every HTTP task of the queue, at each attempt.
            number, url, sent_headers, body, auth = apply_queue_target(
                tasks_v2.Queue.pb(queue.queue).http_target, http)
        headers = {k: v for k, v in sent_headers.items() if k.lower() not in REPLACED_HEADERS}
        headers.update(self._cloud_tasks_headers(record))
        if auth.HasField("oidc_token"):
            audience = auth.oidc_token.audience or url
            token = self.tokens.id_token(
                email=auth.oidc_token.service_account_email, audience=audience, now=now
            )
            headers["Authorization"] = f"Bearer {token}"
        elif auth.HasField("oauth_token"):
            headers["Authorization"] = f"Bearer ya29.fake-{self._random.getrandbits(64):x}"
        method = METHOD_NAMES[number]  # set and checked at create (the queue's at its update)
        return Dispatch(record, method, url, headers, bytes(body), deadline,
                        record.schedule_time, now)

    def _app_engine_request(
        self, record: TaskRecord, task: Any, deadline: timedelta, now: datetime
    ) -> Dispatch:
        queue = self._queues.get(record.queue_name)
        if self.app_engine_host is None:  # created with one, taken back (--data-dir) without
            raise RuntimeError(
                f"Task {record.name} is an App Engine task and no App Engine host is set: "
                "restart the emulator with --app-engine-host HOST:PORT to deliver it."
            )
        method, url, headers, body = app_engine_request(
            task, tasks_v2.Queue.pb(queue.queue) if queue is not None else None,
            self.app_engine_host)
        headers.update(app_engine_headers(self._cloud_tasks_headers(record)))
        return Dispatch(record, method, url, headers, body, deadline, record.schedule_time, now)

    def _cloud_tasks_headers(self, record: TaskRecord) -> dict[str, str]:
        headers = {
            "User-Agent": "Google-Cloud-Tasks",
            "X-CloudTasks-QueueName": record.queue_name.rsplit("/", 1)[1],
            "X-CloudTasks-TaskName": record.name.rsplit("/", 1)[1],
            "X-CloudTasks-TaskRetryCount": str(record.dispatch_count),
            "X-CloudTasks-TaskExecutionCount": str(record.execution_count),
            "X-CloudTasks-TaskETA": f"{record.schedule_time.timestamp():.6f}",
        }
        if record.dispatch_count:
            headers["X-CloudTasks-TaskPreviousResponse"] = str(record.previous_response)
            headers["X-CloudTasks-TaskRetryReason"] = ""
        return headers

    def finish(
        self, dispatch: Dispatch, status: int | None, retry_after: timedelta | None = None
    ) -> Outcome:
        """Record an attempt's result: `status` None means no response before the deadline."""
        with self._lock:
            return self._record_attempt(dispatch.record, dispatch.schedule_time,
                                        dispatch.dispatch_time, status, retry_after)

    def _record_attempt(
        self, record: TaskRecord, schedule_time: datetime, dispatch_time: datetime,
        status: int | None, retry_after: timedelta | None,
    ) -> Outcome:
        queue = self._queues.get(record.queue_name)
        now = self.clock.now()
        try:
            return self._settle(record, queue, schedule_time, dispatch_time, status,
                                retry_after, now)
        finally:
            # One in flight less changes where the queue is filed only if that takes it off
            # its concurrency limit: the task was in flight, so never its top, and a retry is
            # filed again by `_push`; its tokens only ever accrue (`_promote`).
            if queue is not None and queue.in_flight + 1 >= queue.max_concurrent:
                self._index(queue, now)

    def _settle(
        self, record: TaskRecord, queue: QueueState | None, schedule_time: datetime,
        dispatch_time: datetime, status: int | None, retry_after: timedelta | None,
        now: datetime,
    ) -> Outcome:
        if queue is not None:
            queue.in_flight -= 1
        record.in_flight = False
        record.dispatch_count += 1
        record.previous_response = 504 if status is None else status
        if status is not None:
            record.response_count += 1
            if status < 500:
                record.execution_count += 1
        if record.first_attempt_time is None:
            record.first_attempt_time = dispatch_time
        succeeded = status is not None and 200 <= status < 300
        if record.name not in self._tasks:  # deleted or purged while in flight
            return Outcome.SUCCEEDED if succeeded else Outcome.FAILED
        if succeeded:  # the task is gone: no output fields left to keep current
            self._remove(record, now)
            return Outcome.SUCCEEDED
        task = tasks_v2.Task.pb(record.task)
        task.dispatch_count = record.dispatch_count
        task.response_count = record.response_count
        attempt = attempt_message(schedule_time, dispatch_time, now, status)
        if not task.HasField("first_attempt"):
            task.first_attempt.CopyFrom(attempt)
        task.last_attempt.CopyFrom(attempt)
        retry = self._retry_config(record)
        if queue is None or retries_exhausted(
            attempts=record.dispatch_count,
            max_attempts=retry.max_attempts,
            first_attempt=record.first_attempt_time,
            max_retry_duration=retry.max_retry_duration,
            created=record.created,
            now=now,
        ):
            self._remove(record, now)
            return Outcome.FAILED
        wait = backoff(record.dispatch_count, retry.min_backoff, retry.max_backoff,
                       retry.max_doublings)
        # App Engine targets: "a 429 (Too Many Requests) response ... does not" throttle.
        slows = status == 503 or (status == 429 and not task.HasField("app_engine_http_request"))
        if retry_after is not None and slows:
            wait = max(wait, retry_after)
        record.schedule_time = later(now, wait)
        set_timestamp(task.schedule_time, record.schedule_time)
        self._push(queue, record)
        self._store.put_task(record)
        return Outcome.RETRYING

    def _retry_config(self, record: TaskRecord) -> tasks_v2.RetryConfig:
        if record.retry_config is not None:
            return record.retry_config
        config: tasks_v2.RetryConfig = self._queues[record.queue_name].queue.retry_config
        return config
