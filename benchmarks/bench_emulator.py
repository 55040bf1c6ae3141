"""The emulator's throughput: CreateTask rate, and 2,000 tasks from first create to last delivery.

Three processes on loopback: the emulator (`python -m fastapi_cloud_tasks.emulator`), a
minimal FastAPI worker under uvicorn that answers 200 to `POST /hit` and counts (each its own
subprocess), and this one, which drives the emulator with Google's real `CloudTasksClient`
(`emulator_client`), one client, one thread, requests built before the clock starts.

(a) creates/s: 2,000 `create_task` calls on a PAUSED queue, so delivery does not compete;
    and the same 2,000 tasks as 20 `batch_create_tasks` calls of 100.
(b) end to end: 2,000 tasks on a RUNNING queue at 10,000/s (1,000 concurrent dispatches), from
    just before the first create to the last request the worker receives.
    burst: 2,000 tasks created on a paused queue, then `resume_queue`; from just before the
    resume to the last request the worker receives.

Delivery times are the worker's own `time.monotonic()` stamps (CLOCK_MONOTONIC is system-wide,
so they compare with this process's); the worker's count is checked against 2,000 (more would
mean duplicate deliveries, and is flagged). Each figure is the median of up to `ROUNDS` rounds,
each on fresh queues; no new round starts once the time budget would run out, so a slow emulator
gets fewer. A phase not delivered within `DELIVERY_TIMEOUT_S` is reported as a lower bound
('>'). CPU milliseconds per task for each process (from /proc, Linux only) show where the time
goes, and vary less than wall time on a busy machine. Reference figures, the Go emulator's:
~1,140 creates/s from one Python client thread; 2,000 tasks delivered in ~2.0 s.

    python -m benchmarks                            # every benchmark
    python -m benchmarks.bench_emulator             # this one
    python -m benchmarks.bench_emulator --profile   # the emulator's event loop under cProfile
                                                    # (its gRPC and REST calls, deliveries)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from google.api_core import exceptions
from google.cloud import tasks_v2

from fastapi_cloud_tasks import emulator_client

ROOT = Path(__file__).resolve().parents[1]
LOCATION = "projects/bench-project/locations/europe-west1"
TASKS = 2_000
ROUNDS = 3
RATE = 10_000.0
CONCURRENT = 1_000
MAX_RATE = 100_000
WARMUP_TASKS = 200
BATCH = 100  # BatchCreateTasks' maximum
DELIVERY_TIMEOUT_S = 20.0  # per phase: a run that has not delivered everything by then is late
SETTLE_TIMEOUT_S = 20.0  # after a late phase, for the deliveries in flight to end
TIME_BUDGET_S = 65.0  # for starting the processes and the rounds (at least one round runs)
START_TIMEOUT_S = 30.0
POLL_S = 0.02  # the worker stamps each request itself: polling only notices the end
TARGET_CREATES_PER_S = 1_100.0
TARGET_E2E_S = 2.0
GO_BURST_S = 2.0


# -- the worker (its own process: python -m benchmarks.bench_emulator --worker READY_FILE) -----


def worker_main(ready_file: str) -> None:
    """A minimal FastAPI app on 127.0.0.1 (any free port): 200 for POST /hit, counted, with the
    monotonic time of the first and last; GET /count reads them, POST /reset clears them."""
    import uvicorn
    from fastapi import FastAPI, Response

    app = FastAPI()
    state: dict[str, float] = {"count": 0, "first": 0.0, "last": 0.0}

    @app.post("/hit")
    async def hit() -> Response:
        now = time.monotonic()
        if not state["count"]:
            state["first"] = now
        state["count"] += 1
        state["last"] = now
        return Response(status_code=200)

    @app.get("/count")
    async def count() -> dict[str, float]:
        return state

    @app.post("/reset")
    async def reset() -> dict[str, float]:
        state.update(count=0, first=0.0, last=0.0)
        return state

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            backlog=4096)
    server = uvicorn.Server(config)
    sock.listen(4096)  # connections wait in the backlog until uvicorn accepts them
    Path(ready_file).write_text(f"READY 127.0.0.1:{port}\n")
    server.run(sockets=[sock])


# -- subprocesses ------------------------------------------------------------------------------


def _prctl() -> Any:
    """libc's prctl on Linux (looked up here: the child runs no imports between fork and
    exec), else None."""
    if sys.platform != "linux":
        return None
    try:
        import ctypes

        return ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return None


PRCTL = _prctl()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """The child gets SIGTERM if this process dies without stopping it (PR_SET_PDEATHSIG)."""
    PRCTL(1, int(signal.SIGTERM))


class Child:
    """A subprocess whose stdout/stderr go to files (a pipe nobody reads could block it) and
    whose first `READY host:port ...` line, in `ready_path`, gives its address."""

    def __init__(self, name: str, command: list[str], log_dir: Path, ready_path: Path) -> None:
        self.name = name
        self.stdout_path = log_dir / f"{name}.stdout"
        self.stderr_path = log_dir / f"{name}.stderr"
        self.ready_path = ready_path
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["PYTHONUNBUFFERED"] = "1"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                command, stdout=out, stderr=err, env=env, cwd=ROOT,
                preexec_fn=_die_with_parent if PRCTL is not None else None,
            )
        self.address = ""

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready_path.exists():
                for line in self.ready_path.read_text(errors="replace").splitlines():
                    if line.startswith("READY "):
                        self.address = line.split()[1]
                        return self.address
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode} before "
                                   f"READY:\n{self.log()}")
            time.sleep(0.02)
        raise RuntimeError(f"no READY line from {self.name} within {timeout:g} s:\n{self.log()}")

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def cpu_seconds(self) -> float:
        """User + system CPU time so far (Linux /proc; NaN elsewhere)."""
        try:
            fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 8.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


@contextlib.contextmanager
def processes(emulator_prefix: list[str] | None = None) -> Iterator[tuple[Child, Child]]:
    """The emulator and the worker, started in parallel, both stopped (killed if need be) on
    the way out."""
    with tempfile.TemporaryDirectory(prefix="bench-emulator-") as tmp:
        log_dir = Path(tmp)
        children: list[Child] = []
        try:
            emulator = Child(
                "emulator",
                [sys.executable, *(emulator_prefix or []), "-m", "fastapi_cloud_tasks.emulator",
                 "--host", "127.0.0.1", "--port", "0", "--max-rate", str(MAX_RATE), "-q"],
                log_dir, log_dir / "emulator.stdout",
            )
            children.append(emulator)
            ready = log_dir / "worker.ready"
            worker = Child("worker", [sys.executable, "-m", "benchmarks.bench_emulator",
                                      "--worker", str(ready)], log_dir, ready)
            children.append(worker)
            emulator.wait_ready()
            worker.wait_ready()
            yield emulator, worker
        finally:
            for child in reversed(children):
                child.stop()


# -- the measurements --------------------------------------------------------------------------


@dataclass
class Phase:
    """One timed phase. `seconds` is a lower bound when `delivered < TASKS` (it timed out)."""

    seconds: float
    delivered: int = TASKS
    emulator_cpu: float = float("nan")  # CPU seconds the emulator used over the phase
    worker_cpu: float = float("nan")
    client_cpu: float = float("nan")
    part: float = float("nan")  # e2e: the creates' share of the time; burst: first delivery
    error: str = ""  # an RPC failed: no figure

    @property
    def complete(self) -> bool:
        return self.delivered >= TASKS and not self.error

    def per_task_ms(self, cpu: float) -> float:
        return 1000 * cpu / TASKS


@dataclass
class Round:
    create: Phase
    batch: Phase
    e2e: Phase
    burst: Phase

    @property
    def phases(self) -> tuple[tuple[str, Phase], ...]:
        return (("create", self.create), ("batch", self.batch), ("e2e", self.e2e),
                ("burst", self.burst))


class Bench:
    def __init__(self, emulator: Child, worker: Child, deadline: float) -> None:
        self.emulator = emulator
        self.worker = worker
        self.deadline = deadline  # time.monotonic() by which the whole benchmark should end
        self.client = emulator_client(emulator.address)
        self.http = httpx.Client(base_url=f"http://{worker.address}", trust_env=False,
                                 timeout=10.0)
        self.url = f"http://{worker.address}/hit"

    def close(self) -> None:
        self.http.close()
        self.client.transport.close()

    def requests(self, queue: str, count: int) -> list[tasks_v2.CreateTaskRequest]:
        return [
            tasks_v2.CreateTaskRequest(parent=queue, task=tasks_v2.Task(
                http_request=tasks_v2.HttpRequest(
                    http_method=tasks_v2.HttpMethod.POST, url=self.url,
                    headers={"Content-Type": "application/json"},
                    body=json.dumps({"dinner": n, "servings": 4}).encode(),
                )
            ))
            for n in range(count)
        ]

    def queue(self, name: str, *, paused: bool) -> str:
        path = f"{LOCATION}/queues/{name}"
        self.client.create_queue(parent=LOCATION, queue=tasks_v2.Queue(
            name=path,
            rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=RATE,
                                            max_concurrent_dispatches=CONCURRENT),
        ))
        if paused:
            self.client.pause_queue(name=path)
        return path

    def create_all(self, requests: list[tasks_v2.CreateTaskRequest]) -> None:
        create = self.client.create_task
        for request in requests:
            create(request=request)

    def worker_state(self) -> dict[str, float]:
        state: dict[str, float] = self.http.get("/count").json()
        return state

    def reset_worker(self) -> None:
        self.http.post("/reset").raise_for_status()

    def wait_delivered(self, count: int) -> dict[str, float]:
        """The worker's counters once it has `count` requests, or when the time is up."""
        limit = max(5.0, min(DELIVERY_TIMEOUT_S, self.deadline - time.monotonic()))
        give_up = time.monotonic() + limit
        while True:
            state = self.worker_state()
            if state["count"] >= count or time.monotonic() > give_up:
                return state
            time.sleep(POLL_S)

    def settle(self, queue: str) -> None:
        """After a phase that timed out: drop the queue's pending tasks and wait (a bounded
        while) for the attempts in flight to end, so they do not land in the next phase. An
        emulator busy delivering may be too slow to answer DeleteQueue at first."""
        deleted, last = False, -1.0
        give_up = time.monotonic() + max(5.0, min(SETTLE_TIMEOUT_S,
                                                  self.deadline - time.monotonic()))
        while time.monotonic() < give_up:
            if not deleted:
                with contextlib.suppress(exceptions.GoogleAPIError):
                    self.client.delete_queue(name=queue, retry=None, timeout=5.0)
                    deleted = True
            count = self.worker_state()["count"]
            if deleted and count == last:
                return
            last = count
            time.sleep(1.0)

    def warm_up(self) -> None:
        """Connect, and run every code path once, on throwaway queues."""
        queue = self.queue("warmup-paused", paused=True)
        self.create_all(self.requests(queue, WARMUP_TASKS))
        self.client.delete_queue(name=queue)
        self.reset_worker()
        queue = self.queue("warmup-running", paused=False)
        self.create_all(self.requests(queue, WARMUP_TASKS))
        if self.wait_delivered(WARMUP_TASKS)["count"] < WARMUP_TASKS:
            self.settle(queue)
        else:
            self.client.delete_queue(name=queue)

    def create_rate(self, tag: str) -> Phase:
        return self._paused_creates(f"create-{tag}", self.create_all)

    def batch_rate(self, tag: str) -> Phase:
        def create_in_batches(requests: list[tasks_v2.CreateTaskRequest]) -> None:
            parent = requests[0].parent
            for i in range(0, len(requests), BATCH):
                self.client.batch_create_tasks(parent=parent,
                                               requests=requests[i:i + BATCH]).result()

        return self._paused_creates(f"batch-{tag}", create_in_batches)

    def _paused_creates(
        self, name: str, create: Callable[[list[tasks_v2.CreateTaskRequest]], None]
    ) -> Phase:
        """TASKS tasks created by `create` on a paused queue (nothing delivered), timed."""
        queue = self.queue(name, paused=True)
        requests = self.requests(queue, TASKS)
        emulator_cpu = self.emulator.cpu_seconds()
        cpu = time.process_time()
        started = time.perf_counter()
        create(requests)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        emulator_cpu = self.emulator.cpu_seconds() - emulator_cpu
        self.client.delete_queue(name=queue)
        return Phase(elapsed, emulator_cpu=emulator_cpu, client_cpu=cpu)

    def end_to_end(self, tag: str) -> Phase:
        queue = self.queue(f"e2e-{tag}", paused=False)
        requests = self.requests(queue, TASKS)
        self.reset_worker()
        emulator_cpu, worker_cpu = self.emulator.cpu_seconds(), self.worker.cpu_seconds()
        cpu = time.process_time()
        started = time.monotonic()
        self.create_all(requests)
        created = time.monotonic()
        cpu = time.process_time() - cpu
        return self._delivered(queue, started, emulator_cpu, worker_cpu, cpu, created - started)

    def burst(self, tag: str) -> Phase:
        queue = self.queue(f"burst-{tag}", paused=True)
        self.create_all(self.requests(queue, TASKS))
        self.reset_worker()
        emulator_cpu, worker_cpu = self.emulator.cpu_seconds(), self.worker.cpu_seconds()
        started = time.monotonic()
        self.client.resume_queue(name=queue)
        return self._delivered(queue, started, emulator_cpu, worker_cpu, float("nan"), None)

    def _delivered(self, queue: str, started: float, emulator_cpu: float, worker_cpu: float,
                   client_cpu: float, part: float | None) -> Phase:
        state = self.wait_delivered(TASKS)
        emulator_cpu = self.emulator.cpu_seconds() - emulator_cpu
        worker_cpu = self.worker.cpu_seconds() - worker_cpu
        delivered = int(state["count"])
        if delivered < TASKS:
            seconds = time.monotonic() - started
            self.settle(queue)
        else:
            seconds = state["last"] - started
            self.client.delete_queue(name=queue)
        if part is None:  # burst: from the resume to the first delivery
            part = state["first"] - started if delivered else float("nan")
        return Phase(seconds, delivered, emulator_cpu, worker_cpu, client_cpu, part)

    def round(self, tag: str) -> Round:
        """The four phases; after an RPC error (the emulator too busy to answer within the
        client's timeout), the rest of the round is not run."""
        phases: list[Phase] = []
        for run in (self.create_rate, self.batch_rate, self.end_to_end, self.burst):
            try:
                phases.append(run(tag))
            except exceptions.GoogleAPIError as exc:
                phases.append(Phase(float("nan"), 0, error=f"{type(exc).__name__}: {exc}"))
                break
        while len(phases) < 4:
            phases.append(Phase(float("nan"), 0, error="not run"))
        return Round(*phases)


