"""The pytest harness against delivering the same requests by hand.

(a) `CloudTasksQueue.run_until_empty()` over 300 enqueued tasks against sending the very same
    requests (method, URL, headers including the X-CloudTasks-* ones, body) by hand through one
    `httpx.AsyncClient(transport=httpx.ASGITransport(app))`. Like the harness, the by-hand path
    runs on an event loop in a helper thread: an anyio blocking portal started inside the timed
    section, as the harness starts its own lazily inside its first drain; neither portal's
    shutdown is timed. Enqueueing happens before the clock starts. Also shown: by hand with a
    new AsyncClient per request, and starlette's `TestClient` sending them synchronously, with
    and without a with-block (these two send the first 100 requests only: they are slow, and
    their cost per request does not depend on the count). The harness itself calls the ASGI app
    directly with the scope a server would build (`pytest_cloudtasks.delivery`), not through
    httpx: the by-hand baselines pay httpx's request models, the harness does not.
(b) What the `cloudtasks_harness` fixture costs a test that does nothing: building a Harness
    and a CloudTasksQueue and closing them, in process (also with `start=`, which freezes the
    clock at once); and end to end through pytest itself, 300 trivial tests requesting
    `cloudtasks_queue` against 300 requesting nothing, (time_with - time_without) / 300;
    and 300 tests that move the clock once (`advance(seconds=1)`: the clock backend starts and
    stops), with the default clock backend and with freezegun.
(c) A daily Cloud Scheduler job (`0 7 * * *`) advanced 365 days, against the same 365 requests
    sent by hand as in (a).

Every timed run is checked to deliver every request (a 200 each, counted by the endpoints),
and the requests the app sees are checked, once, to be identical on every path, so the
comparisons are honest. Rounds are interleaved (the order flips every other round) so drift in
CPU frequency or load hits all paths alike; each figure is the median over rounds of the mean
per-item time within a round ("paired" is the median of the per-round ratios). Timing uses the
real `perf_counter_ns` even while the harness has freezegun freeze time.

    python -m benchmarks                          # every benchmark
    python -m benchmarks.bench_harness            # this one
    python -m benchmarks.bench_harness --profile  # cProfile of the three harness paths
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from google.cloud import tasks_v2
from pydantic import BaseModel

from fastapi_cloud_tasks import (
    DelayedRouteBuilder,
    ScheduledRouteBuilder,
    location_path,
    queue_path,
)
from pytest_cloudtasks.clock import HarnessClock
from pytest_cloudtasks.harness import Attempt, Harness, HarnessConfig
from pytest_cloudtasks.queue import CloudTasksQueue
from pytest_cloudtasks.scheduler import CloudTasksScheduler

BASE_URL = "https://bench-worker.example.com"
QUEUE = queue_path("bench-project", "europe-west1", "bench")
LOCATION = location_path("bench-project", "europe-west1")
START = datetime(2025, 1, 1, tzinfo=timezone.utc)  # 2025 has 365 days: 365 runs of 07:00

N_TASKS = 300
N_DAYS = 365
ROUNDS = 5  # per path; odd, so the median is one measured round
TESTCLIENT_REQUESTS = 100  # TestClient baselines send the first 100 requests (they are slow)
FIXTURE_CYCLES = 100  # Harness + CloudTasksQueue + close, per round
FIXTURE_START_CYCLES = 10  # the same with an explicit start (freezes the clock): slower
PYTEST_TESTS = 300
PYTEST_ROUNDS = 3

TARGET_DRAIN = 1.25
GOAL_DRAIN = 1.10
TARGET_FIXTURE_MS = 2.0
TARGET_YEAR = 1.15


def _real(clock: Callable[[], int]) -> Callable[[], int]:
    """`clock` out of freezegun's reach: while the harness clock is frozen, freezegun replaces
    `time.perf_counter_ns` (and module attributes bound to it) by a fake that returns the
    frozen instant; a closure cell is left alone."""

    def read() -> int:
        return clock()

    return read


now_ns = _real(time.perf_counter_ns)
cpu_ns = _real(time.process_time_ns)  # CPU time of this process, every thread


def children_cpu_ns() -> int:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return int((usage.ru_utime + usage.ru_stime) * 1e9)


@dataclass(frozen=True)
class Timing:
    """Wall time (the measure) and CPU time (the same work, blind to other processes competing
    for the cores: a cross-check on a busy machine)."""

    wall: int
    cpu: int


class Stopwatch:
    def __init__(self, cpu: Callable[[], int] = cpu_ns) -> None:
        self._cpu_clock = cpu
        self._cpu = cpu()
        self._wall = now_ns()

    def read(self) -> Timing:
        wall = now_ns() - self._wall
        return Timing(wall, self._cpu_clock() - self._cpu)


# -- the app -------------------------------------------------------------------------------------


class Payload(BaseModel):
    user_id: int
    email: str
    tags: list[str]


@dataclass
class Counter:
    """Requests that reached an endpoint (each path must deliver exactly as many)."""

    value: int = 0


DELIVERED = Counter()

tasks_router = APIRouter(
    route_class=DelayedRouteBuilder(base_url=BASE_URL, queue_path=QUEUE)
)
jobs_router = APIRouter(
    route_class=ScheduledRouteBuilder(base_url=BASE_URL, location_path=LOCATION)
)


@tasks_router.post("/work")
async def work(p: Payload) -> None:
    DELIVERED.value += 1


@jobs_router.post("/daily")
async def daily(p: Payload) -> None:
    DELIVERED.value += 1


app = FastAPI()
app.include_router(tasks_router)
app.include_router(jobs_router)

PAYLOADS = [
    Payload(user_id=i, email=f"user{i}@example.com", tags=["welcome", "daily", str(i % 7)])
    for i in range(N_TASKS)
]
DAILY_PAYLOAD = Payload(user_id=7, email="digest@example.com", tags=["digest"])

# One request as sent: method, absolute URL, headers (original case, in order), body.
Request = tuple[str, str, list[tuple[str, str]], bytes]


def as_request(attempt: Attempt) -> Request:
    task = attempt.task  # CapturedTask or CapturedJob: both keep method, url and body
    headers = [(k.decode(), v.decode()) for k, v in attempt.request_headers.raw]
    return task.method, task.url, headers, task.body


# -- the harness paths -----------------------------------------------------------------------


def _new_harness(start: datetime | None, target: Any = app) -> Harness:
    return Harness(lambda: target, HarnessConfig(start=start))


def drain(start: datetime | None = START, target: Any = app) -> tuple[Timing, list[Attempt]]:
    """Enqueue N_TASKS (untimed), then time `run_until_empty()`."""
    harness = _new_harness(start, target)
    try:
        queue = CloudTasksQueue(harness)
        for payload in PAYLOADS:
            work.delay(p=payload)
        assert len(queue) == N_TASKS
        gc.collect()
        watch = Stopwatch()
        attempts = queue.run_until_empty()
        elapsed = watch.read()
    finally:
        harness.close()
    return elapsed, attempts


def year_advance(target: Any = app) -> tuple[Timing, list[Attempt]]:
    """Schedule the daily job (untimed), then time `advance(days=365)`."""
    harness = _new_harness(START, target)
    try:
        scheduler = CloudTasksScheduler(harness)
        daily.scheduler(name="daily-digest", schedule="0 7 * * *", time_zone="UTC").schedule(
            p=DAILY_PAYLOAD
        )
        gc.collect()
        watch = Stopwatch()
        attempts = scheduler.advance(days=N_DAYS)
        elapsed = watch.read()
    finally:
        harness.close()
    return elapsed, attempts


def fixture_cycles(
    cycles: int, start: datetime | None = None, collect: bool = True
) -> Timing:
    """What `cloudtasks_harness` + `cloudtasks_queue` do for a test that does nothing (the
    fixture's config always carries an empty queue template); for all the cycles."""
    if collect:
        gc.collect()
    watch = Stopwatch()
    for _ in range(cycles):
        harness = Harness(
            lambda: app, HarnessConfig(start=start, queue_defaults=tasks_v2.Queue())
        )
        CloudTasksQueue(harness)
        harness.close()
    return watch.read()


# -- the by-hand paths -----------------------------------------------------------------------


def _plain(client: Any) -> Any:
    """`client` without httpx's default Accept, Accept-Encoding, Connection and User-Agent
    headers: the harness sends what Cloud Tasks sends, and the app must see equal requests."""
    client.headers.clear()
    return client


async def _send_all(target: Any, requests: list[Request]) -> list[int]:
    """What a careful user writes: one AsyncClient over httpx's ASGI transport."""
    transport = httpx.ASGITransport(app=target)
    statuses = []
    async with _plain(httpx.AsyncClient(transport=transport)) as client:
        for method, url, headers, body in requests:
            response = await client.request(method, url, headers=headers, content=body)
            statuses.append(response.status_code)
    return statuses


async def _send_each_new_client(target: Any, requests: list[Request]) -> list[int]:
    """Diagnostic: a new AsyncClient and transport per request."""
    statuses = []
    for method, url, headers, body in requests:
        transport = httpx.ASGITransport(app=target)
        async with _plain(httpx.AsyncClient(transport=transport)) as client:
            response = await client.request(method, url, headers=headers, content=body)
        statuses.append(response.status_code)
    return statuses


def _on_portal(
    send: Callable[..., Any], requests: list[Request], target: Any
) -> tuple[Timing, Any]:
    """Start a helper-thread event loop and send everything on it: timed (the harness starts
    its portal lazily inside the drain); the portal's shutdown is not (nor is the harness's
    `close()`)."""
    portal_cm = anyio.from_thread.start_blocking_portal()
    gc.collect()
    watch = Stopwatch()
    portal = portal_cm.__enter__()
    try:
        statuses = portal.call(send, target, requests)
        elapsed = watch.read()
    finally:
        portal_cm.__exit__(None, None, None)
    return elapsed, statuses


def by_hand(requests: list[Request], target: Any = app) -> tuple[Timing, list[int]]:
    return _on_portal(_send_all, requests, target)


def by_hand_frozen(requests: list[Request], target: Any = app) -> tuple[Timing, list[int]]:
    """By hand, with time frozen the way the harness freezes it for the app: isolates what
    the frozen clock costs every request (the harness cannot skip it: the app must read the
    virtual time)."""
    clock = HarnessClock(START)
    try:
        return _on_portal(_send_all, requests, target)
    finally:
        clock.stop()


def by_hand_new_client(requests: list[Request], target: Any = app) -> tuple[Timing, list[int]]:
    return _on_portal(_send_each_new_client, requests, target)


def starlette_client_plain(requests: list[Request], target: Any = app) -> tuple[Timing, list[int]]:
    """`TestClient(app).request(...)` outside a with-block: a portal (thread) per request."""
    gc.collect()
    watch = Stopwatch()
    client = _plain(TestClient(target))
    statuses = [
        client.request(method, url, headers=headers, content=body).status_code
        for method, url, headers, body in requests
    ]
    elapsed = watch.read()
    client.close()
    return elapsed, statuses


def starlette_client_with(requests: list[Request], target: Any = app) -> tuple[Timing, list[int]]:
    """`with TestClient(app) as client:`: one portal for every request (lifespan included)."""
    gc.collect()
    watch = Stopwatch()
    client = _plain(TestClient(target))
    client.__enter__()
    try:
        statuses = [
            client.request(method, url, headers=headers, content=body).status_code
            for method, url, headers, body in requests
        ]
        elapsed = watch.read()
    finally:
        client.__exit__(None, None, None)
    return elapsed, statuses


# -- checks ----------------------------------------------------------------------------------


class Recorder:
    """An ASGI wrapper noting each HTTP request as the app sees it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: list[tuple[Any, ...]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        body = bytearray()

        async def recording_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    self.seen.append((
                        scope["method"], scope["scheme"], scope["path"],
                        scope["query_string"], sorted(scope["headers"]), bytes(body),
                    ))
            return message

        await self.inner(scope, recording_receive, send)


def expect_delivered(count: int, result: tuple[Timing, Any], before: int) -> Timing:
    """The path's timing, after checking it delivered `count` requests, every one a 200."""
    elapsed, outcome = result
    statuses = [a.status_code if isinstance(a, Attempt) else a for a in outcome]
    assert len(statuses) == count, f"{len(statuses)} responses, expected {count}"
    assert all(s == 200 for s in statuses), sorted(set(statuses))
    delivered = DELIVERED.value - before
    assert delivered == count, f"{delivered} requests reached the app, expected {count}"
    return elapsed


@dataclass(frozen=True)
class Baseline:
    name: str
    send: Callable[[list[Request], Any], tuple[Timing, list[int]]]
    limit: int | None = None  # send only the first `limit` requests (slow baselines)


BASELINES = [
    Baseline("by hand: one AsyncClient", by_hand),
    Baseline("by hand: AsyncClient per request", by_hand_new_client),
    Baseline(f"TestClient(app), no with-block [{TESTCLIENT_REQUESTS}]",
             starlette_client_plain, TESTCLIENT_REQUESTS),
    Baseline(f"with TestClient(app) [{TESTCLIENT_REQUESTS}]",
             starlette_client_with, TESTCLIENT_REQUESTS),
]
HAND = BASELINES[0].name
FROZEN_HAND = Baseline("by hand: one AsyncClient, clock frozen", by_hand_frozen)


def capture_and_check(
    harness_path: Callable[[Any], tuple[Timing, list[Attempt]]],
    count: int,
    baselines: list[Baseline],
) -> list[Request]:
    """Run the harness path once into a Recorder, replay what it sent through every baseline
    into fresh Recorders, and require the app to have seen the very same requests (method,
    scheme, path, query, every header, body). Doubles as the warm-up of every path."""
    recorder = Recorder(app)
    _, attempts = harness_path(recorder)
    assert len(attempts) == count, f"{len(attempts)} deliveries, expected {count}"
    assert all(a.status_code == 200 for a in attempts)
    assert len(recorder.seen) == count
    requests = [as_request(a) for a in attempts]
    for baseline in baselines:
        sent = requests[: baseline.limit]
        replay = Recorder(app)
        _, statuses = baseline.send(sent, replay)
        assert statuses == [200] * len(sent), baseline.name
        for ours, theirs in zip(recorder.seen, replay.seen, strict=False):
            assert ours == theirs, (
                f"{baseline.name} sent a different request:\n{ours}\n---\n{theirs}"
            )
        assert len(replay.seen) == len(sent), baseline.name
    return requests


# -- timing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    name: str
    items: int  # requests (or tests) per run
    run: Callable[[], Timing]  # one run, timed


def counted(name: str, count: int, path: Callable[[], tuple[Timing, Any]]) -> Contender:
    """A contender whose every run is checked to deliver exactly `count` requests."""

    def run() -> Timing:
        before = DELIVERED.value
        return expect_delivered(count, path(), before)

    return Contender(name, count, run)


Samples = dict[str, dict[str, list[float]]]  # metric ("wall", "cpu") -> path -> ns per item


def interleaved(contenders: list[Contender], rounds: int, warm_up: bool = False) -> Samples:
    """ns per item of each contender in each round, wall and CPU; every contender runs once
    per round, the order flipped every other round."""
    if warm_up:  # imports, freezegun's module cache, first-call costs
        for contender in contenders:
            contender.run()
    samples: Samples = {"wall": {c.name: [] for c in contenders},
                        "cpu": {c.name: [] for c in contenders}}
    for round_no in range(rounds):
        order = contenders if round_no % 2 == 0 else contenders[::-1]
        for contender in order:
            timing = contender.run()
            samples["wall"][contender.name].append(timing.wall / contender.items)
            samples["cpu"][contender.name].append(timing.cpu / contender.items)
    return samples


def median(samples: Samples, name: str, metric: str = "wall") -> float:
    return statistics.median(samples[metric][name])


def ratio(samples: Samples, name: str, reference: str, metric: str = "wall") -> float:
    """The ratio of the medians."""
    return median(samples, name, metric) / median(samples, reference, metric)


def paired_ratio(samples: Samples, name: str, reference: str, metric: str = "wall") -> float:
    """The median of the per-round ratios."""
    values = samples[metric]
    return statistics.median(a / b for a, b in zip(values[name], values[reference],
                                                  strict=True))


def baseline_contenders(requests: list[Request], baselines: list[Baseline]) -> list[Contender]:
    contenders = []
    for baseline in baselines:
        sent = requests[: baseline.limit]
        contenders.append(counted(baseline.name, len(sent),
                                  functools.partial(baseline.send, sent, app)))
    return contenders


def measure_drain(requests: list[Request]) -> Samples:
    return interleaved([
        counted("queue.run_until_empty()", N_TASKS, drain),
        *baseline_contenders(requests, BASELINES),
    ], ROUNDS)


def measure_year(requests: list[Request]) -> Samples:
    return interleaved([
        counted(f"scheduler.advance(days={N_DAYS})", N_DAYS, year_advance),
        *baseline_contenders(requests, [*BASELINES[:2], FROZEN_HAND]),
    ], ROUNDS)


def measure_fixture() -> Samples:
    return interleaved([
        Contender(FIXTURE, FIXTURE_CYCLES, lambda: fixture_cycles(FIXTURE_CYCLES)),
        Contender("the same with start= (clock frozen at once)", FIXTURE_START_CYCLES,
                  lambda: fixture_cycles(FIXTURE_START_CYCLES, START)),
    ], ROUNDS, warm_up=True)


FIXTURE = "Harness + CloudTasksQueue + close"

PYTEST_INI = """\
[pytest]
asyncio_default_fixture_loop_scope = function
"""

PYTEST_FILE = """\
import pytest


@pytest.mark.parametrize("i", range({tests}))
def test_trivial(i{fixture}):
    {body}
"""
# A test that moves the clock once: the clock backend starts (freezes time) and stops.
MOVES_BODY = "cloudtasks_queue.advance(seconds=1)"
PYTEST_WITH = "pytest: tests requesting cloudtasks_queue"
PYTEST_WITHOUT = "pytest: tests requesting no fixture"
PYTEST_MOVES = "pytest: tests calling advance(seconds=1), default clock"
PYTEST_MOVES_FREEZEGUN = "pytest: the same, cloudtasks_clock = freezegun"


@contextlib.contextmanager
def pytest_project() -> Iterator[tuple[Path, Path, Path, Path]]:
    with tempfile.TemporaryDirectory(prefix="bench_harness_") as tmp:
        root = Path(tmp)
        (root / "pytest.ini").write_text(PYTEST_INI)
        files = []
        for name, fixture, body in (("test_with_fixture.py", ", cloudtasks_queue", "pass"),
                                    ("test_without_fixture.py", "", "pass"),
                                    ("test_moves_clock.py", ", cloudtasks_queue", MOVES_BODY)):
            (root / name).write_text(PYTEST_FILE.format(tests=PYTEST_TESTS, fixture=fixture,
                                                        body=body))
            files.append(root / name)
        yield root, files[0], files[1], files[2]


def run_pytest(root: Path, test_file: Path, *options: str) -> Timing:
    """One `python -m pytest` over `test_file` (wall; CPU of the child), checked to pass all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *options,
               test_file.name]
    watch = Stopwatch(children_cpu_ns)
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True,
                          check=False)
    elapsed = watch.read()
    output = done.stdout[-2000:] + done.stderr[-2000:]
    assert done.returncode == 0, output
    assert f"{PYTEST_TESTS} passed" in done.stdout, output
    return elapsed


def measure_pytest() -> Samples:
    """Whole pytest runs (startup included, the same for both): the difference is what the
    fixtures cost. No warm-up run: the interleaving spreads the cold first run's cost."""
    with pytest_project() as (root, with_fixture, without, moves):
        return interleaved([
            Contender(PYTEST_WITH, 1, lambda: run_pytest(root, with_fixture)),
            Contender(PYTEST_WITHOUT, 1, lambda: run_pytest(root, without)),
            Contender(PYTEST_MOVES, 1, lambda: run_pytest(root, moves)),
            Contender(PYTEST_MOVES_FREEZEGUN, 1,
                      lambda: run_pytest(root, moves, "-o", "cloudtasks_clock=freezegun")),
        ], PYTEST_ROUNDS)


# -- report ----------------------------------------------------------------------------------


def table(title: str, unit: str, samples: Samples, reference: str) -> None:
    width = max(len(name) for name in samples["wall"])
    print(title)
    print(f"  {'':<{width}}  {'wall time':^23}  {'CPU time':^23}")
    print(f"  {'path':<{width}}  {unit:>9}  {'ratio':>5}  {'paired':>6}  {unit:>9}  "
          f"{'ratio':>5}  {'paired':>6}  wall of each round ({unit})")
    for name, values in samples["wall"].items():
        columns = "  ".join(
            f"{median(samples, name, metric) / 1000:>9.1f}  "
            f"{ratio(samples, name, reference, metric):>5.2f}  "
            f"{paired_ratio(samples, name, reference, metric):>6.2f}"
            for metric in ("wall", "cpu")
        )
        rounds = " ".join(f"{v / 1000:.0f}" for v in values)
        print(f"  {name:<{width}}  {columns}  {rounds}")
    print()


def per_test_ms(runs: Samples, metric: str, name: str = PYTEST_WITH) -> tuple[float, float]:
    """(median of `name` - median without, median of per-round differences) / tests, in ms."""
    with_, without = runs[metric][name], runs[metric][PYTEST_WITHOUT]
    of_medians = statistics.median(with_) - statistics.median(without)
    paired = statistics.median(a - b for a, b in zip(with_, without, strict=True))
    return of_medians / PYTEST_TESTS / 1e6, paired / PYTEST_TESTS / 1e6


def main() -> None:
    total = now_ns()
    load = os.getloadavg()[0]
    drain_requests = capture_and_check(lambda target: drain(target=target), N_TASKS,
                                       BASELINES)
    year_requests = capture_and_check(lambda target: year_advance(target=target), N_DAYS,
                                      BASELINES[:2])
    print(f"{ROUNDS} interleaved rounds per path (pytest: {PYTEST_ROUNDS}); median of the "
          "rounds; ratio = ratio of the medians, paired = median of the per-round ratios. "
          "Every path was checked to send the app identical requests, and every run to "
          "deliver them all. CPU time counts every thread of the process (pytest: the child "
          "process): unlike wall time it ignores other processes competing for the cores.\n")

    drained = measure_drain(drain_requests)
    table(f"(a) drain {N_TASKS} tasks against the same requests sent by hand "
          f"([{TESTCLIENT_REQUESTS}]: the first {TESTCLIENT_REQUESTS} only)",
          "µs/task", drained, HAND)
    year = measure_year(year_requests)
    table(f"(c) a daily job advanced {N_DAYS} days against its {N_DAYS} requests by hand",
          "µs/run", year, HAND)
    fixture = measure_fixture()
    table("(b) fixture for a test that does nothing, in process", "µs/test", fixture, FIXTURE)
    runs = measure_pytest()
    print(f"(b) through pytest: {PYTEST_TESTS} trivial tests per run, the whole run")
    for name in runs["wall"]:
        print(f"  {name:<42}  wall {median(runs, name) / 1e9:5.2f} s  CPU "
              f"{median(runs, name, 'cpu') / 1e9:5.2f} s  wall of each round: "
              + " ".join(f"{v / 1e9:.2f}" for v in runs["wall"][name]))
    wall_ms, wall_paired_ms = per_test_ms(runs, "wall")
    cpu_ms, cpu_paired_ms = per_test_ms(runs, "cpu")
    print(f"  (with - without) / {PYTEST_TESTS}: wall {wall_ms:.2f} ms per test (paired "
          f"{wall_paired_ms:.2f}), CPU {cpu_ms:.2f} ms (paired {cpu_paired_ms:.2f})\n")

    drain_name = "queue.run_until_empty()"
    year_name = f"scheduler.advance(days={N_DAYS})"
    print(f"drain_vs_by_hand_ratio={ratio(drained, drain_name, HAND):.2f} "
          f"(target <= {TARGET_DRAIN:.2f}, goal {GOAL_DRAIN:.2f})")
    print(f"drain_vs_by_hand_ratio_cpu={ratio(drained, drain_name, HAND, 'cpu'):.2f} "
          "(CPU time, cross-check)")
    for key, baseline in (("drain_vs_testclient_ratio", BASELINES[2]),
                          ("drain_vs_testclient_with_ratio", BASELINES[3])):
        print(f"{key}={ratio(drained, drain_name, baseline.name):.2f} "
              f"(against {baseline.name.split(' [')[0]}; no target)")
    print(f"fixture_overhead_ms={wall_ms:.2f} (target < {TARGET_FIXTURE_MS:.0f}; through "
          "pytest)")
    print(f"fixture_overhead_ms_cpu={cpu_ms:.2f} (CPU time of pytest, cross-check)")
    for key, name in (("clock_move_overhead_ms", PYTEST_MOVES),
                      ("clock_move_overhead_ms_freezegun", PYTEST_MOVES_FREEZEGUN)):
        moved_ms, _ = per_test_ms(runs, "wall", name)
        moved_cpu_ms, _ = per_test_ms(runs, "cpu", name)
        target = f"target <= {TARGET_FIXTURE_MS:.0f}; " if name == PYTEST_MOVES else ""
        print(f"{key}={moved_ms:.2f} ({target}a test that moves the clock, against one "
              f"taking no fixture; of which moving: {moved_ms - wall_ms:.2f}, the fixture "
              f"alone: {wall_ms:.2f}; CPU {moved_cpu_ms:.2f})")
    print(f"fixture_construct_close_ms={median(fixture, FIXTURE) / 1e6:.2f} "
          f"(target < {TARGET_FIXTURE_MS:.0f}; in process)")
    print(f"year_advance_ratio={ratio(year, year_name, HAND):.2f} "
          f"(target <= {TARGET_YEAR:.2f})")
    print(f"year_advance_ratio_cpu={ratio(year, year_name, HAND, 'cpu'):.2f} "
          "(CPU time, cross-check)")
    print(f"year_advance_vs_frozen_by_hand_ratio={ratio(year, year_name, FROZEN_HAND.name):.2f} "
          "(the same requests by hand under the same frozen clock; no target)")
    print(f"bench_harness_seconds={(now_ns() - total) / 1e9:.1f} (target < 60; load average "
          f"{load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


# -- profile ---------------------------------------------------------------------------------


OWN_CODE = (r"(harness|delivery|captured|clock|queue|scheduler|cloud_tasks|cloud_scheduler|"
            r"transports|queue_config|clients|plugin)\.py")


def profile(top: int = 30) -> None:
    """cProfile each harness path (drain, fixture, year advance): top entries by own time and
    by cumulative time. cProfile sees one thread only, so the drains are profiled through
    their async twins (`arun_until_empty()`, `aadvance()`) on this thread's event loop: the
    same delivery loop, without the one hop to the helper thread per drain. The profiler's
    clock is this process's CPU time: on a busy machine, wall time would charge preemptions
    by other processes to whatever function happened to be running."""
    import cProfile
    import pstats

    def show(title: str, profiler: cProfile.Profile) -> None:
        print(f"==== {title} ====")
        stats = pstats.Stats(profiler).strip_dirs()
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
        print("-- the library's own functions, by cumulative time --")
        stats.print_stats(OWN_CODE, top)

    for _ in range(2):  # the first run warms up; the second is shown
        profiler = cProfile.Profile(cpu_ns, 1e-9)
        harness = _new_harness(START)
        try:
            queue = CloudTasksQueue(harness)
            for payload in PAYLOADS:
                work.delay(p=payload)
            attempts = profiler.runcall(anyio.run, queue.arun_until_empty)
        finally:
            harness.close()
        assert len(attempts) == N_TASKS
    show(f"(a) arun_until_empty() of {N_TASKS} tasks", profiler)

    fixture_cycles(10)
    profiler = cProfile.Profile(cpu_ns, 1e-9)
    gc.collect()
    profiler.runcall(fixture_cycles, FIXTURE_CYCLES, None, False)
    show(f"(b) {FIXTURE_CYCLES} x Harness + CloudTasksQueue + close", profiler)
    profiler = cProfile.Profile(cpu_ns, 1e-9)
    gc.collect()
    profiler.runcall(fixture_cycles, FIXTURE_START_CYCLES, START, False)
    show(f"(b) {FIXTURE_START_CYCLES} x the same with start= (clock frozen at once)", profiler)

    for _ in range(2):
        profiler = cProfile.Profile(cpu_ns, 1e-9)
        harness = _new_harness(START)
        try:
            scheduler = CloudTasksScheduler(harness)
            daily.scheduler(name="daily-digest", schedule="0 7 * * *",
                            time_zone="UTC").schedule(p=DAILY_PAYLOAD)
            advance = functools.partial(scheduler.aadvance, days=N_DAYS)
            attempts = profiler.runcall(anyio.run, advance)
        finally:
            harness.close()
        assert len(attempts) == N_DAYS
    show(f"(c) aadvance(days={N_DAYS})", profiler)


if __name__ == "__main__":
    if "--profile" in sys.argv[1:]:
        profile()
    else:
        main()
