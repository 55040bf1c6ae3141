"""The Cloud Tasks model: queues, tasks, dedup, retries and rate limits, with no I/O.

The engine answers the RPCs (as the "service" behind Google's clients, see `transports`) and
tells a driver what to dispatch and when (`task_dispatch`, its driver's side); the driver makes
the HTTP request and reports the outcome. The pytest harness drives it with a virtual clock
and in-process ASGI calls, the emulator with the real clock and real HTTP.
"""

from __future__ import annotations

import itertools
import random
import re
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from google.api_core import exceptions
from google.cloud import tasks_v2
from google.longrunning import operations_pb2

from fastapi_cloud_tasks.engine.app_engine import (
    APP_ENGINE_DEADLINE_RANGE,
    check_app_engine_request,
)
from fastapi_cloud_tasks.engine.clock import Clock
from fastapi_cloud_tasks.engine.due_index import DueIndex
from fastapi_cloud_tasks.engine.fields import check_mask, check_times, copy_paths, page
from fastapi_cloud_tasks.engine.locations_iam import IamPolicies, get_location, list_locations
from fastapi_cloud_tasks.engine.queue_config import MAX_RATE, TokenBucket, complete_queue
from fastapi_cloud_tasks.engine.queue_filter import queue_filter
from fastapi_cloud_tasks.engine.store import NO_STORE, Store
from fastapi_cloud_tasks.engine.task_dispatch import TaskDispatching
from fastapi_cloud_tasks.engine.task_messages import (
    check_http_request,
    copy_message,
    overlay_queue,
    set_timestamp,
    task_view,
)
from fastapi_cloud_tasks.engine.task_records import (
    Dispatch,
    DispatchError,
    Outcome,
    QueueState,
    TaskRecord,
)
from fastapi_cloud_tasks.engine.tokens import TokenIssuer

__all__ = ["CloudTasksEngine", "Dispatch", "DispatchError", "Outcome", "TaskRecord"]

QUEUE_MISSING = (
    "Queue does not exist. If you just created the queue, wait at least a minute for the queue "
    "to initialize."
)
NOT_FOUND = "Requested entity was not found."
ALREADY_EXISTS = "Requested entity already exists"
LOCATION = re.compile(r"^projects/[^/]+/locations/[^/]+$")
QUEUE_NAME = re.compile(r"^(projects/[^/]+/locations/[^/]+)/queues/([A-Za-z0-9-]{1,100})$")
TASK_ID = re.compile(r"^[A-Za-z0-9_-]{1,500}$")
MAX_TASK_BYTES = 1024 * 1024
MAX_SCHEDULE_AHEAD = timedelta(days=30)
DEADLINE_RANGE = (timedelta(seconds=15), timedelta(minutes=30))
UPDATABLE_QUEUE_FIELDS = [field.name for field in tasks_v2.Queue.pb().DESCRIPTOR.fields
                          if field.name not in ("name", "state", "purge_time")]
# ListQueuesRequest/ListTasksRequest.page_size: "The maximum page size is 9800" / "is 1000".
MAX_QUEUES_PAGE, MAX_TASKS_PAGE = 9800, 1000


