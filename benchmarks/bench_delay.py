"""`.delay()` against building and sending the same CreateTaskRequest by hand.

Both paths hand their request to the same real `CloudTasksClient`, whose transport calls an
in-memory service that does the minimum (returns `request.task`), so the difference measured is
what `.delay()` adds: argument validation through the endpoint's FastAPI fields, serialization,
the round-trip check through FastAPI's own request parsing, option checks and size limits.

The rounds are interleaved (A, B, A, B, ... with the order flipped every other round) so that
drift in CPU frequency or background load hits both paths alike; each figure is the median over
the rounds of the mean per-call time within a round. On a busy machine the rounds stop early
(at least 3) once a time budget is spent, to keep the run near 20 s.

    python -m benchmarks                      # every benchmark
    python -m benchmarks.bench_delay          # this one
    python -m benchmarks.bench_delay --profile  # cProfile of .delay(), top cumulative entries
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI
from google.cloud import tasks_v2
from pydantic import BaseModel

from fastapi_cloud_tasks import DelayedRouteBuilder
from fastapi_cloud_tasks.engine.transports import tasks_client

BASE_URL = "https://dinner-worker.example.com"
QUEUE = "projects/bench-project/locations/europe-west1/queues/dinners"
TIMEOUT = 10.0
COUNTDOWN = 60

ROUNDS = 7  # per path; odd, so the median is one measured round
CALLS = 2_000  # per round
MIN_ROUNDS = 3  # on a loaded machine, stop after this many once the time budget is spent
TIME_BUDGET_S = 22.0  # for the measured rounds: about 12 s on an idle 2-core machine
WARMUP_CALLS = 500  # per path, before the first round
TARGET_RATIO = 1.50


class Recipe(BaseModel):
    ingredients: list[str]
    servings: int


class MinimalTasks:
    """The in-memory Cloud Tasks service: does as little as an RPC can."""

    def create_queue(self, request: tasks_v2.CreateQueueRequest) -> tasks_v2.Queue:
        return request.queue

    def create_task(self, request: tasks_v2.CreateTaskRequest) -> tasks_v2.Task:
        return request.task


class RecordingTasks(MinimalTasks):
    """Keeps the requests it receives; used once, to check both paths send the same thing."""

    def __init__(self) -> None:
        self.requests: list[tasks_v2.CreateTaskRequest] = []

    def create_task(self, request: tasks_v2.CreateTaskRequest) -> tasks_v2.Task:
        self.requests.append(request)
        return request.task


CLIENT = tasks_client(MinimalTasks())

router = APIRouter(
    route_class=DelayedRouteBuilder(
        base_url=BASE_URL, queue_path=QUEUE, client=CLIENT, task_create_timeout=TIMEOUT
    )
)


@router.post("/{restaurant}/make_dinner")
async def make_dinner(restaurant: str, recipe: Recipe, priority: int = 0) -> None:
    """The worker side is never called here: only `.delay()` is measured."""


app = FastAPI()
app.include_router(router)

# Built once and shared by both paths: constructing the caller's model is not what is measured.
RECIPE = Recipe(ingredients=["chickpeas", "onion", "tomato", "garam masala", "rice"], servings=4)
RESTAURANT = "Taj"
PRIORITY = 2


# -- the two paths -------------------------------------------------------------------------------


def via_delay(client: tasks_v2.CloudTasksClient | None = None) -> tasks_v2.Task:
    if client is None:
        return make_dinner.delay(restaurant=RESTAURANT, recipe=RECIPE, priority=PRIORITY)
    return make_dinner.options(client=client).delay(
        restaurant=RESTAURANT, recipe=RECIPE, priority=PRIORITY
    )


def via_delay_countdown(client: tasks_v2.CloudTasksClient | None = None) -> tasks_v2.Task:
    options: dict[str, Any] = {"countdown": COUNTDOWN}
    if client is not None:
        options["client"] = client
    return make_dinner.options(**options).delay(
        restaurant=RESTAURANT, recipe=RECIPE, priority=PRIORITY
    )


def _by_hand(client: tasks_v2.CloudTasksClient, schedule_time: datetime | None) -> tasks_v2.Task:
    """What a careful user writes without the library: same URL, headers and compact body."""
    body = json.dumps(RECIPE.model_dump(mode="json"), separators=(",", ":")).encode()
    task = tasks_v2.Task(
        http_request=tasks_v2.HttpRequest(
            url=f"{BASE_URL}/{quote(RESTAURANT, safe='')}/make_dinner?priority={PRIORITY}",
            http_method=tasks_v2.HttpMethod.POST,
            headers={"Content-Type": "application/json"},
            body=body,
        )
    )
    if schedule_time is not None:
        task.schedule_time = schedule_time
    request = tasks_v2.CreateTaskRequest(parent=QUEUE, task=task)
    created: tasks_v2.Task = client.create_task(request=request, timeout=TIMEOUT)
    return created


def by_hand(client: tasks_v2.CloudTasksClient = CLIENT) -> tasks_v2.Task:
    return _by_hand(client, None)


def by_hand_countdown(client: tasks_v2.CloudTasksClient = CLIENT) -> tasks_v2.Task:
    return _by_hand(client, datetime.now(timezone.utc) + timedelta(seconds=COUNTDOWN))


PAIRS: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
    ("delay()", via_delay, by_hand),
    ("options(countdown=60).delay()", via_delay_countdown, by_hand_countdown),
]


# -- checks and timing ---------------------------------------------------------------------------


def check_same_requests() -> None:
    """Both paths must send equal CreateTaskRequests, or the comparison means nothing."""
    service = RecordingTasks()
    client = tasks_client(service)
    via_delay(client)
    by_hand(client)
    library, hand = service.requests
    assert library == hand, f"requests differ:\n{library}\n---\n{hand}"

    before = datetime.now(timezone.utc)
    via_delay_countdown(client)
    by_hand_countdown(client)
    after = datetime.now(timezone.utc)
    library, hand = service.requests[2:]
    # The schedule times are "now + 60 s" read at two different instants: check each lies in
    # the window, then compare everything else exactly.
    for request in (library, hand):
        when = request.task.schedule_time
        assert before + timedelta(seconds=COUNTDOWN) <= when <= after + timedelta(
            seconds=COUNTDOWN
        ), when
    hand.task.schedule_time = library.task.schedule_time
    assert library == hand, f"requests differ:\n{library}\n---\n{hand}"


def time_calls(func: Callable[[], Any], calls: int) -> float:
    """Mean nanoseconds per call over `calls` calls."""
    gc.collect()
    started = time.perf_counter_ns()
    for _ in range(calls):
        func()
    return (time.perf_counter_ns() - started) / calls


def measure(
    rounds: int = ROUNDS, calls: int = CALLS, budget_s: float = TIME_BUDGET_S
) -> tuple[int, list[tuple[str, float, float]]]:
    """(rounds run, [(name, µs per call via the library, µs per call by hand) for each pair])."""
    for _, library, hand in PAIRS:
        time_calls(library, WARMUP_CALLS)
        time_calls(hand, WARMUP_CALLS)
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name, *_ in PAIRS}
    deadline = time.perf_counter() + budget_s
    done = 0
    for round_no in range(rounds):
        for name, library, hand in PAIRS:
            lib_ns, hand_ns = samples[name]
            if round_no % 2 == 0:
                lib_ns.append(time_calls(library, calls))
                hand_ns.append(time_calls(hand, calls))
            else:
                hand_ns.append(time_calls(hand, calls))
                lib_ns.append(time_calls(library, calls))
        done = round_no + 1
        if done >= MIN_ROUNDS and time.perf_counter() > deadline:
            break
    return done, [
        (name, statistics.median(lib) / 1000, statistics.median(hand) / 1000)
        for name, (lib, hand) in samples.items()
    ]


def main() -> None:
    check_same_requests()
    rounds, results = measure()
    note = "" if rounds == ROUNDS else f" ({ROUNDS} planned; time budget spent: busy machine?)"
    print(f"{rounds} interleaved rounds of {CALLS:,} calls per path{note}; median µs per call")
    width = max(len(name) for name, *_ in results)
    print(f"{'path':<{width}}  {'library':>9}  {'by hand':>9}  {'ratio':>6}")
    for name, library, hand in results:
        print(f"{name:<{width}}  {library:>9.1f}  {hand:>9.1f}  {library / hand:>6.2f}")
    _, library, hand = results[0]
    print(f"delay_vs_by_hand_ratio={library / hand:.2f} (target <= {TARGET_RATIO:.2f})")


def profile(calls: int = 5_000, top: int = 30) -> None:
    """cProfile `.delay()`: the top cumulative entries in the library and the packages it
    drives (FastAPI, Starlette, pydantic, proto-plus, api_core, the generated client)."""
    import cProfile
    import io
    import pstats
    import site

    time_calls(via_delay, WARMUP_CALLS)
    profiler = cProfile.Profile()
    profiler.runcall(time_calls, via_delay, calls)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
    stats.print_stats(
        r"fastapi_cloud_tasks|fastapi/|starlette/|pydantic|/proto/|api_core|tasks_v2", top
    )
    text = out.getvalue()
    for prefix in site.getsitepackages():
        text = text.replace(prefix.rstrip("/") + "/", "")
    print(f"{calls:,} calls of make_dinner.delay(...) under cProfile (times are inflated)")
    print(text)


if __name__ == "__main__":
    if "--profile" in sys.argv[1:]:
        profile()
    else:
        main()
