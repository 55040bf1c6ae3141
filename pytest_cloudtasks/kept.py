"""What the harness keeps of each attempt, kept lean: every attempt of a test is kept (for
`attempts`, failure messages and `advance()`'s answer), and a day of 100 every-minute jobs is
144,000 of them. Values that repeat from one attempt to the next (header names and values,
URLs, a response's headers, small bodies) are stored once and shared; the task or job behind an
attempt shares its request with the others (`captured.Snapshots`); the `httpx.Response` is built
only when a test reads it."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from pytest_cloudtasks.delivery import Delivered

__all__ = ["Interner"]

T = TypeVar("T", str, bytes)
SMALL = 512  # longer values are rarely equal: keep them as they are
LIMIT = 100_000  # distinct values remembered per test, at most


class Interner:
    """Equal small values, stored once."""

    def __init__(self) -> None:
        self._seen: dict[Any, Any] = {}

    def __call__(self, value: T) -> T:
        if len(value) > SMALL:
            return value
        kept: T | None = self._seen.get(value)
        if kept is not None:
            return kept
        if len(self._seen) < LIMIT:
            self._seen[value] = value
        return value

    def headers(self, headers: dict[str, str]) -> dict[str, str]:
        return {self(name): self(value) for name, value in headers.items()}

    def delivered(self, delivered: Delivered) -> Delivered:
        """`delivered` with its response headers and body shared with equal earlier ones."""
        fields = tuple(delivered.headers)
        headers: list[tuple[bytes, bytes]] | None = self._seen.get(fields)
        if headers is None:
            headers = [(self(name), self(value)) for name, value in fields]
            if len(self._seen) < LIMIT:
                self._seen[fields] = headers
        return dataclasses.replace(delivered, headers=headers, body=self(delivered.body),
                                   url=self(delivered.url))