def measure(rounds: int = ROUNDS, budget: float = TIME_BUDGET_S,
            emulator_prefix: list[str] | None = None) -> list[Round]:
    """Up to `rounds` rounds (at least one): no new round once the last one would overrun
    `budget` seconds, counted from the start."""
    deadline = time.monotonic() + budget
    with processes(emulator_prefix) as (emulator, worker):
        bench = Bench(emulator, worker, deadline)
        try:
            bench.warm_up()
            results: list[Round] = []
            for n in range(rounds):
                started = time.monotonic()
                results.append(bench.round(f"r{n}"))
                if any(p.error for _, p in results[-1].phases):
                    break
                if time.monotonic() + (time.monotonic() - started) > deadline:
                    break
            return results
        finally:
            bench.close()


def _seconds(phases: list[Phase]) -> str:
    """The median time, marked as a lower bound ('>') if any run timed out."""
    values = [p.seconds for p in phases if not p.error]
    if not values:
        return "nan"
    value = statistics.median(values)
    return f"{value:.2f}" if all(p.complete for p in phases) else f">{value:.2f}"


def main() -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results = measure()
    print(f"{len(results)} rounds of {TASKS:,} tasks ({ROUNDS} planned); one client thread; "
          f"queues at {RATE:,.0f}/s, {CONCURRENT:,} concurrent; {os.cpu_count()} CPUs, load "
          f"average {load:.1f} at the start. 'ms/t': CPU milliseconds per task in that process")
    header = (f"{'round':>6} | {'creates/s':>9} {'emu ms/t':>8} {'cli ms/t':>8} | "
              f"{'batch/s':>7} | "
              f"{'e2e s':>6} {'creating':>8} {'emu ms/t':>8} {'wkr ms/t':>8} | "
              f"{'burst s':>7} {'first':>6} {'emu ms/t':>8} {'wkr ms/t':>8}")
    print(header)
    print("-" * len(header))
    for n, r in enumerate(results, 1):
        phases = r.phases
        late = "".join(
            f" [{name}: {p.error[:160]}]" if p.error else
            f" [{name}: {p.delivered} of {TASKS} delivered before the time ran out]"
            if p.delivered < TASKS else
            f" [{name}: the worker got {p.delivered} requests for {TASKS} tasks]"
            for name, p in phases if not p.complete or p.delivered > TASKS
        )
        print(f"{n:>6} | {TASKS / r.create.seconds:>9,.0f} "
              f"{r.create.per_task_ms(r.create.emulator_cpu):>8.3f} "
              f"{r.create.per_task_ms(r.create.client_cpu):>8.3f} | "
              f"{TASKS / r.batch.seconds:>7,.0f} | "
              f"{r.e2e.seconds:>6.2f} {r.e2e.part:>8.2f} "
              f"{r.e2e.per_task_ms(r.e2e.emulator_cpu):>8.3f} "
              f"{r.e2e.per_task_ms(r.e2e.worker_cpu):>8.3f} | "
              f"{r.burst.seconds:>7.2f} {r.burst.part:>6.3f} "
              f"{r.burst.per_task_ms(r.burst.emulator_cpu):>8.3f} "
              f"{r.burst.per_task_ms(r.burst.worker_cpu):>8.3f}{late}")
    rates = [TASKS / r.create.seconds for r in results if not r.create.error]
    creates = statistics.median(rates) if rates else float("nan")
    print(f"emulator_creates_per_s={creates:.0f} (target >= {TARGET_CREATES_PER_S:,.0f})")
    batch = [TASKS / r.batch.seconds for r in results if not r.batch.error]
    print(f"emulator_batch_creates_per_s={statistics.median(batch) if batch else float('nan'):.0f}"
          f" (batches of {BATCH}; no target)")
    print(f"emulator_e2e_2000_s={_seconds([r.e2e for r in results])} "
          f"(target <= {TARGET_E2E_S:.1f})")
    print(f"emulator_burst_2000_s={_seconds([r.burst for r in results])} "
          f"(target <= {GO_BURST_S:.1f}, the Go emulator's)")


