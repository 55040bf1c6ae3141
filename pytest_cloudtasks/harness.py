"""One test's fake Google Cloud: engine, clock and in-process deliveries, shared by the
`cloudtasks_queue` and `cloudtasks_scheduler` fixtures."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar, cast

import httpx
from google.cloud import scheduler_v1, tasks_v2

from fastapi_cloud_tasks.auth import trust_certificates
from fastapi_cloud_tasks.clients import ClientOverride, override_clients
from fastapi_cloud_tasks.engine.cloud_scheduler import CloudSchedulerEngine, JobPublish
from fastapi_cloud_tasks.engine.cloud_tasks import CloudTasksEngine, Dispatch, Outcome
from fastapi_cloud_tasks.engine.driver import Attempt as Sendable
from fastapi_cloud_tasks.engine.driver import Source
from fastapi_cloud_tasks.engine.retry import retry_after as parse_retry_after
from fastapi_cloud_tasks.engine.tokens import TokenIssuer
from fastapi_cloud_tasks.engine.transports import (
    scheduler_async_client,
    scheduler_client,
    tasks_async_client,
    tasks_client,
)
from pytest_cloudtasks.captured import Snapshots
from pytest_cloudtasks.chaos import DUPLICATE, TRANSIENT, Chaos, ChaosConfig, duplicate_headers
from pytest_cloudtasks.client_capture import capture_clients
from pytest_cloudtasks.clock import DEFAULT_BACKEND, HarnessClock
from pytest_cloudtasks.delivery import (
    APP_ENGINE_HOST,
    AppRouter,
    Delivered,
    Portal,
    deliver,
    finish_background,
)
from pytest_cloudtasks.errors import TaskFailed
from pytest_cloudtasks.failures import attempt_history, last_response
from pytest_cloudtasks.kept import Interner
from pytest_cloudtasks.lifespan import Lifespans, call_on_loop
from pytest_cloudtasks.routing import RouteCheck
from pytest_cloudtasks.runaway import RunawayGuard

__all__ = ["Attempt", "Harness", "HarnessConfig", "PublishedMessage", "TaskFailed"]


@dataclass(frozen=True)
class PublishedMessage:
    """A message a Pub/Sub target job's run published (the harness delivers nothing else)."""

    job: Any  # the CapturedJob
    schedule_time: datetime  # the occurrence this run belongs to
    publish_time: datetime
    topic_name: str
    data: bytes
    attributes: dict[str, str]


@dataclass(frozen=True)
class Attempt:
    """One delivery of a task (or scheduled job run) into the app."""

    task: Any  # CapturedTask, or CapturedJob for scheduler runs
    schedule_time: datetime  # the task's ETA, or the job occurrence this run belongs to
    status_code: int
    delivered: Delivered = field(repr=False)
    headers_sent: dict[str, str]  # exactly as the service sent them
    dispatch_time: datetime
    exception: BaseException | None
    outcome: Outcome
    number: int  # 1 for a first attempt, 2 for the first retry...
    # What the chaos settings made of it: "duplicate" (a second delivery after a success) or
    # "transient failure" (lost before reaching the app); None for an ordinary attempt.
    injected: str | None = None
    published: PublishedMessage | None = None  # a Pub/Sub target job's run: its message

    @property
    def response(self) -> httpx.Response | None:
        """The app's response; None if it raised before answering."""
        return self.delivered.response

    @functools.cached_property
    def request_headers(self) -> httpx.Headers:
        """The request's headers, case-insensitive."""
        return httpx.Headers(self.headers_sent)

    @property
    def retry_count(self) -> int:
        return self.number - 1

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def deadline_exceeded(self) -> bool:
        """The app did not answer within the attempt's deadline (status_code is then 504)."""
        return self.delivered.deadline_exceeded is not None

    def __repr__(self) -> str:
        return (f"<Attempt {self.task.describe()} -> {self.status_code} at "
                f"{self.dispatch_time.isoformat()} ({self.outcome.value})>")


@dataclass(frozen=True)
class HarnessConfig:
    start: datetime | None = None
    queue_defaults: tasks_v2.Queue | None = None
    strict: bool = False  # NotFound for queues nobody created, as in production
    fail_fast: bool = False
    max_deliveries: int = 1000
    clock_backend: str = DEFAULT_BACKEND
    tick: bool = False  # virtual time runs on with real time between moves
    lifespan: str = "auto"  # run the apps' lifespans: "auto" (if supported), "on", "off"
    # The wall-clock time an attempt may take: its dispatch/attempt deadline times this.
    deadline_scale: float = 1.0
    assert_all_handled: bool = False  # teardown: every task and job was run or asserted
    chaos: ChaosConfig = field(default_factory=ChaosConfig)  # duplicates, shuffled ties...