class CloudTasksEngine(TaskDispatching):
    """In-memory Cloud Tasks. Thread-safe; time comes from `clock`.

    `auto_create_queues`: a task sent to a queue nobody created creates it with the defaults
    (in production terraform or the builder made it); a deleted queue stays NotFound. Off,
    such a task is NOT_FOUND, as on Google: the emulator's default, the harness's `strict`.
    `on_ready`: called when a task may have become due sooner than the driver last heard (a
    task created or retried on a running queue, a queue resumed or updated, a RunTask), so a
    driver sleeping until the next due time can look again. It must not block.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        auto_create_queues: bool = True,
        name_reservation: timedelta = timedelta(hours=24),
        max_rate: float = MAX_RATE,
        tokens: TokenIssuer | None = None,
        on_ready: Callable[[], None] | None = None,
        queue_template: tasks_v2.Queue | None = None,
        keep_history: bool = False,
        store: Store = NO_STORE,
        app_engine_host: str | None = None,
    ) -> None:
        self.clock = clock
        # HOST:PORT standing in for the project's App Engine app; None refuses App Engine tasks.
        self.app_engine_host = app_engine_host
        self.auto_create_queues = auto_create_queues
        self.name_reservation = name_reservation
        self.max_rate = max_rate
        self.tokens = tokens or TokenIssuer()  # its key is made on first use
        self.on_ready = on_ready
        self.queue_template = queue_template
        # Every task ever created, for a test to inspect; the emulator keeps none.
        self.history: list[TaskRecord] | None = [] if keep_history else None
        self._queues: dict[str, QueueState] = {}
        self._iam = IamPolicies(lambda name: self._queues.get(name), NOT_FOUND)
        self._deleted_queues: set[str] = set()
        self._tasks: dict[str, TaskRecord] = {}
        self._tombstones: dict[str, datetime] = {}
        self._sweep_at = 1024  # tombstone count that triggers dropping the expired ones
        self._forced: dict[str, TaskRecord] = {}  # RunTask requests not yet dispatched
        # Queues that could dispatch, by their oldest pending task: those with a token now
        # (`_ready`, by the task's schedule time), and those waiting for one (`_throttled`, by
        # when both task and token are there). See `_index`.
        self._ready_queues: DueIndex[QueueState] = DueIndex()
        self._throttled: DueIndex[QueueState] = DueIndex()
        self._seq = itertools.count()
        self._random = random.Random()
        self._lock = threading.RLock()
        self._store = store  # told of every change; NO_STORE keeps nothing
        self._restore()

    def _restore(self) -> None:
        """Take back what the store kept: queues as they were, tasks at their schedule time
        with their counters, names still reserved, deleted queues' names still refused."""
        state = self._store.load_tasks(self.clock.now())
        with self._store.atomic():  # _add_queue stores each queue again: one write
            for queue in state.queues:
                self._add_queue(queue)
        self._deleted_queues.update(state.deleted_queues)
        self._tombstones.update(state.reserved)
        for record in state.tasks:
            self._tasks[record.name] = record
            self._push(self._queues[record.queue_name], record)
        self._seq = itertools.count(max((r.seq for r in state.tasks), default=-1) + 1)

    # -- queues --------------------------------------------------------------------------

    def create_queue(self, request: tasks_v2.CreateQueueRequest) -> tasks_v2.Queue:
        with self._lock:
            check_times(tasks_v2.Queue.pb(request.queue), "queue")
            if not LOCATION.match(request.parent):
                raise exceptions.InvalidArgument(f"Invalid parent {request.parent!r}.")
            name = request.queue.name
            match = QUEUE_NAME.match(name)
            if match is None or match.group(1) != request.parent:
                raise exceptions.InvalidArgument(
                    f"Queue name {name!r} must be {request.parent}/queues/QUEUE_ID, the id made "
                    "of letters, numbers and hyphens (at most 100)."
                )
            if name in self._queues:
                raise exceptions.AlreadyExists("Queue already exists")
            if name in self._deleted_queues:
                raise exceptions.FailedPrecondition(
                    "The queue cannot be created because a queue with this name existed too "
                    "recently."
                )
            return tasks_v2.Queue(self._add_queue(request.queue).queue)

    def _add_queue(self, queue: tasks_v2.Queue) -> QueueState:
        if self.queue_template is not None:  # settings the queue leaves unset
            queue = overlay_queue(self.queue_template, queue)
        stored = complete_queue(queue, max_rate=self.max_rate)
        rates = stored.rate_limits
        bucket = TokenBucket(rates.max_dispatches_per_second, rates.max_burst_size,
                             self.clock.now())
        self._queues[stored.name] = record = QueueState(stored, bucket)
        self._store.put_queue(stored)
        return record

    def get_queue(self, request: tasks_v2.GetQueueRequest) -> tasks_v2.Queue:
        with self._lock:
            return tasks_v2.Queue(self._queue(request.name, NOT_FOUND).queue)

    def list_queues(self, request: tasks_v2.ListQueuesRequest) -> tasks_v2.ListQueuesResponse:
        with self._lock:
            matches = queue_filter(request.filter)  # refused before anything is listed
            queues = [q.queue for name, q in sorted(self._queues.items())
                      if name.startswith(request.parent + "/queues/") and (
                          matches is None or matches(tasks_v2.Queue.pb(q.queue)))]
            # "It is an error to switch the value of the filter while iterating through pages."
            items, token = page(queues, request.page_size, request.page_token,
                                scope=f"ListQueues {request.parent} {request.filter}",
                                maximum=MAX_QUEUES_PAGE)
            return tasks_v2.ListQueuesResponse(queues=items, next_page_token=token)

    def update_queue(self, request: tasks_v2.UpdateQueueRequest) -> tasks_v2.Queue:
        """UpdateQueue: changes the fields in the mask (all set fields without one), and
        creates the queue if it is missing."""
        with self._lock:
            name = request.queue.name
            if QUEUE_NAME.match(name) is None:
                raise exceptions.InvalidArgument(f"Invalid queue name {name!r}.")
            raw = tasks_v2.Queue.pb(request.queue)
            check_times(raw, "queue")
            check_mask(list(request.update_mask.paths), raw, "Queue")
            current = self._queues.get(name)
            if current is None:
                if name in self._deleted_queues:
                    raise exceptions.NotFound(QUEUE_MISSING)
                return tasks_v2.Queue(self._add_queue(request.queue).queue)
            merged = tasks_v2.Queue(current.queue)
            # UpdateQueueRequest.update_mask: "If empty, then all fields will be updated": all
            # but the name and the output-only state and purge_time; unset ones get defaults.
            paths = list(request.update_mask.paths) or UPDATABLE_QUEUE_FIELDS
            copy_paths(raw, tasks_v2.Queue.pb(merged), paths)
            # Output-only and derived values are recomputed from the new settings.
            merged.rate_limits.max_burst_size = 0
            stored = complete_queue(merged, max_rate=self.max_rate)
            current.queue = stored
            self._store.put_queue(stored)
            rates = stored.rate_limits
            current.bucket = TokenBucket(rates.max_dispatches_per_second,
                                         rates.max_burst_size, self.clock.now())
            self._index(current)
            self._ready()
            return tasks_v2.Queue(stored)

    def delete_queue(self, request: tasks_v2.DeleteQueueRequest) -> None:
        with self._lock:
            self._queue(request.name, NOT_FOUND)
            queue = self._queues.pop(request.name)
            self._ready_queues.discard(queue)
            self._throttled.discard(queue)
            self._deleted_queues.add(request.name)
            self._store.delete_queue(request.name)
            for record in self._tasks_of(request.name):
                del self._tasks[record.name]
                self._forced.pop(record.name, None)

    def purge_queue(self, request: tasks_v2.PurgeQueueRequest) -> tasks_v2.Queue:
        with self._lock, self._store.atomic():
            queue = self._queue(request.name, NOT_FOUND)
            for record in self._tasks_of(request.name):
                self._remove(record)
            self._index(queue)
            queue.queue.purge_time = self.clock.now()
            self._store.put_queue(queue.queue)
            return tasks_v2.Queue(queue.queue)

    def pause_queue(self, request: tasks_v2.PauseQueueRequest) -> tasks_v2.Queue:
        return self._set_state(request.name, tasks_v2.Queue.State.PAUSED)

    def resume_queue(self, request: tasks_v2.ResumeQueueRequest) -> tasks_v2.Queue:
        return self._set_state(request.name, tasks_v2.Queue.State.RUNNING)

    def _set_state(self, name: str, state: int) -> tasks_v2.Queue:
        with self._lock:
            queue = self._queue(name, NOT_FOUND)
            queue.queue.state = state  # type: ignore[assignment]
            self._store.put_queue(queue.queue)
            self._index(queue)
            if queue.running:
                self._ready()
            return tasks_v2.Queue(queue.queue)

    def _queue(self, name: str, missing: str) -> QueueState:
        queue = self._queues.get(name)
        if queue is None:
            raise exceptions.NotFound(missing)
        return queue

    def _tasks_of(self, queue_name: str) -> list[TaskRecord]:
        return [r for r in self._tasks.values() if r.queue_name == queue_name]

    # -- the clients' Locations and IAM methods (see locations_iam) ---------------------

    def resource_names(self) -> list[str]:
        with self._lock:
            return list(self._queues)

    def list_locations(self, request: Any) -> Any:
        return list_locations(request, self.resource_names())

    def get_location(self, request: Any) -> Any:
        return get_location(request)

    def get_iam_policy(self, request: Any) -> Any:
        with self._lock:
            return self._iam.get_iam_policy(request)

    def set_iam_policy(self, request: Any) -> Any:
        with self._lock:
            return self._iam.set_iam_policy(request)

    def test_iam_permissions(self, request: Any) -> Any:
        with self._lock:
            return self._iam.test_iam_permissions(request)

    # -- tasks ---------------------------------------------------------------------------

    def create_task(self, request: tasks_v2.CreateTaskRequest) -> tasks_v2.Task:
        with self._lock:
            return self._commit(request, *self._prepare(request, self.clock.now()))

    def _prepare(
        self, request: tasks_v2.CreateTaskRequest, now: datetime
    ) -> tuple[QueueState | None, Any, datetime, tasks_v2.RetryConfig | None]:
        """Every create-time check, changing nothing: the queue (None: one to auto-create on
        commit), the stored task (raw protobuf), its first schedule time and its own completed
        retry config, if it has one. A task refused here leaves no queue behind."""
        # Raw protobuf access: proto-plus attribute access dominated the emulator's CPU.
        raw = tasks_v2.CreateTaskRequest.pb(request)
        parent = raw.parent
        check_times(raw.task, "task")
        queue = self._queue_for_task(parent)
        task = copy_message(raw.task)
        app_engine = task.HasField("app_engine_http_request")
        if app_engine:
            check_app_engine_request(task, self.app_engine_host)
        else:
            check_http_request(task)
        if task.name:
            self._check_new_name(task.name, parent, now)
        else:
            # 19 digits, as Google's own; getrandbits(63) < 10**19 costs a C call, randrange ~50
            # bytecodes on the path of every create.
            task.name = f"{parent}/tasks/{self._random.getrandbits(63):019d}"
        when = now
        if task.HasField("schedule_time"):
            when = max(now, task.schedule_time.ToDatetime(tzinfo=timezone.utc))
            if when - now > MAX_SCHEDULE_AHEAD:
                raise exceptions.InvalidArgument(
                    "Task.schedule_time is too far in the future: at most 30 days ahead."
                )
        set_timestamp(task.schedule_time, when)
        low, high = APP_ENGINE_DEADLINE_RANGE if app_engine else DEADLINE_RANGE
        if task.HasField("dispatch_deadline") and not (
            low <= task.dispatch_deadline.ToTimedelta() <= high
        ):
            raise exceptions.InvalidArgument(
                "Task.dispatch_deadline must be between 15 seconds and "
                + ("24 hours 15 seconds for an App Engine task." if app_engine
                   else "30 minutes.")
            )
        if task.ByteSize() > MAX_TASK_BYTES:
            raise exceptions.InvalidArgument("Task size exceeds the maximum of 1 MiB.")
        retry = None
        if task.HasField("retry_config"):  # checked now, not at its first failure
            overridden = tasks_v2.Queue(name=parent, retry_config=request.task.retry_config)
            retry = complete_queue(overridden, max_rate=self.max_rate).retry_config
        return queue, task, when, retry

    def _commit(
        self, request: tasks_v2.CreateTaskRequest, queue: QueueState | None, task: Any,
        when: datetime, retry: tasks_v2.RetryConfig | None,
    ) -> tasks_v2.Task:
        now = self.clock.now()
        set_timestamp(task.create_time, now.replace(microsecond=0))
        raw = tasks_v2.CreateTaskRequest.pb(request)
        if queue is None:  # auto-created now that the task passed every check
            queue = self._queues.get(raw.parent) or self._add_queue(tasks_v2.Queue(name=raw.parent))
        record = TaskRecord(task=tasks_v2.Task.wrap(task), request=request,
                            seq=next(self._seq), created=now, name=task.name,
                            queue_name=raw.parent, schedule_time=when, retry_config=retry)
        self._tasks[record.name] = record
        self._store.put_task(record)
        if self.history is not None:
            self.history.append(record)
        self._push(queue, record)
        return task_view(record.task, raw.response_view)

    def batch_create_tasks(self, request: tasks_v2.BatchCreateTasksRequest) -> Any:
        """BatchCreateTasks: up to 100 tasks for one queue, as a finished long-running
        operation. All are checked before any is created, so a bad one creates none."""
        with self._lock, self._store.atomic():
            if not 0 < len(request.requests) <= 100:
                raise exceptions.InvalidArgument(
                    "BatchCreateTasksRequest.requests must hold 1 to 100 CreateTaskRequests."
                )
            for item in request.requests:
                if item.parent != request.parent:
                    raise exceptions.InvalidArgument(
                        f"Every CreateTaskRequest.parent must equal the batch's parent "
                        f"({request.parent}), got {item.parent!r}."
                    )
            names = [item.task.name for item in request.requests if item.task.name]
            if len(set(names)) != len(names):
                raise exceptions.InvalidArgument("The batch names the same task twice.")
            now = self.clock.now()
            prepared = [self._prepare(item, now) for item in request.requests]  # all or none
            created = [self._commit(item, *ready)
                       for item, ready in zip(request.requests, prepared, strict=True)]
            response = tasks_v2.BatchCreateTasksResponse(tasks=created)
            operation = operations_pb2.Operation(
                name=f"{request.parent}/operations/{self._random.getrandbits(64):016x}",
                done=True,
            )
            operation.response.Pack(tasks_v2.BatchCreateTasksResponse.pb(response))
            operation.metadata.Pack(
                tasks_v2.BatchCreateTasksMetadata.pb(tasks_v2.BatchCreateTasksMetadata())
            )
            return operation

    def _queue_for_task(self, parent: str) -> QueueState | None:
        """The task's queue; None for one `_commit` auto-creates."""
        queue = self._queues.get(parent)
        if queue is not None:
            return queue
        if QUEUE_NAME.match(parent) is None:
            raise exceptions.InvalidArgument(
                f"Invalid parent {parent!r}: expected projects/P/locations/L/queues/Q."
            )
        if not self.auto_create_queues or parent in self._deleted_queues:
            raise exceptions.NotFound(QUEUE_MISSING)
        return None

    def _check_new_name(self, name: str, parent: str, now: datetime) -> None:
        queue_part, _, task_id = name.rpartition("/tasks/")
        if not TASK_ID.match(task_id):
            raise exceptions.InvalidArgument(
                "Task name must be of the form projects/PROJECT/locations/LOCATION/queues/QUEUE/"
                "tasks/TASK_ID; TASK_ID can contain only letters ([A-Za-z]), numbers ([0-9]), "
                "hyphens (-), or underscores (_). The maximum length is 500 characters."
            )
        if queue_part != parent:
            raise exceptions.InvalidArgument(
                f"The queue in the task name ({queue_part}) must equal the parent ({parent})."
            )
        expiry = self._tombstones.get(name)
        if expiry is not None and expiry <= now:
            del self._tombstones[name]
            expiry = None
        if name in self._tasks or expiry is not None:
            raise exceptions.AlreadyExists(ALREADY_EXISTS)

    def get_task(self, request: tasks_v2.GetTaskRequest) -> tasks_v2.Task:
        with self._lock:
            return task_view(self._task(request.name).task, request.response_view)

    def list_tasks(self, request: tasks_v2.ListTasksRequest) -> tasks_v2.ListTasksResponse:
        with self._lock:
            self._queue(request.parent, QUEUE_MISSING)
            tasks = [task_view(r.task, request.response_view) for r in self.pending(request.parent)]
            items, token = page(tasks, request.page_size, request.page_token,
                                scope=f"ListTasks {request.parent}", maximum=MAX_TASKS_PAGE)
            return tasks_v2.ListTasksResponse(tasks=items, next_page_token=token)

    def delete_task(self, request: tasks_v2.DeleteTaskRequest) -> None:
        with self._lock:
            record = self._task(request.name)
            self._remove(record)
            self._index(self._queues[record.queue_name])

    def run_task(self, request: tasks_v2.RunTaskRequest) -> tasks_v2.Task:
        """RunTask: dispatch now, whatever the schedule, pause state or rate limits."""
        with self._lock:
            record = self._task(request.name)
            self._forced[record.name] = record
            self._ready()
            return task_view(record.task, request.response_view)

    def _task(self, name: str) -> TaskRecord:
        record = self._tasks.get(name)
        if record is None:
            raise exceptions.NotFound(NOT_FOUND)
        return record
