"""At-least-once on purpose: `duplicates`, `shuffle` and `transient_failures`, replayed by
`--cloudtasks-seed` (pytest_cloudtasks/chaos.py)."""

from __future__ import annotations

import fnmatch
import itertools
import re
from collections.abc import Callable

import pytest

APP = '''
from fastapi import APIRouter, Depends, FastAPI, Response

from fastapi_cloud_tasks import (
    CloudTasksHeaders,
    DelayedRouteBuilder,
    ScheduledRouteBuilder,
    location_path,
    queue_path,
    scheduled_task,
)

router = APIRouter(route_class=DelayedRouteBuilder(
    base_url="https://worker.example.com", queue_path=queue_path("p", "europe-west1", "q")))
seen = []


@router.post("/charge")
def charge(order: int, response: Response, ct: CloudTasksHeaders = Depends()):
    seen.append((order, ct.task_name, ct.retry_count, ct.execution_count,
                 ct.previous_response, ct.retry_reason))
    if order < 0 and ct.retry_count:
        response.status_code = 409  # "already charged": not how to answer a duplicate


ticks = []
jobs = APIRouter(prefix="/jobs", route_class=ScheduledRouteBuilder(
    base_url="https://worker.example.com", location_path=location_path("p", "europe-west1")))


@scheduled_task
@jobs.post("/tick")
def tick():
    ticks.append(1)


app = FastAPI()
app.include_router(router)
app.include_router(jobs)
'''

_runs = itertools.count()


@pytest.fixture
def write(pytester: pytest.Pytester) -> Callable[..., None]:
    """The app (on a host of its own per test) and the test module, with `ini` lines."""
    host = f"worker-{next(_runs)}.example.com"

    def write(test: str, ini: str = "") -> None:
        pytester.makeini("[pytest]\ncloudtasks_app = chaos_app:app\n"
                         "asyncio_default_fixture_loop_scope = function\n"
                         "filterwarnings = error\n" + ini)
        pytester.makepyfile(chaos_app=APP.replace("worker.example.com", host),
                            test_it=test)
        pytester.syspathinsert()

    return write


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_duplicates_1_delivers_every_success_again_as_a_retry_of_an_unanswered_attempt(
        pytester: pytest.Pytester, write: Callable[..., None]) -> None:
    write('''
import pytest
import chaos_app

@pytest.mark.cloudtasks(duplicates=1)
def test_it(cloudtasks_queue):
    chaos_app.charge.delay(order=1)
    first, again = cloudtasks_queue.run_until_empty()
    assert (first.injected, again.injected) == (None, "duplicate")
    assert again.outcome.value == "succeeded" and again.number == 2 and again.retry_count == 1
    [(_, name, *one), (_, same, *two)] = chaos_app.seen
    assert name == same == first.task.short_name
    assert one == [0, 0, None, None]
    assert two == [1, 0, 504, ""]  # the first answer never recorded: no execution counted
    assert again.request_headers["X-CloudTasks-TaskETA"] == first.request_headers[
        "X-CloudTasks-TaskETA"]
''')
    _run(pytester).assert_outcomes(passed=1)


def test_a_fraction_of_duplicates_is_drawn_from_the_seed(
        pytester: pytest.Pytester, write: Callable[..., None]) -> None:
    write('''
import pytest
import chaos_app

@pytest.mark.cloudtasks(duplicates=0.5)
def test_it(cloudtasks_queue):
    for order in range(40):
        chaos_app.charge.delay(order=order)
    attempts = cloudtasks_queue.run_until_empty()
    twice = sorted(a.task.arguments["order"] for a in attempts if a.injected == "duplicate")
    print("TWICE", twice)
    assert 5 < len(twice) < 35
    assert len(chaos_app.seen) == 40 + len(twice)
''')
    runs = [_run(pytester, "-s", f"--cloudtasks-seed={seed}") for seed in (7, 7, 8)]
    for result in runs:
        result.assert_outcomes(passed=1)
    lines = [re.findall(r"TWICE \[.*\]", result.stdout.str()) for result in runs]
    assert lines[0] == lines[1] != lines[2]


def test_shuffle_reorders_the_tasks_due_by_an_instant_and_not_later_ones(
        pytester: pytest.Pytester, write: Callable[..., None]) -> None:
    write('''
import pytest
import chaos_app

@pytest.mark.cloudtasks(shuffle=True)
def test_it(cloudtasks_queue):
    cloudtasks_queue.advance(0)  # the clock stands still: ten tasks due at one instant
    for order in range(10):
        chaos_app.charge.delay(order=order)
    for order in range(10, 20):
        chaos_app.charge.options(countdown=5).delay(order=order)
    attempts = cloudtasks_queue.run_until_empty()
    orders = [a.task.arguments["order"] for a in attempts]
    print("ORDER", orders)
    assert sorted(orders[:10]) == list(range(10)) and sorted(orders[10:]) == list(range(10, 20))
    assert orders[:10] != list(range(10)) and orders[10:] != list(range(10, 20))
    assert all(a.injected is None for a in attempts)
''')
    first, again = (_run(pytester, "-s", "--cloudtasks-seed=3") for _ in range(2))
    first.assert_outcomes(passed=1)
    again.assert_outcomes(passed=1)
    assert re.findall("ORDER.*", first.stdout.str()) == re.findall("ORDER.*", again.stdout.str())