D = TypeVar("D", bound=Sendable)


@dataclass
class _Registered(Generic[D]):
    source: Source[D]
    capture: Callable[[D], Any]  # the CapturedTask or CapturedJob an attempt reports


class EngineClients(ClientOverride):
    """Google's four clients on a test's engines, each built on first use: a test uses one or
    two of them, and building one costs ~0.1 ms of every test's fixture set-up."""

    _engines: tuple[CloudTasksEngine, CloudSchedulerEngine]

    def __init__(self, tasks: CloudTasksEngine, scheduler: CloudSchedulerEngine) -> None:
        object.__setattr__(self, "_engines", (tasks, scheduler))  # the dataclass is frozen

    # Identity, not the dataclass's field comparison: that would build every client.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"<EngineClients of {self._engines!r}>"

    @functools.cached_property
    def tasks(self) -> tasks_v2.CloudTasksClient:
        return tasks_client(self._engines[0])

    @functools.cached_property
    def tasks_async(self) -> tasks_v2.CloudTasksAsyncClient:
        return tasks_async_client(self._engines[0])

    @functools.cached_property
    def scheduler(self) -> scheduler_v1.CloudSchedulerClient:
        return scheduler_client(self._engines[1])

    @functools.cached_property
    def scheduler_async(self) -> scheduler_v1.CloudSchedulerAsyncClient:
        return scheduler_async_client(self._engines[1])


