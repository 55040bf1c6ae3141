"""What one gRPC port lets its peers hold: connections, time, and bytes of requests not yet
whole. Seen from outside without them: 2,000 idle sockets kept open, a frame dribbled a byte
every 20 s kept forever, 8 connections holding 582 MB of unfinished bodies."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Budget", "Limits"]


@dataclass(frozen=True)
class Limits:
    max_connections: int = 256  # past this a new connection is refused at once (GOAWAY)
    idle_timeout: float = 300.0  # a connection with no stream open and nothing received
    head_timeout: float = 10.0  # a frame, a header block or the preface, once begun
    body_timeout: float = 60.0  # a request, from its headers to its last byte
    buffer_limit: int = 64 * 1024 * 1024  # unfinished request bodies, one connection
    total_buffer_limit: int = 256 * 1024 * 1024  # the same, all connections together

    def __post_init__(self) -> None:
        for name in ("max_connections", "buffer_limit", "total_buffer_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}: give 1 or more.")
        for name in ("idle_timeout", "head_timeout", "body_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r}: give a number of seconds "
                                 "above 0.")

    @property
    def tick(self) -> float:
        """How often the timeouts are looked at: often enough to hold each within a quarter."""
        return min(self.idle_timeout, self.head_timeout, self.body_timeout) / 4


class Budget:
    """Bytes of unfinished request bodies held across a server's connections."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
