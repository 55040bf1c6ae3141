"""The harness clock: real time until a test first moves it, then frozen and moved by hand.

Application code sees the same instant as the engine: `datetime.now()` and `time.time()` are
frozen through freezegun (or time-machine) from the first move on. Freezing costs ~15 ms, so
tests that never move time never pay it.
"""

from __future__ import annotations

import importlib.util
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["BACKENDS", "HarnessClock"]

BACKENDS = ("freezegun", "time-machine")
# Modules freezegun must leave on real time, so asyncio and the test runner keep working.
_IGNORE = ["asyncio", "anyio", "concurrent", "threading", "selectors", "_pytest", "pluggy"]


class HarnessClock:
    """Implements the engine's `Clock`."""

    def __init__(self, start: datetime | None, backend: str = "freezegun") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"clock backend {backend!r}: use one of {BACKENDS}")
        if backend == "time-machine" and importlib.util.find_spec("time_machine") is None:
            raise ValueError("clock backend 'time-machine' needs `pip install time-machine`")
        self.backend = backend
        self._virtual = start.astimezone(timezone.utc) if start is not None else None
        self._patcher: Any = None
        self._traveller: Any = None
        if start is not None:  # an explicit start: app code must see it from the beginning
            self.freeze()

    @property
    def frozen(self) -> bool:
        return self._traveller is not None

    def now(self) -> datetime:
        if self._virtual is None:  # not frozen yet, following real time
            return _real_now()
        return self._virtual

    def freeze(self) -> None:
        """Stop following real time: from now on only `move_to` changes the time."""
        if self.frozen:
            return
        self._virtual = self.now()  # the start, or the real time at the first move
        if self.backend == "freezegun":
            from freezegun import freeze_time

            self._patcher = freeze_time(self._virtual, ignore=_IGNORE, real_asyncio=True)
            self._traveller = self._patcher.start()
            _stop_stack_inspection(self._patcher)
        else:
            import time_machine

            self._patcher = time_machine.travel(self._virtual, tick=False)
            self._traveller = self._patcher.start()

    def move_to(self, when: datetime) -> None:
        self.freeze()
        assert self._virtual is not None
        if when > self._virtual:
            self._virtual = when
            self._traveller.move_to(when)

    def advance(self, delta: timedelta) -> None:
        self.move_to(self.now() + delta)

    def stop(self) -> None:
        if self._patcher is not None:
            self._patcher.stop()
            self._patcher = self._traveller = None


def _stop_stack_inspection(patcher: Any) -> None:
    """Let everything called while frozen see the virtual time, however it was called.

    freezegun uses its ignore list twice: at start it leaves those modules' own references to
    the time functions alone (pytest's timing, threading, queue: what must stay real), and on
    every `time.time()`/`time.monotonic()` call it looks 5 frames up the stack and answers real
    time if any frame belongs to one of them. That look-up catches the code under test: a test
    function is 2 frames below `_pytest`, a sync endpoint 3 below anyio's and threading's worker
    thread, an async test 1 below asyncio. The ignored modules keep real references and the
    event loop keeps its real clock (`real_asyncio`), so this freeze needs no look-up.
    """
    from freezegun import api

    lists = getattr(api, "ignore_lists", None)
    if lists and lists[-1] == patcher.ignore:
        lists[-1] = ()


def _real_now() -> datetime:
    return datetime.now(timezone.utc)