def test_without_shuffle_ties_keep_creation_order(
        pytester: pytest.Pytester, write: Callable[..., None]) -> None:
    write('''
import chaos_app

def test_it(cloudtasks_queue):
    for order in range(10):
        chaos_app.charge.delay(order=order)
    assert [a.task.arguments["order"] for a in cloudtasks_queue.run_until_empty()] == list(
        range(10))
''')
    _run(pytester).assert_outcomes(passed=1)


def test_a_transient_failure_never_reaches_the_app_and_the_retry_says_504(
        pytester: pytest.Pytester, write: Callable[..., None]) -> None:
    write('''
import pytest
import chaos_app

@pytest.mark.cloudtasks(transient_failures=1, min_backoff=2)
def test_it(cloudtasks_queue):
    chaos_app.charge.delay(order=1)
    lost, delivered = cloudtasks_queue.run_until_empty()
    assert (lost.injected, lost.status_code, lost.outcome.value) == (
        "transient failure", 504, "retrying")
    assert lost.response is None and lost.exception is None
    assert delivered.injected is None and delivered.status_code == 200
    assert (delivered.dispatch_time - lost.dispatch_time).total_seconds() == 2
    assert [s[2:] for s in chaos_app.seen] == [(1, 0, 504, "")]  # only the retry arrived
''')
    _run(pytester).assert_outcomes(passed=1)


def test_a_task_failed_by_injection_names_it_and_the_seed_to_replay(
        pytester: pytest.Pytester, write: Callable[..., None]) -> None:
    write('''
import pytest
import chaos_app

@pytest.mark.cloudtasks(transient_failures=1, max_attempts=1)
def test_it(cloudtasks_queue):
    chaos_app.charge.delay(order=1)
    cloudtasks_queue.run_until_empty()
''')
    result = _run(pytester, "--cloudtasks-seed=42")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*TaskFailed: charge(order=1) failed for good after 1 attempt(s)*",
        "*Attempts: #1 504 (injected transient failure) at *",
        "*Chaos (transient_failures=1) with seed 42: replay with --cloudtasks-seed=42.",
        "*- cloudtasks chaos -*",
        "Injected: 1",
        "  transient failure of charge(order=1) (attempt #1) at *",
    ])


def test_a_duplicate_answered_with_an_error_fails_the_drain(
        pytester: pytest.Pytester, write: Callable[..., None]) -> None:
    write('''
import pytest
import chaos_app

@pytest.mark.cloudtasks(duplicates=1)
def test_it(cloudtasks_queue):
    chaos_app.charge.delay(order=-1)
    cloudtasks_queue.run_until_empty()
''')
    result = _run(pytester, "--cloudtasks-seed=5")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*TaskFailed: charge(order=-1) answered 409 * to a duplicate delivery "
        "(attempt #2, injected): Cloud Tasks would retry it until it got a 2xx.*",
    ])


def test_the_printed_seed_replays_the_same_events_of_a_failed_assert(
        pytester: pytest.Pytester, write: Callable[..., None]) -> None:
    write('''
import pytest
import chaos_app

@pytest.mark.cloudtasks(duplicates=0.3, shuffle=True, transient_failures=0.3,
                        start="2026-01-01T00:00:00+00:00")
def test_it(cloudtasks_queue):
    for order in range(40):
        chaos_app.charge.delay(order=order)
    attempts = cloudtasks_queue.run_until_empty()
    print("INJECTED", [(a.task.arguments["order"], a.injected) for a in attempts])
    assert len({s[1] for s in chaos_app.seen}) == len(chaos_app.seen)  # each task once
''')
    # A seed of its own. 40 tasks, not 8: with 8, one seed in twenty drew no duplicate
    # (0.7 ** 8) and the inner test passed; 0.7 ** 40 is below one in a million. The report
    # names only the first 5 events, so every attempt's injection is printed and compared too.
    first = _run(pytester, "-s")
    first.assert_outcomes(failed=1)
    seed = re.search(r"replay with --cloudtasks-seed=(\d+)", first.stdout.str())
    assert seed is not None
    replay = _run(pytester, "-s", f"--cloudtasks-seed={seed[1]}")
    replay.assert_outcomes(failed=1)

    def section(result: pytest.RunResult) -> str:
        text = result.stdout.str()
        return text[text.index("cloudtasks chaos -"):text.index("short test summary")]

    def injected(result: pytest.RunResult) -> list[str]:
        return re.findall(r"INJECTED .*", result.stdout.str())

    assert "'duplicate')" in injected(first)[0]
    assert "Injected: " in section(first)
    assert injected(first) == injected(replay)
    assert section(first) == section(replay)


