"""The emulator process: the services over gRPC and over REST, HTTP delivery, and the
certificates its tokens use."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

from google.cloud import tasks_v2

from fastapi_cloud_tasks.emulator.attempt_log import AttemptLog
from fastapi_cloud_tasks.emulator.connection_limits import Limits
from fastapi_cloud_tasks.emulator.dashboard import Dashboard
from fastapi_cloud_tasks.emulator.dispatcher import Dispatcher
from fastapi_cloud_tasks.emulator.grpc_server import GrpcServer
from fastapi_cloud_tasks.emulator.http_limits import HTTP_LIMITS
from fastapi_cloud_tasks.emulator.http_server import HttpResponse, HttpServer, Router
from fastapi_cloud_tasks.emulator.quiet_log import RepeatLimiter, install_loop_handler
from fastapi_cloud_tasks.emulator.rest import REST_TRANSPORTS, add_rest_routes
from fastapi_cloud_tasks.emulator.rpcs import LOCATIONS, SCHEDULER, TASKS
from fastapi_cloud_tasks.engine.clock import SystemClock, TimerClock
from fastapi_cloud_tasks.engine.cloud_scheduler import CloudSchedulerEngine
from fastapi_cloud_tasks.engine.cloud_tasks import CloudTasksEngine
from fastapi_cloud_tasks.engine.locations_iam import Locations
from fastapi_cloud_tasks.engine.store import NO_STORE, Store
from fastapi_cloud_tasks.engine.tokens import TokenIssuer

__all__ = ["Emulator"]

logger = logging.getLogger("fastapi_cloud_tasks.emulator")
CERTS_PATH = "/oauth2/v1/certs"
JWKS_PATH = "/oauth2/v3/certs"


class Emulator:
    """Cloud Tasks + Cloud Scheduler on `host:port` (gRPC) and on `host:http_port` (REST, with
    the token signing certificates: /oauth2/v1/certs as PEM, /oauth2/v3/certs as JWKS, and
    the dashboard at /).

    The REST port answers only requests addressed to it by a loopback name, its bound address
    or one of `allowed_hosts`, and none a page of another origin sends (`SameOrigin`);
    `http_limits` bounds its connections. With `data_dir` its queues, tasks and jobs are kept
    there (emulator/persistence.py) and taken back at the next start; by default, in memory
    only. A bad `data_dir` raises `StateError`. App Engine tasks go to `app_engine_host`
    (HOST:PORT); without it they are refused at create."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8123,
        *,
        http_port: int | None = None,
        queues: list[tasks_v2.Queue] | None = None,
        auto_create_queues: bool = False,
        max_rate: float = 500.0,
        name_reservation: timedelta = timedelta(hours=24),
        max_in_flight: int = 64,
        allowed_hosts: Iterable[str] = (),
        http_limits: Limits = HTTP_LIMITS,
        grpc_limits: Limits | None = None,
        clock: TimerClock | None = None,
        data_dir: str | Path | None = None,
        app_engine_host: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.http_port = port + 1 if http_port is None and port else (http_port or 0)
        clock = clock or SystemClock()  # a test's VirtualClock moves every due time at once
        self.tokens = TokenIssuer()
        self.store: Store = NO_STORE
        if data_dir is not None:
            from fastapi_cloud_tasks.emulator.persistence import SqliteStore  # sqlite3: only here

            self.store = SqliteStore(data_dir)
        # Google answers CreateTask into a queue nobody created with NOT_FOUND; auto-creation
        # is the --auto-create-queues opt-in (the library's .delay() creates its queue).
        self.tasks = CloudTasksEngine(clock, max_rate=max_rate, tokens=self.tokens,
                                      name_reservation=name_reservation,
                                      auto_create_queues=auto_create_queues, store=self.store,
                                      app_engine_host=app_engine_host)
        self.scheduler = CloudSchedulerEngine(clock, tokens=self.tokens, store=self.store,
                                              app_engine_host=app_engine_host)
        for queue in queues or []:
            self.tasks.update_queue(tasks_v2.UpdateQueueRequest(queue=queue))
        self.attempts = AttemptLog(clock)  # the dashboard's recent attempts
        self.dispatcher = Dispatcher([self.attempts.observe(self.tasks),
                                      self.attempts.observe(self.scheduler)],
                                     max_in_flight, clock=clock)
        # One port serves both APIs: their clients' Locations calls list both's locations.
        self.locations = Locations(self.tasks, self.scheduler)
        self._grpc_server = GrpcServer([(TASKS, self.tasks), (SCHEDULER, self.scheduler),
                                        (LOCATIONS, self.locations)],
                                       grpc_limits)
        self.allowed_hosts = tuple(allowed_hosts)
        self.http_limits = http_limits
        self._http_server: HttpServer | None = None
        self._dispatch_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Every RPC, over gRPC or REST, runs on this event loop beside the deliveries; its
        # own error reports (accept failures when descriptors run out) are rate-limited.
        install_loop_handler(asyncio.get_running_loop(), RepeatLimiter())
        self.tasks.on_ready = self.scheduler.on_ready = self.dispatcher.wake
        self.port = await self._grpc_server.start(self.host, self.port)
        self._http_server = HttpServer(self._http_routes(), limits=self.http_limits,
                                       allowed_hosts=self.allowed_hosts)
        self.http_port = await self._http_server.start(self.host, self.http_port)
        self._dispatch_task = asyncio.create_task(self.dispatcher.run())
        logger.warning("Cloud Tasks + Cloud Scheduler emulator on %s:%d (gRPC) and "
                       "http://%s:%d (REST); certificates at http://%s:%d%s; dashboard at "
                       "http://%s:%d/", self.host, self.port, self.host, self.http_port,
                       self.host, self.http_port, CERTS_PATH, self.host, self.http_port)

    async def stop(self, grace: float = 5.0) -> None:
        await self.dispatcher.stop(grace)
        if self._dispatch_task is not None:
            self._dispatch_task.cancel()
        await self._grpc_server.stop(grace)
        if self._http_server is not None:
            await self._http_server.stop()
        self.store.close()
        logger.warning("emulator stopped after %d deliveries", self.dispatcher.delivered)

    def _http_routes(self) -> Router:
        router = Router()
        Dashboard(self.tasks, self.scheduler, self.attempts,
                  lambda: self.dispatcher.pubsub.published).add_routes(router)
        router.add("GET", re.escape(CERTS_PATH),
                   lambda request, match: _certs(self.tokens.certificates()))
        router.add("GET", re.escape(JWKS_PATH), lambda request, match: _certs(self.tokens.jwks()))
        add_rest_routes(router, TASKS, self.tasks)
        add_rest_routes(router, SCHEDULER, self.scheduler)
        for api in (TASKS, SCHEDULER):  # the Locations routes of each API's REST transport
            add_rest_routes(router, LOCATIONS, self.locations, REST_TRANSPORTS[api.name])
        return router


def _certs(document: object) -> HttpResponse:
    return HttpResponse(200, json.dumps(document).encode(), content_type="application/json",
                        headers=(("Cache-Control", "public, max-age=300"),))
