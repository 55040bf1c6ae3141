"""Clocks the engine reads: the real one (emulator) or one a test moves by hand (harness).

A driver that waits for due work (the emulator's dispatcher) also takes its timers from the
clock, `call_later`, so that on a `VirtualClock` it wakes when the test moves time, not after
real seconds.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Protocol

__all__ = ["Clock", "SystemClock", "Timer", "TimerClock", "VirtualClock"]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class Timer(Protocol):
    def cancel(self) -> None: ...


class TimerClock(Clock, Protocol):
    def call_later(self, seconds: float, callback: Callable[[], None]) -> Timer:
        """Call `callback` on the running event loop once this clock is `seconds` on."""
        ...


class SystemClock:
    """Wall-clock time; timers are the event loop's own."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(seconds, callback)


class VirtualClock:
    """Time that moves only when told to, and never backwards. Its timers fire when a move
    reaches them, from whatever thread moves it, on the loop that set them."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError(f"start={start!r} must be timezone-aware")
        self._now = start.astimezone(timezone.utc)
        self._lock = threading.Lock()
        self._timers: list[_VirtualTimer] = []

    def now(self) -> datetime:
        return self._now

    def move_to(self, when: datetime) -> None:
        with self._lock:
            if when > self._now:
                self._now = when
            due = [t for t in self._timers if t.when <= self._now]
            self._timers = [t for t in self._timers if t.when > self._now]
        for timer in due:
            timer.fire()

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta(0):
            raise ValueError(f"cannot move time backwards by {delta!r}")
        self.move_to(self._now + delta)

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Timer:
        timer = _VirtualTimer(self, asyncio.get_running_loop(), callback)
        with self._lock:
            timer.when = self._now + timedelta(seconds=max(0.0, seconds))
            if timer.when > self._now:
                self._timers.append(timer)
                return timer
        timer.fire()
        return timer

    def _forget(self, timer: _VirtualTimer) -> None:
        with self._lock:
            if timer in self._timers:
                self._timers.remove(timer)


class _VirtualTimer:
    def __init__(self, clock: VirtualClock, loop: asyncio.AbstractEventLoop,
                 callback: Callable[[], None]) -> None:
        self.when = clock.now()
        self._clock = clock
        self._loop = loop
        self._callback: Callable[[], None] | None = callback

    def fire(self) -> None:
        if self._callback is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._run)

    def _run(self) -> None:
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()

    def cancel(self) -> None:
        self._callback = None
        self._clock._forget(self)