def test_the_header_shows_the_seed_when_the_ini_turns_chaos_on(
        pytester: pytest.Pytester, write: Callable[..., None]) -> None:
    write("def test_it():\n    pass\n", ini="cloudtasks_config =\n    duplicates = 0.1\n")
    result = _run(pytester, "--cloudtasks-seed=99")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["cloudtasks chaos seed: 99 (replay with --cloudtasks-seed=99)"])


def test_the_header_says_nothing_of_chaos_when_it_is_off(
        pytester: pytest.Pytester, write: Callable[..., None]) -> None:
    write("def test_it():\n    pass\n", ini="cloudtasks_config =\n    shuffle = false\n")
    result = _run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*cloudtasks chaos*")


@pytest.mark.parametrize(("marker", "message"), [
    ("duplicates=2", "*duplicates=2: give a fraction from 0 to 1 (1 for every task, 0.1 for "
                     "one in ten).*"),
    ('transient_failures="some"', "*1 value(s) of the wrong type: transient_failures='some' "
                                  "(expected a fraction from 0 to 1).*"),
    ('shuffle="yes"', "*shuffle='yes' (expected True or False)*"),
])
def test_wrong_chaos_values_are_usage_errors(
        pytester: pytest.Pytester, write: Callable[..., None], marker: str, message: str,
) -> None:
    write(f'''
import pytest

@pytest.mark.cloudtasks({marker})
def test_it(cloudtasks_queue):
    pass
''')
    result = _run(pytester)
    assert result.ret != 0
    output = (result.stdout.str() + result.stderr.str()).splitlines()
    assert any(fnmatch.fnmatch(line, message) for line in output), output


def test_an_ini_fraction_that_is_not_a_number_is_a_usage_error(
        pytester: pytest.Pytester, write: Callable[..., None]) -> None:
    write("def test_it(cloudtasks_queue):\n    pass\n",
          ini="cloudtasks_config =\n    duplicates = lots\n")
    result = _run(pytester)
    assert result.ret != 0
    assert "cloudtasks_config line 'duplicates = lots': duplicates takes a number, not " \
           "'lots'." in result.stdout.str() + result.stderr.str()


def test_xdist_workers_share_the_drawn_seed(
        pytester: pytest.Pytester, write: Callable[..., None]) -> None:
    write('''
import pytest
import chaos_app

@pytest.mark.parametrize("n", range(4))
@pytest.mark.cloudtasks(duplicates=1)
def test_it(cloudtasks_queue, n):
    chaos_app.charge.delay(order=n)
    cloudtasks_queue.run_until_empty()
    assert False
''')
    result = _run(pytester, "-n", "2")
    result.assert_outcomes(failed=4)
    seeds = set(re.findall(r"replay with --cloudtasks-seed=(\d+)", result.stdout.str()))
    assert len(seeds) == 1, seeds


def test_scheduler_runs_are_left_alone(
        pytester: pytest.Pytester, write: Callable[..., None]) -> None:
    write('''
import pytest
import chaos_app

@pytest.mark.cloudtasks(duplicates=1, shuffle=True, transient_failures=1,
                        start="2026-01-01T00:00:00+00:00")
def test_it(cloudtasks_scheduler):
    chaos_app.tick.scheduler(name="tick", schedule="0 * * * *").schedule()
    runs = cloudtasks_scheduler.advance(hours=3)
    assert [run.injected for run in runs] == [None, None, None]
    assert len(chaos_app.ticks) == 3
''')
    _run(pytester).assert_outcomes(passed=1)


def test_the_ini_turns_chaos_on_for_every_test_and_a_marker_turns_it_off(
        pytester: pytest.Pytester, write: Callable[..., None]) -> None:
    write('''
import pytest
import chaos_app

def test_suite_default(cloudtasks_queue):
    chaos_app.charge.delay(order=1)
    assert [a.injected for a in cloudtasks_queue.run_until_empty()] == [None, "duplicate"]

@pytest.mark.cloudtasks(duplicates=0)
def test_marker_off(cloudtasks_queue):
    chaos_app.charge.delay(order=2)
    assert [a.injected for a in cloudtasks_queue.run_until_empty()] == [None]
''', ini="cloudtasks_config =\n    duplicates = 1\n")
    _run(pytester).assert_outcomes(passed=2)
