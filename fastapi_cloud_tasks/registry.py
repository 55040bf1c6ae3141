"""Every task and job endpoint built in this process, newest first, for test harnesses that
map a request's URL back to the code that will serve it."""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import Generic, TypeVar

__all__ = ["EndpointRegistry"]

T = TypeVar("T")


class EndpointRegistry(Generic[T]):
    """Weakly held entries in registration order (an app rebuilt by a factory shadows the
    routes of the one before it)."""

    def __init__(self) -> None:
        self._entries: weakref.WeakValueDictionary[int, T] = weakref.WeakValueDictionary()
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def add(self, entry: T) -> None:
        with self._lock:
            self._entries[next(self._counter)] = entry

    def newest_first(self) -> list[T]:
        with self._lock:
            return list(reversed(list(self._entries.values())))
