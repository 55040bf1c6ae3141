"""Every task and job endpoint built in this process, newest first, for test harnesses that
map a request's URL back to the code that will serve it."""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any, Generic, TypeVar

from fastapi_cloud_tasks.exceptions import UnsupportedRouteError

__all__ = ["EndpointRegistry", "side_of"]

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


def side_of(endpoint: Any, kind: type[T], attribute: str, decorator: str, builder: str) -> T:
    """The `kind` object a route builder attached to `endpoint` as `attribute` (or `endpoint`
    itself when it already is one): what `@delayed_task` / `@scheduled_task` return."""
    if isinstance(endpoint, kind):
        return endpoint
    side = getattr(endpoint, attribute, None)
    if not isinstance(side, kind):
        raise UnsupportedRouteError(
            f"{decorator}({getattr(endpoint, '__qualname__', endpoint)!r}): not an endpoint of a "
            f"router whose route_class is a {builder}(...). Declare the route on such a router, "
            f"and put @{decorator} above the route decorator, not below it."
        )
    return side