class Harness:
    def __init__(self, app: Any, config: HarnessConfig) -> None:
        self.config = config
        if not config.deadline_scale > 0:
            raise ValueError(f"deadline_scale={config.deadline_scale!r}: give a number above 0 "
                             "(0.01 lets a 15 s deadline pass after 0.15 s).")
        self.lifespans = Lifespans(config.lifespan)
        self.background: set[Any] = set()  # app calls left running past their deadline
        self.clock = HarnessClock(config.start, config.clock_backend, config.tick)
        self.tokens = TokenIssuer()  # one key for both services, made if a token is sent
        self.engine = CloudTasksEngine(
            self.clock,
            auto_create_queues=not config.strict,
            queue_template=config.queue_defaults,
            keep_history=True,
            tokens=self.tokens,
            app_engine_host=APP_ENGINE_HOST,
        )
        self.scheduler = CloudSchedulerEngine(self.clock, tokens=self.tokens,
                                              app_engine_host=APP_ENGINE_HOST)
        self.router = AppRouter(app)
        self.portal = Portal()
        self.attempts: list[Attempt] = []
        self.published: list[PublishedMessage] = []  # Pub/Sub target jobs' messages
        self.asserted: set[str] = set()  # tasks and jobs an assertion matched, by name
        self.routes = RouteCheck()
        self.chaos = Chaos(config.chaos)
        # Every attempt is kept: lean, sharing what repeats between attempts (see kept.py).
        self._snapshots = Snapshots()
        self._interner = Interner()
        self._sources: list[_Registered[Any]] = [
            _Registered(self.engine, lambda d: self._snapshots.task(d.record)),
            _Registered(self.scheduler, lambda d: self._snapshots.job(d.record)),
        ]
        self.override = EngineClients(self.engine, self.scheduler)
        self._stack = contextlib.ExitStack()
        self._stack.callback(self.router.close)  # WSGI adapters' thread pools
        self._stack.enter_context(override_clients(self.override))
        # Google's clients the code under test made itself (client_capture.py) follow too.
        self._stack.enter_context(capture_clients(self.override))
        # Workers verifying ID tokens trust this test's signing key (and only it).
        self._stack.enter_context(trust_certificates(lambda: self.tokens.certificates()))

    @property
    def tasks_client(self) -> tasks_v2.CloudTasksClient:
        return self.override.tasks

    @property
    def scheduler_client(self) -> scheduler_v1.CloudSchedulerClient:
        return self.override.scheduler

    def after(self, delta: timedelta) -> datetime:
        """`delta` from now, with the clock frozen first: what is due by then is measured on
        the virtual clock, not on a real clock still ticking."""
        self.clock.freeze()
        return self.clock.now() + delta

    def close(self) -> None:
        __tracebackhide__ = True
        try:
            for loop in {task.get_loop() for task in self.background}:
                if not loop.is_closed():
                    call_on_loop(loop, 0, functools.partial(finish_background, self.background))
            self.lifespans.close()
        finally:
            self._stack.close()
            self.portal.close()
            self.clock.stop()

    # -- the drain loop ------------------------------------------------------------------

    async def arun(self, until: datetime | None, *, forced_only: bool = False) -> list[Attempt]:
        """Deliver, in time order, everything due up to `until` (None: until nothing is
        due), moving the clock to each dispatch time; then move the clock to `until`."""
        __tracebackhide__ = True
        done: list[Attempt] = []
        guard = RunawayGuard(self.config.max_deliveries, endless=until is None)
        while True:
            next_up = self._next(until, forced_only)
            if next_up is None:
                break
            when, registered = next_up
            guard.check(done, moved=when > self.clock.now())
            self.clock.move_to(when)
            dispatch = registered.source.take_due()
            if dispatch is None:  # rate limits: the next token is a moment later
                self.clock.move_to(when + timedelta(microseconds=1))
                continue
            failure: TaskFailed | None = None
            for attempt in await self._attempts(registered, dispatch, guard, done):
                done.append(attempt)
                try:
                    self._check(attempt)
                except TaskFailed as exc:  # the rest of a shuffled batch left already
                    failure = failure or exc
            if failure is not None:
                raise failure
        if until is not None:
            self.clock.move_to(until)
        return done

    def _next(self, until: datetime | None, forced_only: bool) -> tuple[datetime, Any] | None:
        best: tuple[datetime, _Registered[Any]] | None = None
        for registered in self._sources:
            due = registered.source.next_due_time()
            if due is None or (until is not None and due > until):
                continue
            if forced_only and due > self.clock.now():
                continue
            if best is None or due < best[0]:
                best = (due, registered)
        return best

    async def _attempts(self, registered: _Registered[D], first: D, guard: RunawayGuard,
                        done: list[Attempt]) -> list[Attempt]:
        """The attempts `first` starts: itself, or with `shuffle` every Cloud Task due now
        (the engine starts them, within its rate limits), in a seeded order; each maybe lost
        on its way (`transient_failures`) or delivered twice (`duplicates`). See chaos.py."""
        if cast(Any, registered.source) is not self.engine or not self.config.chaos.on:
            return [await self._deliver(registered, first)]  # scheduler runs: no chaos
        batch = [first]
        if self.config.chaos.shuffle:
            while len(batch) <= self.config.max_deliveries and (
                    more := registered.source.take_due()) is not None:
                batch.append(more)
            batch = self.chaos.order(batch, self.clock.now())
        made: list[Attempt] = []
        for index, dispatch in enumerate(batch):
            if index:
                guard.check([*done, *made], moved=False)
            lost = self.chaos.fails_before_app(cast(Dispatch, dispatch).record.dispatch_count)
            attempt = await self._deliver(registered, dispatch, TRANSIENT if lost else None)
            made.append(attempt)
            if attempt.outcome is Outcome.SUCCEEDED and self.chaos.duplicates_after_success():
                made.append(await self._deliver(registered, dispatch, DUPLICATE))
        return made

    async def _deliver(self, registered: _Registered[D], dispatch: D,
                       injected: str | None = None) -> Attempt:
        captured = registered.capture(dispatch)
        if isinstance(dispatch, JobPublish):
            return self._publish(registered, dispatch, captured)
        app = self.router.app_for(dispatch.url)
        headers = self._interner.headers(
            duplicate_headers(dispatch.headers) if injected == DUPLICATE else dispatch.headers)
        if injected == TRANSIENT:  # the service got no answer: the app never saw it
            result = Delivered(504, False, [], b"", None, dispatch.method, dispatch.url)
        else:
            state = await self.lifespans.state_for(app)
            result = await deliver(app, dispatch.method, dispatch.url, headers,
                                   dispatch.body, state,
                                   dispatch.deadline.total_seconds() * self.config.deadline_scale,
                                   self.background)
        retry_after = parse_retry_after(result.header(b"retry-after"))
        status = None if result.deadline_exceeded is not None else result.status_code
        if injected == DUPLICATE:  # the task is gone: the engine has nothing left to record
            outcome = Outcome.SUCCEEDED if 200 <= result.status_code < 300 else Outcome.RETRYING
        else:
            outcome = registered.source.finish(
                dispatch, None if injected == TRANSIENT else status, retry_after)
        number = _attempt_number(captured.record) + (injected == DUPLICATE)
        if injected is not None:
            self.chaos.events.append(f"{injected} of {captured.describe()} (attempt #{number}) "
                                     f"at {dispatch.dispatch_time.isoformat()}")
        attempt = Attempt(
            task=captured,
            schedule_time=dispatch.schedule_time,
            status_code=result.status_code,
            delivered=self._interner.delivered(result),
            headers_sent=headers,
            dispatch_time=dispatch.dispatch_time,
            exception=result.exception,
            outcome=outcome,
            number=number,
            injected=injected,
        )
        self.attempts.append(attempt)
        return attempt

    def _publish(self, registered: _Registered[Any], dispatch: JobPublish,
                 captured: Any) -> Attempt:
        """A Pub/Sub target job's run: its message captured (a publish here always succeeds),
        kept as an attempt too, so `attempts` shows every run."""
        message = PublishedMessage(captured, dispatch.schedule_time, dispatch.dispatch_time,
                                   dispatch.topic_name, dispatch.data, dict(dispatch.attributes))
        self.published.append(message)
        outcome = registered.source.finish(dispatch, 200)
        attempt = Attempt(
            task=captured, schedule_time=dispatch.schedule_time, status_code=200,
            delivered=Delivered(200, True, [], b"", None, dispatch.method, dispatch.url),
            headers_sent=dispatch.headers, dispatch_time=dispatch.dispatch_time, exception=None,
            outcome=outcome, number=_attempt_number(captured.record), published=message,
        )
        self.attempts.append(attempt)
        return attempt

    def _check(self, attempt: Attempt) -> None:
        __tracebackhide__ = True
        if attempt.published is not None:
            return  # no app was called
        self.routes.check(self.router.app_for(attempt.delivered.url), attempt)
        if attempt.status_code == 422:
            detail = attempt.response.text if attempt.response is not None else ""
            raise TaskFailed(
                f"{attempt.task.describe()} was rejected by the endpoint with 422: the payload "
                "does not match its schema. The service would retry it until its retries run "
                f"out.\n{detail}{self.chaos.note()}",
                attempt,
            )
        if attempt.injected == DUPLICATE and attempt.outcome is not Outcome.SUCCEEDED:
            raise TaskFailed(
                f"{attempt.task.describe()} answered {last_response(attempt).rstrip()} to a "
                f"duplicate delivery (attempt #{attempt.number}, injected): Cloud Tasks would "
                "retry it until it got a 2xx. A handler that already did this task's work "
                "(same X-CloudTasks-TaskName) should answer 2xx again."
                f"{self.chaos.note()}",
                attempt,
            )
        if attempt.outcome is Outcome.FAILED:
            raise TaskFailed(
                f"{attempt.task.describe()} failed for good after {attempt.number} attempt(s); "
                f"last response: {last_response(attempt).rstrip()}\nRequest: "
                f"{attempt.delivered.method} {attempt.delivered.url}\n"
                f"{attempt_history(self.attempts, attempt)}{self.chaos.note()}",
                attempt,
            )
        if self.config.fail_fast and attempt.exception is not None:
            raise TaskFailed(
                f"{attempt.task.describe()} raised (fail_fast is on): "
                f"{last_response(attempt)}{self.chaos.note()}",
                attempt,
            ) from attempt.exception

    def run(self, until: datetime | None, *, forced_only: bool = False) -> list[Attempt]:
        """`arun` for sync tests, on the helper thread's event loop (started only when
        something is due: moving the clock past nothing costs no thread)."""
        __tracebackhide__ = True
        if self._next(until, forced_only) is None:
            if until is not None:
                self.clock.move_to(until)
            return []
        return list(self.portal.call(self._arun_kw, until, forced_only))

    async def _arun_kw(self, until: datetime | None, forced_only: bool) -> list[Attempt]:
        return await self.arun(until, forced_only=forced_only)


def _attempt_number(record: Any) -> int:
    """Attempts made so far, this one included (read after the engine recorded it)."""
    count = getattr(record, "dispatch_count", None)  # a task
    return int(record.attempt_count if count is None else count)  # else a job run
