"""What the emulator's end-to-end tests drive: the emulator as a real subprocess on loopback,
and a recording FastAPI worker served by uvicorn in a thread.

Everything here is bounded: every wait has a deadline, every process is killed if it does not
stop when asked, and the worker's handler sleeps at most `MAX_SLEEP` seconds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response
from google.cloud import scheduler_v1, tasks_v2

from fastapi_cloud_tasks import (
    emulator_client,
    emulator_scheduler_client,
    task_url_audience,
    verify_cloud_tasks_token,
)

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "emu-project"
LOCATION = f"projects/{PROJECT}/locations/asia-south1"
SERVICE_ACCOUNT = "worker@emu-project.iam.gserviceaccount.com"
FIXED_AUDIENCE = "https://worker.example.com/fixed-audience"
MAX_SLEEP = 10.0  # the worker never holds a request longer than this
READY = re.compile(r"^READY (\S+):(\d+) http=(\d+)$")


class EmulatorProcess:
    """`python -m fastapi_cloud_tasks.emulator --host 127.0.0.1 --port 0 ...` as a child
    process; its stdout and stderr go to files (a pipe nobody reads could fill and block it)."""

    def __init__(self, args: Iterable[str], log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / "emulator.stdout"
        self.stderr_path = log_dir / "emulator.stderr"
        # Deliveries go straight to loopback, whatever proxy the environment names.
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["PYTHONUNBUFFERED"] = "1"
        self.command = [sys.executable, "-m", "fastapi_cloud_tasks.emulator",
                        "--host", "127.0.0.1", "--port", "0", *args]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(self.command, stdout=out, stderr=err, env=env,
                                          cwd=ROOT, start_new_session=True)
        self.host = ""
        self.port = 0
        self.http_port = 0
        self._clients: list[Any] = []

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def certs_url(self) -> str:
        return f"http://{self.host}:{self.http_port}/oauth2/v1/certs"

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.stdout_path.read_text(errors="replace").splitlines():
                match = READY.match(line.strip())
                if match:
                    self.host, port, http_port = match.groups()
                    self.port, self.http_port = int(port), int(http_port)
                    return
            if self.popen.poll() is not None:
                raise RuntimeError(f"the emulator exited with {self.popen.returncode} before "
                                   f"READY:\n{self.log()}")
            time.sleep(0.05)
        raise RuntimeError(f"no READY line from the emulator within {timeout:g} s:\n{self.log()}")

    def tasks_client(self) -> tasks_v2.CloudTasksClient:
        client = emulator_client(self.address)
        self._clients.append(client)
        return client

    def scheduler_client(self) -> scheduler_v1.CloudSchedulerClient:
        client = emulator_scheduler_client(self.address)
        self._clients.append(client)
        return client

    def close_clients(self) -> None:
        while self._clients:
            self._clients.pop().transport.close()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Send `sig` and wait up to `timeout`; the exit code, or None if it had to be killed."""
        self.close_clients()
        code: int | None = self.popen.poll()
        if code is None:
            self.popen.send_signal(sig)
            try:
                code = self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
                code = None
        return code


StartEmulator = Callable[..., EmulatorProcess]  # the `start_emulator` fixture: (*cli_args)


