"""Cost per delivered task against the number of queues and jobs, and the memory a long run keeps
(issue 12, section 4).

(a) 1,000 tasks drained from one queue, against 1,000 tasks one per queue over 1,000 queues:
    CPU per delivered task, and their ratio (target <= 1.1). Before a due-time index every
    dispatch scanned every queue, twice.
(b) An every-minute job advanced 6 hours alone, against the same beside 1,000 idle jobs (a
    yearly schedule that never falls in the window): CPU per occurrence, and their ratio
    (target <= 1.1).
(c) A day of 100 every-minute jobs (144,000 deliveries) in a fresh process: how much its RSS
    grows while the harness keeps every attempt and `advance()` returns them (target <= 150 MB).

The harness paths are the real ones (`Harness`, its engines and in-process ASGI deliveries into
a FastAPI app); only the setup (creating queues, tasks and jobs through the real clients) is
outside the timed section. Rounds are interleaved, the order flipped every other round; each
figure is the median over rounds of CPU time per delivery (this process, every thread).

    python -m benchmarks.bench_scale
"""

from __future__ import annotations

import gc
import statistics
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from fastapi import FastAPI
from google.cloud import scheduler_v1, tasks_v2

from benchmarks.bench_harness import Stopwatch
from pytest_cloudtasks.harness import Harness, HarnessConfig
from pytest_cloudtasks.queue import CloudTasksQueue

BASE_URL = "https://bench-worker.example.com"
PROJECT = "projects/bench/locations/europe-west1"
START = datetime(2025, 3, 1, tzinfo=timezone.utc)
N_TASKS = 1000
N_QUEUES = 1000
N_IDLE_JOBS = 1000
OCCURRENCE_HOURS = 6  # an every-minute job: 360 occurrences
DAY_JOBS = 100
ROUNDS = 5
TARGET_RATIO = 1.1
TARGET_DAY_MB = 150.0

app = FastAPI()


@app.post("/work")
async def work() -> None:
    """The lightest endpoint: what is measured is the harness around it."""


def _harness() -> Harness:
    # A generous bound: the day of 100 every-minute jobs is 144,000 deliveries.
    return Harness(lambda: app, HarnessConfig(start=START, max_deliveries=10**6))


def _task(queue: str) -> tasks_v2.CreateTaskRequest:
    return tasks_v2.CreateTaskRequest(parent=f"{PROJECT}/queues/{queue}", task=tasks_v2.Task(
        http_request=tasks_v2.HttpRequest(url=f"{BASE_URL}/work")))


def _job(name: str, schedule: str) -> scheduler_v1.CreateJobRequest:
    return scheduler_v1.CreateJobRequest(parent=PROJECT, job=scheduler_v1.Job(
        name=f"{PROJECT}/jobs/{name}", schedule=schedule,
        http_target=scheduler_v1.HttpTarget(uri=f"{BASE_URL}/work")))


def drain(queues: int) -> float:
    """CPU ns per task of draining N_TASKS spread round-robin over `queues` queues."""
    harness = _harness()
    try:
        queue = CloudTasksQueue(harness)
        for i in range(N_TASKS):
            harness.tasks_client.create_task(request=_task(f"q{i % queues}"))
        gc.collect()
        watch = Stopwatch()
        attempts = queue.run_until_empty()
        cpu = watch.read().cpu
    finally:
        harness.close()
    assert len(attempts) == N_TASKS
    assert all(a.status_code == 200 for a in attempts)
    return cpu / N_TASKS


def occurrences(idle_jobs: int) -> float:
    """CPU ns per occurrence of an every-minute job advanced OCCURRENCE_HOURS, beside
    `idle_jobs` yearly jobs whose next run is months away."""
    harness = _harness()
    try:
        queue = CloudTasksQueue(harness)
        client = harness.scheduler_client
        for i in range(idle_jobs):
            client.create_job(request=_job(f"idle-{i}", "0 0 1 1 *"))
        client.create_job(request=_job("every-minute", "* * * * *"))
        gc.collect()
        watch = Stopwatch()
        attempts = queue.advance(hours=OCCURRENCE_HOURS)
        cpu = watch.read().cpu
    finally:
        harness.close()
    expected = OCCURRENCE_HOURS * 60
    assert len(attempts) == expected, f"{len(attempts)} runs, expected {expected}"
    return cpu / expected


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS line in /proc/self/status")


def day_child() -> None:
    """In a fresh process: RSS growth (kB) over a day of DAY_JOBS every-minute jobs, printed."""
    harness = _harness()
    try:
        queue = CloudTasksQueue(harness)
        for i in range(DAY_JOBS):
            harness.scheduler_client.create_job(request=_job(f"minutely-{i}", "* * * * *"))
        queue.advance(minutes=1)  # first-use costs (portal thread, imports) out of the figure
        gc.collect()
        before = rss_kb()
        attempts = queue.advance(days=1)
        gc.collect()
        after = rss_kb()
        assert len(attempts) >= DAY_JOBS * 1439, len(attempts)
        print(after - before, len(harness.attempts))
    finally:
        harness.close()


def day_rss() -> tuple[float, int]:
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_scale", "--day-child"],
                          capture_output=True, text=True, check=True)
    grown_kb, kept = done.stdout.split()
    return int(grown_kb) / 1024, int(kept)


def interleaved(contenders: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for run in contenders.values():  # warm-up: imports, first-call costs
        run()
    for round_no in range(ROUNDS):
        names = list(contenders)
        for name in names if round_no % 2 == 0 else names[::-1]:
            samples[name].append(contenders[name]())
    return samples


def report(title: str, key: str, samples: dict[str, list[float]], unit: str) -> None:
    print(title)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, values in samples.items():
        rounds = " ".join(f"{v / 1000:.0f}" for v in values)
        print(f"  {name:<40} {medians[name] / 1000:8.1f} µs/{unit} CPU  rounds: {rounds}")
    one, many = list(medians.values())
    paired = statistics.median(b / a for a, b in zip(*samples.values(), strict=True))
    print(f"{key}={many / one:.2f} (target <= {TARGET_RATIO}; paired {paired:.2f})\n")


def main() -> None:
    drains: dict[str, Callable[[], Any]] = {
        f"{N_TASKS} tasks on 1 queue": lambda: drain(1),
        f"{N_TASKS} tasks over {N_QUEUES} queues": lambda: drain(N_QUEUES),
    }
    report("(a) drain: CPU per delivered task", "drain_many_queues_ratio",
           interleaved(drains), "task")
    runs: dict[str, Callable[[], Any]] = {
        "every-minute job alone": lambda: occurrences(0),
        f"beside {N_IDLE_JOBS} idle jobs": lambda: occurrences(N_IDLE_JOBS),
    }
    report(f"(b) an every-minute job advanced {OCCURRENCE_HOURS} h: CPU per occurrence",
           "occurrence_many_jobs_ratio", interleaved(runs), "run")
    grown_mb, kept = day_rss()
    print(f"(c) a day of {DAY_JOBS} every-minute jobs, {kept} attempts kept")
    print(f"day_of_jobs_rss_growth_mb={grown_mb:.0f} (target <= {TARGET_DAY_MB:.0f}; "
          f"{grown_mb * 1024 * 1024 / kept:.0f} bytes per attempt)")


if __name__ == "__main__":
    if "--day-child" in sys.argv[1:]:
        day_child()
    else:
        main()
