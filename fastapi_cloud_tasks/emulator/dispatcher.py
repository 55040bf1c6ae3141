"""Delivering due tasks and job runs over real HTTP, on the real clock, concurrently.

Each engine says what is due and when (rate limits and `max_concurrent_dispatches` included);
the dispatcher sleeps until then or until an RPC changes the picture, starts every due attempt
as its own asyncio task (a slow worker never holds up the others) and reports each outcome
back to its engine. `dispatch_deadline` is the request timeout; a timeout is a failed attempt
the next try sees as `504`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from fastapi_cloud_tasks.emulator.http_delivery import DeliveryError, HttpDelivery
from fastapi_cloud_tasks.engine.retry import retry_after as parse_retry_after

__all__ = ["Dispatcher"]

logger = logging.getLogger("fastapi_cloud_tasks.emulator")


class Source(Protocol):
    def next_due_time(self) -> datetime | None: ...
    def take_due(self) -> Any: ...
    def finish(self, dispatch: Any, status: int | None,
               retry_after: timedelta | None = None) -> Any: ...


class Dispatcher:
    def __init__(self, sources: list[Source], max_in_flight: int = 64) -> None:
        self._sources = sources
        # One laptop process is not Google's fleet: past a few dozen parallel requests a
        # local worker only slows down, so attempts wait here (still due) beyond this many.
        self.max_in_flight = max_in_flight
        self.http = HttpDelivery(max_idle=max_in_flight)
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.delivered = 0

    def wake(self) -> None:
        """Something changed (a task created, a queue resumed...): look again."""
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            for source in self._sources:
                while len(self._inflight) < self.max_in_flight and (
                    dispatch := source.take_due()
                ) is not None:
                    task = asyncio.create_task(self._deliver(source, dispatch))
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
            await self._sleep()

    async def _sleep(self) -> None:
        timer = None
        if len(self._inflight) < self.max_in_flight:  # else a finished one wakes us
            due = [t for s in self._sources if (t := s.next_due_time()) is not None]
            if due:
                timeout = (min(due) - datetime.now(timezone.utc)).total_seconds()
                timer = asyncio.get_running_loop().call_later(
                    min(max(0.0, timeout), 60.0), self._wake.set
                )
        await self._wake.wait()
        if timer is not None:
            timer.cancel()

    async def _deliver(self, source: Source, dispatch: Any) -> None:
        status: int | None = None
        retry_after: timedelta | None = None
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
            # A request that cannot even be sent (a port out of range, a header value that is
            # not ASCII...): still a failed attempt with no response. Letting it escape
            # would leave the task in flight forever, never retried.
            logger.warning("%s %s: cannot send the request: %r", dispatch.method, dispatch.url,
                           exc)
        outcome = source.finish(dispatch, status, retry_after)
        self._inflight.discard(asyncio.current_task())
        self.delivered += 1
        logger.info("%s %s -> %s (%s)", dispatch.method, dispatch.url,
                    status if status is not None else "no response", outcome.value)
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
