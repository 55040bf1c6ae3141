"""Clocks the engine reads: the real one (emulator) or one a test moves by hand (harness)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Protocol

__all__ = ["Clock", "SystemClock", "VirtualClock"]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class VirtualClock:
    """Time that moves only when told to, and never backwards."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError(f"start={start!r} must be timezone-aware")
        self._now = start.astimezone(timezone.utc)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._now

    def move_to(self, when: datetime) -> None:
        with self._lock:
            if when > self._now:
                self._now = when

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta(0):
            raise ValueError(f"cannot move time backwards by {delta!r}")
        self.move_to(self._now + delta)
