"""A priority index of keys (queues, jobs) by when they are next due, so that finding the next
dispatch costs O(log n) however many queues or jobs exist.

Each key holds at most one live entry. Setting a key again or discarding it leaves its old heap
entry behind, stale: stale entries are skipped when they reach the top (lazy invalidation) and
dropped all at once when they outnumber the live ones, so the heap stays within about twice the
number of keys.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

__all__ = ["DueIndex"]

K = TypeVar("K", bound=Hashable)


class DueIndex(Generic[K]):
    """Keys by priority (any tuple that sorts, e.g. `(due_time, seq)`), the smallest first."""

    def __init__(self) -> None:
        self._heap: list[tuple[Any, int, K]] = []
        self._live: dict[K, tuple[Any, int]] = {}  # key -> (priority, entry number)
        self._numbers = itertools.count()  # entries never compare keys: numbers are unique

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: K) -> bool:
        return key in self._live

    def set(self, key: K, priority: Any) -> None:
        """Index `key` at `priority` (replacing where it was)."""
        live = self._live.get(key)
        if live is not None and live[0] == priority:
            return
        number = next(self._numbers)
        self._live[key] = (priority, number)
        heapq.heappush(self._heap, (priority, number, key))
        if len(self._heap) > 2 * len(self._live) + 64:
            self._compact()

    def discard(self, key: K) -> None:
        self._live.pop(key, None)

    def peek(self) -> tuple[Any, K] | None:
        """The smallest priority and its key, or None when the index is empty."""
        heap = self._heap
        while heap:
            priority, number, key = heap[0]
            live = self._live.get(key)
            if live is not None and live[1] == number:
                return priority, key
            heapq.heappop(heap)
        return None

    def _compact(self) -> None:
        self._heap = [(priority, number, key)
                      for key, (priority, number) in self._live.items()]
        heapq.heapify(self._heap)
