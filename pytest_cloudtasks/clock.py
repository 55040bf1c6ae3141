"""The harness clock: real time until a test first moves it, then virtual and moved by hand.

The contract, the same under both backends (README, "Time"):
- `datetime.now()`, `date.today()`, `time.time()` (and `time_ns`, `localtime`, `gmtime`,
  `strftime`) read the virtual clock from the first move on (from the start with `start=`).
  It stands still between moves, or with `tick` runs on with real time from each move.
- `time.monotonic()` and `time.perf_counter()` (and their `_ns` twins) are never faked: they
  stay the real, continuous clocks, so a duration measured across a move is the real one, and
  the event loop's timers (and the harness's dispatch deadlines) run on real time. time-machine
  does not fake them; freezegun does, so the freezegun backend puts the real ones back.

time-machine, the default, patches the C functions behind `datetime` and `time` (~15 µs a
start). freezegun replaces `datetime.datetime` by its `FakeDatetime` in every loaded module
(~15 ms a start, and pydantic cannot build a schema for `FakeDatetime` without the hook below).
"""

from __future__ import annotations

import importlib.util
import time
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "HarnessClock"]

BACKENDS = ("freezegun", "time-machine")
DEFAULT_BACKEND = "time-machine"
# Modules freezegun must leave on real time, so asyncio and the test runner keep working.
_IGNORE = ["asyncio", "anyio", "concurrent", "threading", "selectors", "_pytest", "pluggy"]
_MODULES = {"time-machine": "time_machine", "freezegun": "freezegun"}
# The real monotonic clock: `tick` measures real time between moves with it.
_real_monotonic = time.monotonic


class HarnessClock:
    """Implements the engine's `Clock`."""

    def __init__(self, start: datetime | None, backend: str = DEFAULT_BACKEND,
                 tick: bool = False) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"clock backend {backend!r}: use one of {BACKENDS}")
        if importlib.util.find_spec(_MODULES[backend]) is None:
            raise ValueError(f"clock backend {backend!r} needs `pip install {backend}`")
        self.backend = backend
        self.tick = tick
        self._virtual = start.astimezone(timezone.utc) if start is not None else None
        self._moved_at = 0.0  # real monotonic time of the last move (for `tick`)
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
        if self.tick and self.frozen:
            return self._virtual + timedelta(seconds=_real_monotonic() - self._moved_at)
        return self._virtual

    def freeze(self) -> None:
        """Stop following real time: from now on only `move_to` (and `tick`) move it."""
        if self.frozen:
            return
        self._virtual = self.now()  # the start, or the real time at the first move
        if self.backend == "freezegun":
            self._start_freezegun(self._virtual)
        else:
            self._start_time_machine(self._virtual)
        self._moved_at = _real_monotonic()

    def _start_time_machine(self, when: datetime) -> None:
        import time_machine

        self._patcher = time_machine.travel(when, tick=self.tick)
        try:
            self._traveller = self._patcher.start()
        except RuntimeError as exc:  # freezegun's freeze_time is active
            self._patcher = None
            raise RuntimeError(
                f"The cloudtasks clock (time-machine) cannot start: {exc} Set "
                "`cloudtasks_clock = freezegun` so both use freezegun, or move time with "
                "time_machine.travel in this test instead of freezegun."
            ) from None
        self._start_ticking()

    def _start_freezegun(self, when: datetime) -> None:
        from freezegun import freeze_time

        _teach_pydantic_fake_datetimes()
        self._patcher = freeze_time(when, ignore=_IGNORE, tick=self.tick, real_asyncio=True)
        self._traveller = self._patcher.start()
        _stop_stack_inspection(self._patcher)
        _keep_real_counters(self._patcher)

    def _start_ticking(self) -> None:
        """time-machine's tick counts from the first read after a start or a move: read once,
        so the app's clock and `now()` both count from the move."""
        if self.tick:
            time.time_ns()

    def move_to(self, when: datetime) -> None:
        self.freeze()
        now = self.now()
        if when > now:
            self._virtual = when
            self._traveller.move_to(when)
            self._moved_at = _real_monotonic()
            if self.backend == "time-machine":
                self._start_ticking()

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
    every `time.time()` call it looks 5 frames up the stack and answers real time if any frame
    belongs to one of them. That look-up catches the code under test: a test function is 2
    frames below `_pytest`, a sync endpoint 3 below anyio's and threading's worker thread, an
    async test 1 below asyncio. The ignored modules keep real references and the event loop
    keeps its real clock (`real_asyncio`), so this freeze needs no look-up.
    """
    from freezegun import api

    lists = getattr(api, "ignore_lists", None)
    if lists and lists[-1] == patcher.ignore:
        lists[-1] = ()


# freezegun's fakes of the counters, by name in `freezegun.api`, and the real functions.
_COUNTERS = {
    "monotonic": ("fake_monotonic", "real_monotonic"),
    "monotonic_ns": ("fake_monotonic_ns", "real_monotonic_ns"),
    "perf_counter": ("fake_perf_counter", "real_perf_counter"),
    "perf_counter_ns": ("fake_perf_counter_ns", "real_perf_counter_ns"),
}


def _keep_real_counters(patcher: Any) -> None:
    """Undo freezegun's `monotonic`/`perf_counter` fakes, in `time` and in every module it
    patched: they jump from the real since-boot value to the frozen epoch time (~57 years) at
    the start and then stand still, so any duration measured across a move is nonsense. Its
    `stop()` puts the real ones back everywhere anyway."""
    from freezegun import api

    reals = {}
    for name, (fake_name, real_name) in _COUNTERS.items():
        fake, real = getattr(api, fake_name, None), getattr(api, real_name, None)
        if fake is not None and real is not None:
            reals[id(fake)] = real
            if getattr(time, name) is fake:
                setattr(time, name, real)
    for module, attribute, original in getattr(patcher, "undo_changes", ()):
        if id(getattr(module, attribute, None)) in reals:
            setattr(module, attribute, original)


def _teach_pydantic_fake_datetimes() -> None:
    """Give freezegun's `FakeDatetime` and `FakeDate` the core schema of the real classes.

    While freezegun is on, `datetime` in every module is `FakeDatetime`, so an annotation
    evaluated then (FastAPI >= 0.137 builds an included route's fields on its first request;
    any FastAPI does at import; `from __future__ import annotations` makes them strings read
    from the module) names `FakeDatetime`, for which pydantic has no schema: every request got
    a 500, "Invalid args for response field". With the hook the field is a plain `datetime`
    field: it validates to, and serializes from, real datetimes (which freezegun's classes
    accept as instances). Harmless outside freezegun: nothing else builds those classes.
    """
    from freezegun import api

    if "__get_pydantic_core_schema__" in vars(api.FakeDatetime):  # taught (this import of it)
        return

    def schema_of(real: type) -> Any:
        def __get_pydantic_core_schema__(cls: type, source: Any, handler: Any) -> Any:
            return handler.generate_schema(real)

        return classmethod(__get_pydantic_core_schema__)

    # setattr: freezegun's classes declare no such attribute (their stubs would refuse it).
    setattr(api.FakeDatetime, "__get_pydantic_core_schema__", schema_of(api.real_datetime))  # noqa: B010
    setattr(api.FakeDate, "__get_pydantic_core_schema__", schema_of(api.real_date))  # noqa: B010


def _real_now() -> datetime:
    return datetime.now(timezone.utc)