# The emulator's own __main__ under cProfile, timed by the main thread's CPU clock (so other
# processes competing for the CPU do not inflate it); SIGUSR1 writes the profile so far to
# DIR/N.prof and starts a new one, so each phase gets its own.
PROFILED_EMULATOR = """\
import cProfile, os, signal, sys, time
from fastapi_cloud_tasks.emulator.__main__ import main
out, state = sys.argv[1], {"n": 0, "profiler": cProfile.Profile(time.thread_time)}
def snapshot(signum, frame):
    state["profiler"].disable()
    path = os.path.join(out, f"{state['n']}.prof")
    state["profiler"].dump_stats(path + ".tmp")
    os.replace(path + ".tmp", path)
    state["n"] += 1
    state["profiler"] = cProfile.Profile(time.thread_time)
    state["profiler"].enable()
signal.signal(signal.SIGUSR1, snapshot)
state["profiler"].enable()
sys.exit(main(sys.argv[sys.argv.index("-m") + 2:]))
"""


def profile(top: int = 25) -> None:
    """One round with the emulator's main thread (event loop, gRPC handlers, dispatcher, HTTP
    client) under cProfile, a profile per phase: the top entries by own time, and the
    emulator's and its HTTP client's functions by cumulative time. cProfile inflates times."""
    import pstats

    with tempfile.TemporaryDirectory(prefix="bench-emulator-profile-") as tmp, processes(
        ["-c", PROFILED_EMULATOR, tmp]
    ) as (emulator, worker):
        bench = Bench(emulator, worker, time.monotonic() + 2 * TIME_BUDGET_S)
        snapshots = 0

        def snapshot() -> str:
            nonlocal snapshots
            path = Path(tmp) / f"{snapshots}.prof"
            snapshots += 1
            emulator.popen.send_signal(signal.SIGUSR1)
            give_up = time.monotonic() + 30.0
            while not path.exists():
                if time.monotonic() > give_up:
                    raise RuntimeError(f"no profile from the emulator:\n{emulator.log()}")
                time.sleep(0.05)
            return str(path)

        try:
            bench.warm_up()
            snapshot()
            for name, run in (("create", bench.create_rate), ("batch", bench.batch_rate),
                              ("e2e", bench.end_to_end), ("burst", bench.burst)):
                phase = run("profile")
                stats = pstats.Stats(snapshot())
                print(f"===== {name}: {phase.seconds:.2f} s, {phase.delivered} delivered; "
                      f"{stats.total_tt:.2f} CPU s profiled (main thread, inflated) =====")
                stats.sort_stats("tottime").print_stats(top)
                stats.sort_stats("cumulative").print_stats(
                    r"fastapi_cloud_tasks|h11/_connection|hpack",
                    top)
        finally:
            bench.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker_main(sys.argv[2])
    elif "--profile" in sys.argv[1:]:
        profile()
    else:
        main()
