"""Log lines a hostile or broken peer can repeat, without letting it fill the disk.

Seen: with file descriptors exhausted, asyncio logged "socket.accept() out of system resource"
~12,000 times a second (806 MB in 5 minutes). A `RepeatLimiter` writes the first line of a
kind, then at most one line per `interval` seconds saying how many it held back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["RepeatLimiter", "install_loop_handler"]

MAX_KINDS = 1_000  # kinds of line remembered at once: past this the count starts afresh


class RepeatLimiter:
    """`allow(kind)` is True for the first line of `kind` and then once per `interval`
    seconds; `held_back(kind)` says how many were dropped since the last one allowed."""

    def __init__(self, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._kinds: dict[object, list[float]] = {}  # kind -> [next allowed, held back]

    def allow(self, kind: object) -> bool:
        now = self._clock()
        state = self._kinds.get(kind)
        if state is None:
            if len(self._kinds) >= MAX_KINDS:
                self._kinds.clear()
            self._kinds[kind] = [now + self.interval, 0.0]
            return True
        if now >= state[0]:
            state[0] = now + self.interval
            return True
        state[1] += 1
        return False

    def held_back(self, kind: object) -> int:
        """How many lines of `kind` were dropped since the last allowed; the count restarts."""
        state = self._kinds.get(kind)
        if state is None:
            return 0
        count, state[1] = int(state[1]), 0.0
        return count

    def log(self, logger: logging.Logger, level: int, kind: object, message: str,
            *args: object) -> None:
        """`logger.log(level, message, *args)` unless a line of `kind` was written less than
        `interval` seconds ago; the line written next says how many were held back."""
        if not self.allow(kind):
            return
        dropped = self.held_back(kind)
        if dropped:
            message += f" ({dropped} more like it in the last {self.interval:g} s not logged)"
        logger.log(level, message, *args)


def install_loop_handler(loop: asyncio.AbstractEventLoop, limiter: RepeatLimiter) -> None:
    """Route the loop's own error reports (accept failures, unretrieved task exceptions)
    through `limiter`, one kind per message."""

    def handle(handled_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        kind = ("asyncio", context.get("message"))
        if not limiter.allow(kind):
            return
        dropped = limiter.held_back(kind)
        if dropped:
            context = {**context, "message": f"{context.get('message')} ({dropped} more like "
                                              f"it in the last {limiter.interval:g} s not logged)"}
        handled_loop.default_exception_handler(context)

    loop.set_exception_handler(handle)