@dataclass
class Delivery:
    """One HTTP request the worker received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # names lower-cased (HTTP header names are case-insensitive)
    body: bytes
    received: float  # time.time() on arrival
    finished: float | None = None  # time.time() when the handler answered
    status: int | None = None
    claims: dict[str, Any] | None = None  # the verified ID token's claims, on /secure/ routes
    auth_error: str | None = None

    @property
    def task_name(self) -> str | None:
        return self.headers.get("x-cloudtasks-taskname")

    @property
    def retry_count(self) -> int:
        return int(self.headers.get("x-cloudtasks-taskretrycount", "0"))


@dataclass
class Target:
    """A FastAPI worker on 127.0.0.1 that records every request and answers as the query
    string says: `status=503,503,200` (by X-CloudTasks-TaskRetryCount, else by the number of
    earlier requests to the same URL; the last one repeats),
    `sleep=2` (seconds, at most MAX_SLEEP), `hold=KEY` (until the test calls `release(KEY)`,
    at most MAX_SLEEP: a test that needs a request still open waits for what it needs, not for
    a guessed time). Under /secure/fixed/ and /secure/url/ it first
    verifies the ID token (fixed audience, or the task URL) against `certs_url`."""

    certs_url: str
    base_url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _per_url: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    _released: set[str] = field(default_factory=set)

    def release(self, key: str) -> None:
        """Let the requests held with `hold=KEY` answer."""
        with self._lock:
            self._released.add(key)

    async def _hold(self, key: str) -> None:
        deadline = time.monotonic() + MAX_SLEEP
        while time.monotonic() < deadline:
            with self._lock:
                if key in self._released:
                    return
            await asyncio.sleep(0.01)

    def url(self, path: str) -> str:
        return self.base_url + path

    def app(self) -> FastAPI:
        app = FastAPI()
        fixed = verify_cloud_tasks_token(audience=FIXED_AUDIENCE,
                                         service_accounts=[SERVICE_ACCOUNT],
                                         certs_url=self.certs_url)
        by_url = verify_cloud_tasks_token(audience=task_url_audience(self.base_url),
                                          service_accounts=[SERVICE_ACCOUNT],
                                          certs_url=self.certs_url)
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

        @app.api_route("/{path:path}", methods=methods)
        async def record(request: Request, path: str) -> Response:
            delivery = Delivery(
                method=request.method, path=request.url.path, query=request.url.query,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=await request.body(), received=time.time(),
            )
            with self._lock:
                earlier = self._per_url[(delivery.path, delivery.query)]
                self._per_url[(delivery.path, delivery.query)] += 1
                self.deliveries.append(delivery)
            # Which answer to give: Cloud Tasks counts attempts for us; for Cloud Scheduler
            # (no such header) it is the number of earlier requests to the same URL.
            attempt = int(delivery.headers.get("x-cloudtasks-taskretrycount", earlier))
            status = 200
            if path.startswith(("secure/fixed/", "secure/url/")):
                verifier = fixed if path.startswith("secure/fixed/") else by_url
                try:
                    delivery.claims = await verifier(request)
                except HTTPException as exc:
                    delivery.auth_error = str(exc.detail)
                    status = exc.status_code
            params = request.query_params
            sleep = min(float(params.get("sleep", "0")), MAX_SLEEP)
            if sleep > 0:
                await asyncio.sleep(sleep)
            if "hold" in params:
                await self._hold(params["hold"])
            codes = [int(code) for code in params.get("status", "").split(",") if code]
            if codes and status == 200:
                status = codes[min(attempt, len(codes) - 1)]
            with self._lock:
                delivery.status = status
                delivery.finished = time.time()
            return Response(status_code=status)

        return app

    def received(self, predicate: Callable[[Delivery], bool] = lambda d: True) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if predicate(d)]

    def under(self, prefix: str) -> list[Delivery]:
        return self.received(lambda d: d.path.startswith(prefix))

    def wait_for(self, predicate: Callable[[Delivery], bool], count: int = 1,
                 timeout: float = 10.0, *, finished: bool = False) -> list[Delivery]:
        """The deliveries matching `predicate` once there are `count` (answered, if
        `finished`); AssertionError after `timeout` seconds. Polls (10 ms, growing to 100 ms):
        waking on every delivery would cost a scan per request under load."""
        deadline = time.monotonic() + timeout
        interval = 0.01
        while True:
            found = self.received(
                lambda d: predicate(d) and (not finished or d.finished is not None)
            )
            if len(found) >= count:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                shown = found if len(found) <= 20 else f"{found[:20]!r}..."
                raise AssertionError(
                    f"{len(found)} of {count} deliveries within {timeout:g} s: {shown}"
                )
            time.sleep(min(left, interval))
            interval = min(interval * 1.5, 0.1)

    def wait_under(self, prefix: str, count: int = 1, timeout: float = 10.0,
                   *, finished: bool = False) -> list[Delivery]:
        return self.wait_for(lambda d: d.path.startswith(prefix), count, timeout,
                             finished=finished)


class ThreadedServer:
    """uvicorn serving `target`'s app on a loopback socket from a daemon thread."""

    def __init__(self, target: Target) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        port = self._socket.getsockname()[1]
        target.base_url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(target.app(), log_level="warning", access_log=False,
                                lifespan="off", ws="none", backlog=2048,
                                timeout_graceful_shutdown=3, timeout_keep_alive=30)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run,
                                        kwargs={"sockets": [self._socket]},
                                        name="target-uvicorn", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the target worker did not start")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self._socket.close()


def http_task(url: str, *, name: str | None = None, body: bytes = b"",
              **settings: Any) -> tasks_v2.Task:
    """An HTTP target task; `settings` go to the Task (schedule_time, dispatch_deadline...)
    or, for `headers`/`http_method`/`oidc_token`, to its HttpRequest."""
    http_keys = {"headers", "http_method", "oidc_token", "oauth_token"}
    http = {k: settings.pop(k) for k in list(settings) if k in http_keys}
    task = tasks_v2.Task(http_request=tasks_v2.HttpRequest(url=url, body=body, **http),
                         **settings)
    if name is not None:
        task.name = name
    return task


__all__ = [
    "FIXED_AUDIENCE",
    "LOCATION",
    "MAX_SLEEP",
    "SERVICE_ACCOUNT",
    "Delivery",
    "EmulatorProcess",
    "StartEmulator",
    "Target",
    "ThreadedServer",
    "http_task",
]
