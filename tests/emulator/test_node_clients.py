"""Node's `@google-cloud/tasks` and `@google-cloud/scheduler` against the shared emulator: a
foreign client family (grpc-js, and gax's REST transport) over queues, tasks, jobs and errors.

`node/clients.cjs` runs every scenario family once per transport and prints what the clients
returned as JSON; each test here asserts one family of one run. The clients are the versions
pinned in `node/package-lock.json`, installed once (`npm ci`) into a cache folder outside the
repository; without node or npm, or offline, the module is skipped with the reason.

Over REST, gax 5 raises gaxios' error as it is (googleapis/gax-nodejs#1803): its `code` is the
HTTP status, and the gRPC code's name is the `status` of Google's JSON error body.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from emulator_support import FIXED_AUDIENCE, LOCATION, SERVICE_ACCOUNT, EmulatorProcess, Target
from google.api_core import exceptions

NODE_DIR = Path(__file__).parent / "node"
LOCK_FILES = ("package.json", "package-lock.json")
TRANSPORTS = ["grpc", "grpc-deflate", "grpc-gzip", "rest"]
NODE_TIMEOUT = 60.0  # seconds for one run of every family (about 2 s when well)
INSTALL_TIMEOUT = 300.0
# npm's messages when the registry cannot be reached: skip, as without node; anything else fails.
OFFLINE = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH",
           "EHOSTUNREACH", "network")
BIG_BODY = b"node " * 60000  # as clients.cjs sends it


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fastapi-cloud-tasks-node"


def install_node_clients() -> tuple[str, Path]:
    """node's path and the node_modules folder of the pinned clients, installed on first use
    into a folder named by the lock files' digest (another pin, another folder); skips the test
    where node or npm is missing or the registry cannot be reached."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(f"node is not installed: `node` is {node!r}, `npm` is {npm!r} on PATH; "
                    "install Node.js 18 or later to run Node's clients against the emulator")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30,
                             check=False).stdout.strip()
    if int(version.lstrip("v").split(".")[0] or 0) < 18:
        pytest.skip(f"node is {version!r}; Node's Cloud Tasks clients need 18 or later")
    digest = hashlib.sha256(b"".join((NODE_DIR / name).read_bytes() for name in LOCK_FILES))
    folder = _cache_root() / digest.hexdigest()[:16]
    if (folder / "installed").exists():
        return node, folder / "node_modules"
    # Install beside it, then rename: a concurrent run (xdist) never sees half a folder.
    staging = folder.with_name(f"{folder.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        for name in LOCK_FILES:
            shutil.copyfile(NODE_DIR / name, staging / name)
        # Offline, npm's default retries take over a minute to give up: one retry, soon.
        command = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error",
                   "--fetch-retries=1", "--fetch-retry-mintimeout=1000",
                   "--fetch-retry-maxtimeout=5000"]
        try:
            done = subprocess.run(command, cwd=staging, capture_output=True, text=True,
                                  timeout=INSTALL_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            pytest.skip(f"`npm ci` of Node's clients took over {INSTALL_TIMEOUT:g} s "
                        "(no registry?); run it again online")
        if done.returncode != 0:
            why = "; ".join((done.stderr.strip() or done.stdout.strip()).splitlines()[:4])
            if any(word in why for word in OFFLINE):
                pytest.skip(f"cannot install Node's clients (offline?): `npm ci` said {why!r}")
            pytest.fail(f"`npm ci` in {staging} failed with {done.returncode}:\n{why}")
        (staging / "installed").write_text(version + "\n")
        try:
            staging.rename(folder)
        except OSError:
            if not (folder / "installed").exists():  # not another run's install that won
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return node, folder / "node_modules"


class CountingRelay:
    """A loopback TCP relay to `port` that counts the bytes clients send through it: it shows
    whether grpc-js really compressed its requests."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.sent = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name="node-relay").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:  # closed
                return
            server = socket.create_connection(("127.0.0.1", self.upstream), timeout=30)
            for source, sink, counted in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pump, args=(source, sink, counted),
                                 daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while data := source.recv(65536):
                if counted:
                    with self._lock:
                        self.sent += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:  # either side done: both ends go (the other pump then stops too)
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it
        self._server.close()


@pytest.fixture(scope="module")
def node_clients() -> tuple[str, Path]:
    return install_node_clients()


@pytest.fixture(scope="module", params=TRANSPORTS, ids=TRANSPORTS)
def run(request: pytest.FixtureRequest, node_clients: tuple[str, Path],
        emulator: EmulatorProcess, target: Target) -> dict[str, Any]:
    """One run of clients.cjs over `request.param`: its JSON, plus `ident` (the prefix of its
    queue, job and worker paths) and `sent` (bytes through the gRPC relay)."""
    node, modules = node_clients
    transport = request.param
    ident = f"node-{transport}-{uuid.uuid4().hex[:8]}"
    relay = CountingRelay(emulator.port)
    args = {"modules": str(modules), "transport": transport, "host": emulator.host,
            "grpcPort": relay.port, "httpPort": emulator.http_port, "location": LOCATION,
            "ident": ident, "target": target.base_url, "audience": FIXED_AUDIENCE,
            "serviceAccount": SERVICE_ACCOUNT}
    # Loopback only: no proxy (grpc-js and gaxios honour *_proxy), no credentials, no metadata
    # server (gcp-metadata's own switch).
    env = {k: v for k, v in os.environ.items()
           if "proxy" not in k.lower() and not k.startswith("GOOGLE_")}
    env["METADATA_SERVER_DETECTION"] = "none"
    try:
        done = subprocess.run([node, str(NODE_DIR / "clients.cjs"), json.dumps(args)],
                              capture_output=True, text=True, env=env, timeout=NODE_TIMEOUT,
                              check=False)
    finally:
        relay.close()
    assert done.returncode == 0, f"clients.cjs over {transport} failed:\n{done.stderr}"
    results: dict[str, Any] = json.loads(done.stdout)
    results.update(ident=ident, sent=relay.sent)
    return results


def family(run: dict[str, Any], name: str) -> dict[str, Any]:
    """One family's record; a step that raised unexpectedly fails with its error and stack."""
    record: dict[str, Any] = run[name]
    assert "crashed" not in record, f"{name} over {run['transport']}: {record}"
    return record


def expected_error(run: dict[str, Any], code: grpc.StatusCode, message: str) -> dict[str, Any]:
    """What Node's client raises for `code` over this run's transport (see the module doc)."""
    if run["transport"] == "rest":
        http = exceptions.exception_class_for_grpc_status(code).code
        return {"code": http, "status": code.name, "message": message}
    return {"code": code.value[0], "message": message}


NOT_FOUND = "Requested entity was not found."
ALREADY_EXISTS = "Requested entity already exists"


def test_queues_create_get_list_update_pause_resume_purge_delete(run: dict[str, Any]) -> None:
    queues = family(run, "queues")
    name = f"{LOCATION}/queues/{run['ident']}-queues"
    assert queues["created"]["name"] == name
    assert queues["created"]["rateLimits"]["maxDispatchesPerSecond"] == 5
    assert queues["created"]["retryConfig"]["maxAttempts"] == 3
    assert queues["created"]["state"] == "RUNNING"
    assert queues["got"] == queues["created"]
    assert name in queues["listed"]
    # Only the masked field changed (max_concurrent_dispatches was sent as 99).
    assert queues["updated"]["rateLimits"] == {
        "maxDispatchesPerSecond": 7, "maxBurstSize": 7, "maxConcurrentDispatches": 1000}
    assert queues["reset"]["retryConfig"]["maxAttempts"] == 100  # the default again
    assert queues["reset"]["rateLimits"]["maxDispatchesPerSecond"] == 7
    assert queues["paused"]["state"] == "PAUSED"
    assert queues["resumed"]["state"] == "RUNNING"
    assert (queues["tasks_before_purge"], queues["tasks_after_purge"]) == (1, 0)
    assert queues["purged"]["purgeTime"] is not None
    assert queues["get_deleted"] == expected_error(run, grpc.StatusCode.NOT_FOUND, NOT_FOUND)


def test_tasks_create_dedup_get_list_run_delete(run: dict[str, Any], target: Target) -> None:
    tasks = family(run, "tasks")
    queue = f"{LOCATION}/queues/{run['ident']}-tasks"
    named = f"{queue}/tasks/named-{run['ident']}"
    url = f"{target.base_url}/{run['ident']}/run?from=node"
    http = {"url": url, "httpMethod": "PUT", "body": '{"hello": "node"}',
            "headers": {"Content-Type": "application/json", "X-From": "node"}}
    assert tasks["created"]["name"] == named
    assert tasks["created"]["view"] == "FULL"
    assert tasks["created"]["httpRequest"] == http
    assert tasks["created"]["dispatchDeadline"] == {"seconds": "60", "nanos": 500000000}
    assert tasks["duplicate"] == expected_error(run, grpc.StatusCode.ALREADY_EXISTS,
                                                ALREADY_EXISTS)
    generated = tasks["generated"]["name"]
    assert generated.startswith(f"{queue}/tasks/")
    assert generated.rsplit("/", 1)[1].isdigit()
    assert tasks["got"] == tasks["created"]
    assert tasks["got_basic"]["view"] == "BASIC"
    assert tasks["got_basic"]["httpRequest"]["body"] == ""  # BASIC leaves the body out
    assert tasks["listed"] == sorted([generated, named])
    # A page each, then no token: the last page may be empty (Google's may be too).
    pages = tasks["pages"]
    assert [len(page) for page in pages[:2]] == [1, 1]
    assert pages[2:] in ([], [[]])
    assert sorted(pages[0] + pages[1]) == tasks["listed"]
    assert tasks["run"]["name"] == named
    assert tasks["get_deleted"] == expected_error(run, grpc.StatusCode.NOT_FOUND, NOT_FOUND)
    # A deleted task's name stays reserved (CLOUD_BEHAVIOUR: names, dedup).
    assert tasks["recreate_deleted"] == expected_error(run, grpc.StatusCode.ALREADY_EXISTS,
                                                       ALREADY_EXISTS)
    big = {"bytes": len(BIG_BODY), "sha256": hashlib.sha256(BIG_BODY).hexdigest()}
    assert tasks["big_sent"] == tasks["big_created"] == tasks["big_got"] == big
    assert tasks["big_run"] is True
    # RunTask delivered both, the paused queue notwithstanding.
    [delivery] = target.wait_under(f"/{run['ident']}/run")
    assert (delivery.method, delivery.query, delivery.body) == ("PUT", "from=node",
                                                                b'{"hello": "node"}')
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.headers["x-from"] == "node"
    assert delivery.task_name == f"named-{run['ident']}"
    [delivery] = target.wait_under(f"/{run['ident']}/big")
    assert delivery.body == BIG_BODY
    assert tasks["signed"]["oidcToken"] == {"serviceAccountEmail": SERVICE_ACCOUNT,
                                            "audience": FIXED_AUDIENCE}
    [delivery] = target.wait_under(f"/secure/fixed/{run['ident']}", finished=True)
    assert delivery.auth_error is None
    assert delivery.claims is not None
    assert delivery.claims["email"] == SERVICE_ACCOUNT


@pytest.mark.parametrize("run", ["grpc", "grpc-deflate", "grpc-gzip"], indirect=True)
def test_requests_are_compressed_when_grpc_js_is_asked(run: dict[str, Any]) -> None:
    """A compressing channel really compresses: its 300 kB body crosses the relay as far less
    (grpc-js stops once an answer's grpc-accept-encoding does not name its algorithm)."""
    family(run, "tasks")
    if run["transport"] == "grpc":
        assert run["sent"] > len(BIG_BODY)
    else:
        assert run["sent"] < len(BIG_BODY) // 4


def test_jobs_create_get_list_update_pause_resume_run_delete(run: dict[str, Any],
                                                             target: Target) -> None:
    jobs = family(run, "jobs")
    name = f"{LOCATION}/jobs/{run['ident']}-job"
    http = {"uri": f"{target.base_url}/{run['ident']}/job", "httpMethod": "POST",
            "body": "tick", "headers": {"Content-Type": "text/plain"}}
    created = jobs["created"]
    assert (created["name"], created["description"], created["schedule"],
            created["timeZone"]) == (name, "from node", "0 0 1 1 *", "Europe/Paris")
    assert created["httpTarget"] == http
    assert created["state"] == "ENABLED"
    assert created["retryConfig"]["retryCount"] == 2
    assert created["retryConfig"]["minBackoffDuration"] == {"seconds": "1", "nanos": 0}
    assert created["attemptDeadline"] == {"seconds": "30", "nanos": 0}
    assert jobs["got"] == created
    assert name in jobs["listed"]
    # The mask names only the description: the schedule sent beside it is ignored.
    assert (jobs["updated"]["description"], jobs["updated"]["schedule"]) == (
        "updated by node", "0 0 1 1 *")
    assert (jobs["cleared"]["description"], jobs["cleared"]["schedule"]) == ("", "0 0 1 1 *")
    assert jobs["paused"]["state"] == "PAUSED"
    assert jobs["pause_again"] == expected_error(run, grpc.StatusCode.FAILED_PRECONDITION,
                                                 "Only an ENABLED job can be paused.")
    assert jobs["resumed"]["state"] == "ENABLED"
    assert jobs["run"]["name"] == name
    assert jobs["get_deleted"] == expected_error(run, grpc.StatusCode.NOT_FOUND,
                                                 "Job not found.")
    assert re.fullmatch(rf"{LOCATION}/jobs/[A-Za-z0-9_-]+", jobs["generated"])
    [delivery] = target.wait_under(f"/{run['ident']}/job")
    assert (delivery.method, delivery.body) == ("POST", b"tick")
    assert delivery.headers["x-cloudscheduler"] == "true"
    assert delivery.headers["x-cloudscheduler-jobname"] == f"{run['ident']}-job"
    assert delivery.headers["content-type"] == "text/plain"


def test_a_burst_of_concurrent_calls_is_served_whole(run: dict[str, Any]) -> None:
    """Over REST each concurrent call has its own connection, 300 past the 256 the emulator
    serves at once: the excess waits for room, and a connection whose request is on its way
    is never closed as idle (it was: "socket hang up")."""
    burst = family(run, "burst")
    assert burst == {"created": 300, "first_failure": None, "listed": 300}


ERRORS = {
    "get_missing_queue": (grpc.StatusCode.NOT_FOUND, NOT_FOUND),
    "create_existing_queue": (grpc.StatusCode.ALREADY_EXISTS, "Queue already exists"),
    "get_missing_task": (grpc.StatusCode.NOT_FOUND, NOT_FOUND),
    "delete_missing_task": (grpc.StatusCode.NOT_FOUND, NOT_FOUND),
    "run_missing_task": (grpc.StatusCode.NOT_FOUND, NOT_FOUND),
    "bad_url": (grpc.StatusCode.INVALID_ARGUMENT,
                "HttpTarget.url must start with 'http://' or 'https://'."),
    "bad_task_id": (grpc.StatusCode.INVALID_ARGUMENT,
                    "Task name must be of the form projects/PROJECT/locations/LOCATION/queues/"
                    "QUEUE/tasks/TASK_ID; TASK_ID can contain only letters ([A-Za-z]), numbers "
                    "([0-9]), hyphens (-), or underscores (_). The maximum length is 500 "
                    "characters."),
    "bad_retry": (grpc.StatusCode.INVALID_ARGUMENT,
                  "RetryConfig.min_backoff must be less than or equal to "
                  "RetryConfig.max_backoff."),
    "create_existing_job": (grpc.StatusCode.ALREADY_EXISTS, "Job already exists."),
    "bad_schedule": (grpc.StatusCode.INVALID_ARGUMENT, "Schedule or time zone is invalid."),
    "bad_time_zone": (grpc.StatusCode.INVALID_ARGUMENT, "Schedule or time zone is invalid."),
    "get_missing_job": (grpc.StatusCode.NOT_FOUND, "Job not found."),
    "update_missing_job": (grpc.StatusCode.NOT_FOUND, "Job not found."),
}


def test_errors_carry_googles_codes_and_messages(run: dict[str, Any]) -> None:
    errors = family(run, "errors")
    expected = {case: expected_error(run, code, message)
                for case, (code, message) in ERRORS.items()}
    assert errors == expected
