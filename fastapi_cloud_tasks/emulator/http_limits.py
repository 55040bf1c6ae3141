"""The HTTP/1.1 port's bounds, as `connection_limits.Limits` are the gRPC port's; apart from
`http_server` so that the CLI shows the defaults without importing h11 (the `[emulator]` extra).

A browser or `requests` reconnects cheaply, so an idle connection goes sooner than a gRPC
channel. One request at a time per connection: the per-connection buffer is the per-request
body, 32 MiB as Google's HTTP APIs take.
"""

from __future__ import annotations

from fastapi_cloud_tasks.emulator.connection_limits import Limits

__all__ = ["HTTP_LIMITS"]

HTTP_LIMITS = Limits(idle_timeout=30.0, buffer_limit=32 * 1024 * 1024,
                     total_buffer_limit=128 * 1024 * 1024)
