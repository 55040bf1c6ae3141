"""Delivering due tasks and job runs over real HTTP, concurrently.

Each engine says what is due and when (rate limits and `max_concurrent_dispatches` included);
the dispatcher sleeps until then or until an RPC changes the picture, starts every due attempt
as its own asyncio task (a slow worker never holds up the others) and reports each outcome
back to its engine. It reads time and sets its timers on the engines' clock: the real one in
the emulator, a `VirtualClock` in tests that prove nothing is sent without sleeping.
`dispatch_deadline` is the request timeout (on real time); a timeout is a failed attempt the
next try sees as `504`.

No failure of one attempt stops the loop: whatever goes wrong building, sending or recording
it is logged with its traceback and costs that attempt alone (the engine records it as failed
and retries it), while every other queue's deliveries go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, TypeVar

from fastapi_cloud_tasks.emulator.http_delivery import DeliveryError, HttpDelivery
from fastapi_cloud_tasks.emulator.pubsub_publish import PubsubPublisher
from fastapi_cloud_tasks.engine.clock import SystemClock, TimerClock
from fastapi_cloud_tasks.engine.cloud_scheduler import JobPublish
from fastapi_cloud_tasks.engine.cloud_tasks import DispatchError
from fastapi_cloud_tasks.engine.driver import Attempt, Source
from fastapi_cloud_tasks.engine.retry import retry_after as parse_retry_after

__all__ = ["Dispatcher"]

logger = logging.getLogger("fastapi_cloud_tasks.emulator")
RECOVERY_PAUSE = 1.0  # seconds before looking again after an unexpected engine error
D = TypeVar("D", bound=Attempt)


class Dispatcher:
    def __init__(self, sources: Sequence[Source[Any]], max_in_flight: int = 64, *,
                 clock: TimerClock | None = None) -> None:
        self._sources = sources
        self.clock = clock or SystemClock()  # the engines' own: due times are on it
        # One laptop process is not Google's fleet: past a few dozen parallel requests a
        # local worker only slows down, so attempts wait here (still due) beyond this many.
        self.max_in_flight = max_in_flight
        self.http = HttpDelivery(max_idle=max_in_flight)
        self.pubsub = PubsubPublisher()  # Pub/Sub target jobs' runs publish through it
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._paused = False  # an engine error this round: wait RECOVERY_PAUSE at least
        self.delivered = 0
        self.rounds = 0  # looks for due work so far: a test on a virtual clock waits on it

    @property
    def in_flight(self) -> int:
        """Attempts started and not yet answered."""
        return len(self._inflight)

    def wake(self) -> None:
        """Something changed (a task created, a queue resumed...): look again."""
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            for source in self._sources:
                self._start_due(source)
            self.rounds += 1
            await self._sleep()

    def _start_due(self, source: Source[D]) -> None:
        failures = 0
        while len(self._inflight) < self.max_in_flight:
            try:
                dispatch = source.take_due()
            except DispatchError:
                # The engine recorded that attempt as failed (and will retry it): go on, for a
                # bounded number of such failures per round (a retry may be due at once).
                logger.exception("could not start a delivery")
                failures += 1
                if failures >= self.max_in_flight:
                    return
                continue
            except Exception:
                # The engine could not even pick an attempt: log it, and look again after a
                # pause rather than in a loop that would flood the log.
                logger.exception("could not look for due deliveries; looking again in %g s",
                                 RECOVERY_PAUSE)
                self._paused = True
                return
            if dispatch is None:
                return
            task = asyncio.create_task(self._deliver(source, dispatch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _sleep(self) -> None:
        timer = None
        if self._paused:
            self._paused = False
            self._wake.clear()  # an RPC's wake-up would end the pause early
            resume = asyncio.Event()
            self.clock.call_later(RECOVERY_PAUSE, resume.set)
            await resume.wait()
            return
        if len(self._inflight) < self.max_in_flight:  # else a finished one wakes us
            try:
                due = [t for s in self._sources if (t := s.next_due_time()) is not None]
            except Exception:
                logger.exception("could not tell when the next delivery is due; looking again "
                                 "in %g s", RECOVERY_PAUSE)
                due = [self.clock.now() + timedelta(seconds=RECOVERY_PAUSE)]
            if due:
                timeout = (min(due) - self.clock.now()).total_seconds()
                timer = self.clock.call_later(min(max(0.0, timeout), 60.0), self._wake.set)
        await self._wake.wait()
        if timer is not None:
            timer.cancel()

    async def _deliver(self, source: Source[D], dispatch: D) -> None:
        status: int | None = None
        retry_after: timedelta | None = None
        if isinstance(dispatch, JobPublish):
            # A Pub/Sub target job's run: a publish, not a request to a worker.
            try:
                published = await self.pubsub.publish(dispatch)
            except Exception:  # as for a request: that attempt fails alone, and is retried
                logger.exception("job %s: cannot publish to %s", dispatch.record.name,
                                 dispatch.topic_name)
                published = False
            self._settle(source, dispatch, 200 if published else None, None)
            return
        try:
            response = await self.http.request(
                dispatch.method, dispatch.url, dispatch.headers, dispatch.body,
                dispatch.deadline.total_seconds(),
            )
            status = response.status_code
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        except TimeoutError:
            logger.info("%s %s: no response within %s", dispatch.method, dispatch.url,
                        dispatch.deadline)
        except DeliveryError as exc:
            logger.info("%s %s: %s", dispatch.method, dispatch.url, exc)
        except Exception as exc:
            # A request that cannot be sent for any other reason (URLs and headers that never
            # could are refused at create): still a failed attempt with no response. Letting
            # it escape would leave the task in flight forever, never retried.
            logger.warning("%s %s: cannot send the request: %r", dispatch.method, dispatch.url,
                           exc)
        self._settle(source, dispatch, status, retry_after)

    def _settle(self, source: Source[D], dispatch: D, status: int | None,
                retry_after: timedelta | None) -> None:
        """Report an attempt's result to its engine, count it, log it and look again."""
        answer = status if status is not None else "no response"
        try:
            outcome = source.finish(dispatch, status, retry_after).value
        except Exception:
            logger.exception("%s %s -> %s: the outcome could not be recorded", dispatch.method,
                             dispatch.url, answer)
            outcome = "not recorded"
        self._inflight.discard(asyncio.current_task())
        self.delivered += 1
        logger.info("%s %s -> %s (%s)", dispatch.method, dispatch.url, answer, outcome)
        self.wake()

    async def stop(self, grace: float) -> None:
        """Stop starting attempts; give those in flight `grace` seconds to finish."""
        self._stopping = True
        self.wake()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=grace)
        for task in list(self._inflight):
            task.cancel()
        self.http.close()
        self.pubsub.close()
