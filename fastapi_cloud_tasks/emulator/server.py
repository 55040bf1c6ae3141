"""The emulator process: gRPC services, HTTP delivery, and the certificates its tokens use."""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import grpc
from google.cloud import tasks_v2

from fastapi_cloud_tasks.emulator.dispatcher import Dispatcher
from fastapi_cloud_tasks.emulator.grpc_services import scheduler_handler, tasks_handler
from fastapi_cloud_tasks.engine.clock import SystemClock
from fastapi_cloud_tasks.engine.cloud_scheduler import CloudSchedulerEngine
from fastapi_cloud_tasks.engine.cloud_tasks import CloudTasksEngine
from fastapi_cloud_tasks.engine.tokens import TokenIssuer

__all__ = ["Emulator"]

logger = logging.getLogger("fastapi_cloud_tasks.emulator")
CERTS_PATH = "/oauth2/v1/certs"
JWKS_PATH = "/oauth2/v3/certs"


class Emulator:
    """Cloud Tasks + Cloud Scheduler on `host:port` (gRPC) and their signing certificates on
    `host:http_port` (HTTP: /oauth2/v1/certs as PEM, /oauth2/v3/certs as JWKS)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8123,
        *,
        http_port: int | None = None,
        queues: list[tasks_v2.Queue] | None = None,
        max_rate: float = 500.0,
        name_reservation: timedelta = timedelta(hours=24),
        max_in_flight: int = 64,
    ) -> None:
        self.host = host
        self.port = port
        self.http_port = port + 1 if http_port is None and port else (http_port or 0)
        clock = SystemClock()
        self.tokens = TokenIssuer()
        self.tasks = CloudTasksEngine(clock, max_rate=max_rate, tokens=self.tokens,
                                      name_reservation=name_reservation)
        self.scheduler = CloudSchedulerEngine(clock, tokens=self.tokens)
        for queue in queues or []:
            self.tasks.update_queue(tasks_v2.UpdateQueueRequest(queue=queue))
        self.dispatcher = Dispatcher([self.tasks, self.scheduler], max_in_flight)
        self._server: grpc.Server | None = None
        self._certs_server: asyncio.Server | None = None
        self._dispatch_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.dispatcher.bind(asyncio.get_running_loop())
        self.tasks.on_ready = self.scheduler.on_ready = self.dispatcher.wake_threadsafe
        # grpcio's threaded server, with one handler thread: every RPC is a short in-memory
        # call, and this answered a single client ~15% faster than grpc.aio on the event loop
        # (fewer hand-offs; the loop stays free for deliveries). benchmarks/bench_emulator.py.
        server = grpc.server(ThreadPoolExecutor(max_workers=1, thread_name_prefix="grpc-rpc"),
                             options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((tasks_handler(self.tasks),
                                         scheduler_handler(self.scheduler)))
        self.port = server.add_insecure_port(f"{self.host}:{self.port}")
        server.start()
        self._server = server
        self._certs_server = await asyncio.start_server(self._serve_certs, self.host,
                                                        self.http_port)
        self.http_port = self._certs_server.sockets[0].getsockname()[1]
        self._dispatch_task = asyncio.create_task(self.dispatcher.run())
        logger.warning("Cloud Tasks + Cloud Scheduler emulator on %s:%d (gRPC); certificates "
                       "at http://%s:%d%s", self.host, self.port, self.host, self.http_port,
                       CERTS_PATH)

    async def stop(self, grace: float = 5.0) -> None:
        await self.dispatcher.stop(grace)
        if self._dispatch_task is not None:
            self._dispatch_task.cancel()
        if self._server is not None:
            await asyncio.to_thread(self._server.stop(grace).wait)
        if self._certs_server is not None:
            self._certs_server.close()
            await self._certs_server.wait_closed()
        logger.warning("emulator stopped after %d deliveries", self.dispatcher.delivered)

    async def _serve_certs(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await asyncio.wait_for(reader.readline(), 5)).decode("latin-1")
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.split()
            path = parts[1] if len(parts) > 1 else ""
            if path == CERTS_PATH:
                status, body = "200 OK", json.dumps(self.tokens.certificates()).encode()
            elif path == JWKS_PATH:
                status, body = "200 OK", json.dumps(self.tokens.jwks()).encode()
            else:
                status, body = "404 Not Found", b'{"error": "not found"}'
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Cache-Control: public, max-age=300\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
