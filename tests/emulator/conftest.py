"""Fixtures: the emulator as a subprocess on a free loopback port, a recording worker served by
uvicorn, Google's real clients pointed at the emulator (over gRPC, over REST, or each in turn),
and a fresh queue for each test."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from emulator_support import LOCATION, EmulatorProcess, StartEmulator, Target, ThreadedServer
from google.cloud import scheduler_v1, tasks_v2

from fastapi_cloud_tasks import emulator_client, emulator_scheduler_client


def _start(args: list[str], log_dir: Path) -> EmulatorProcess:
    process = EmulatorProcess(args, log_dir)
    try:
        process.wait_ready()
    except BaseException:
        process.terminate()
        raise
    return process


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """One emulator for the tests that use fresh queues; it must stop cleanly at the end.
    Their tasks go to queues nobody created, so it auto-creates them (Google's NOT_FOUND, the
    default, is tested on emulators of their own)."""
    process = _start(["--max-rate", "100000", "--auto-create-queues", "-v"],
                     tmp_path_factory.mktemp("emulator"))
    yield process
    code = process.terminate()
    assert code == 0, f"the shared emulator stopped with {code}:\n{process.log()[-4000:]}"


@pytest.fixture
def start_emulator(tmp_path: Path) -> Iterator[StartEmulator]:
    """Start a private emulator with extra CLI arguments; each is killed in teardown."""
    started: list[EmulatorProcess] = []

    def start(*args: str) -> EmulatorProcess:
        process = _start(list(args), tmp_path / f"emulator-{len(started)}")
        started.append(process)
        return process

    yield start
    for process in started:
        process.terminate()


@pytest.fixture(scope="session")
def target(emulator: EmulatorProcess) -> Iterator[Target]:
    """The worker every delivery goes to (its /secure/ routes trust the shared emulator)."""
    worker = Target(certs_url=emulator.certs_url)
    server = ThreadedServer(worker)
    server.start()
    yield worker
    server.stop()


@pytest.fixture
def tasks(emulator: EmulatorProcess) -> Iterator[tasks_v2.CloudTasksClient]:
    client = emulator_client(emulator.address)
    yield client
    client.transport.close()


@pytest.fixture
def scheduler(emulator: EmulatorProcess) -> Iterator[scheduler_v1.CloudSchedulerClient]:
    client = emulator_scheduler_client(emulator.address)
    yield client
    client.transport.close()


@pytest.fixture
def rest_tasks(emulator: EmulatorProcess) -> Iterator[tasks_v2.CloudTasksClient]:
    client = emulator_client(emulator.address, transport="rest", http_port=emulator.http_port)
    yield client
    client.transport.close()


@pytest.fixture
def rest_scheduler(emulator: EmulatorProcess) -> Iterator[scheduler_v1.CloudSchedulerClient]:
    client = emulator_scheduler_client(emulator.address, transport="rest",
                                       http_port=emulator.http_port)
    yield client
    client.transport.close()


# One scenario, both transports: the test runs with the gRPC client, then with the REST one.
TRANSPORTS = ["grpc", "rest"]


@pytest.fixture(params=TRANSPORTS, ids=TRANSPORTS)
def tasks_over(request: pytest.FixtureRequest) -> tasks_v2.CloudTasksClient:
    """`tasks`, then `rest_tasks` (their fixtures close them)."""
    client: tasks_v2.CloudTasksClient = request.getfixturevalue(
        "tasks" if request.param == "grpc" else "rest_tasks")
    return client


@pytest.fixture(params=TRANSPORTS, ids=TRANSPORTS)
def scheduler_over(request: pytest.FixtureRequest) -> scheduler_v1.CloudSchedulerClient:
    """`scheduler`, then `rest_scheduler` (their fixtures close them)."""
    client: scheduler_v1.CloudSchedulerClient = request.getfixturevalue(
        "scheduler" if request.param == "grpc" else "rest_scheduler")
    return client


@pytest.fixture
def ident(request: pytest.FixtureRequest) -> str:
    """A short id unique to this test: queue and job ids, path prefixes."""
    name = re.sub(r"[^A-Za-z0-9-]+", "-", request.node.name.removeprefix("test_"))
    return f"{name[:60].strip('-')}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def queue_name(ident: str) -> str:
    """A queue path nobody else uses (not created: on the shared emulator tasks auto-create
    it, or the test does)."""
    return f"{LOCATION}/queues/{ident}"


@pytest.fixture
def prefix(ident: str) -> str:
    """The worker path prefix of this test's deliveries."""
    return f"/{ident}"
