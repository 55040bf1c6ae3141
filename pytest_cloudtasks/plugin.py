"""pytest plugin: fixtures `cloudtasks_app`, `cloudtasks_queue`, the `cloudtasks` marker and
the ini options that set suite-wide defaults.

pytest imports this module at every start, in every environment where fastapi-cloud-tasks is
installed, with or without the `[testing]` extra: it imports only pytest and the standard
library. FastAPI, Google's clients and the extra's packages are imported when a test requests a
fixture, and a missing extra is a `pytest.UsageError` saying what to install.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Generator, Iterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from pytest_cloudtasks.client_capture import ClientCapture
from pytest_cloudtasks.clock import BACKENDS, DEFAULT_BACKEND
from pytest_cloudtasks.extras import require

if TYPE_CHECKING:
    from pytest_cloudtasks.harness import Harness, HarnessConfig
    from pytest_cloudtasks.queue import CloudTasksQueue
    from pytest_cloudtasks.scheduler import CloudTasksScheduler

# The modules each clock backend freezes time with (cloudtasks_clock).
CLOCK_MODULES = {"freezegun": "freezegun", "time-machine": "time_machine"}

RETRY_KEYS = {"max_attempts": int, "min_backoff": float, "max_backoff": float,
              "max_doublings": int, "max_retry_duration": float}
RATE_KEYS = {"max_dispatches_per_second": float, "max_concurrent_dispatches": int}
HARNESS_KEYS = {"strict": bool, "fail_fast": bool, "max_deliveries": int, "start": str,
                "tick": bool, "lifespan": str, "deadline_scale": float}
CHECK_KEYS = {"assert_all_handled": bool}  # checked at teardown


class Fraction(float):
    """A setting from 0 to 1: a share of the tasks."""


# At-least-once on purpose (chaos.py): duplicates, shuffled ties, transient failures.
CHAOS_KEYS = {"duplicates": Fraction, "shuffle": bool, "transient_failures": Fraction}
ALL_KEYS = {**RETRY_KEYS, **RATE_KEYS, **HARNESS_KEYS, **CHECK_KEYS, **CHAOS_KEYS}
# How a test's failed call reaches its teardown checks (skipped then: one failure is enough).
CALL_FAILED = pytest.StashKey[bool]()
CAPTURE = pytest.StashKey[ClientCapture]()
CLIENTS_OUTSIDE = ("allow", "error")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
MARKER_HELP = (
    "cloudtasks(start=None, **settings): the virtual clock's start (aware datetime or ISO 8601) "
    "and queue settings for this test: " + ", ".join(sorted(set(ALL_KEYS) - {"start"}))
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cloudtasks-seed", type=int, default=None, metavar="N",
        help="seed of the cloudtasks chaos settings (duplicates, shuffle, transient_failures); "
        "a failure prints the one to replay it with (default: a new one each run)",
    )
    parser.addini("cloudtasks_app", "ASGI app receiving task deliveries, as 'package.module:app'")
    parser.addini(
        "cloudtasks_config", "suite-wide @pytest.mark.cloudtasks defaults, one key=value a line",
        type="linelist", default=[],
    )
    parser.addini("cloudtasks_clock", f"what freezes app time: one of {BACKENDS}",
                  default=DEFAULT_BACKEND)
    parser.addini(
        "cloudtasks_clients_outside",
        "Google's Cloud Tasks/Scheduler clients used where no cloudtasks_queue or "
        "cloudtasks_scheduler is active: allow (as without the plugin) or error",
        default="allow",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Drawn once, by pytest-xdist's controller too: its workers get it (pytest_configure_node).
    given = getattr(config, "workerinput", {}).get("cloudtasks_seed")
    if given is not None:
        config.option.cloudtasks_seed = given
    elif config.option.cloudtasks_seed is None:
        config.option.cloudtasks_seed = random.SystemRandom().randrange(10**6)
    config.addinivalue_line("markers", MARKER_HELP)
    _install_capture(config)  # if the plugin was registered after the initial conftests


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Capture Google's clients before conftest.py files import the app: a client they build
    at module level must not look for credentials first (see client_capture.py)."""
    _install_capture(early_config)


def _install_capture(config: pytest.Config) -> None:
    if CAPTURE in config.stash:
        return
    outside = config.getini("cloudtasks_clients_outside").strip().lower()
    if outside not in CLIENTS_OUTSIDE:
        raise pytest.UsageError(
            f"cloudtasks_clients_outside = {outside!r}: use 'allow' (clients outside the "
            "fixtures work as without the plugin) or 'error' (they fail naming the test)."
        )
    # Google's clients made anywhere (at import too) follow the running test's engine.
    capture = config.stash[CAPTURE] = ClientCapture(outside)
    capture.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    capture = config.stash.get(CAPTURE, None)
    if capture is not None:
        capture.uninstall()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Which test runs now, for the opt-in error's message."""
    capture = item.config.stash.get(CAPTURE, None)
    if capture is not None:
        capture.current_test = item.nodeid
    try:
        return (yield)
    finally:
        if capture is not None:
            capture.current_test = None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: every worker uses the controller's chaos seed (as pytest-randomly does)."""
    node.workerinput["cloudtasks_seed"] = node.config.option.cloudtasks_seed


def pytest_report_header(config: pytest.Config) -> list[str]:
    app = config.getini("cloudtasks_app") or "(cloudtasks_app fixture)"
    settings = " ".join(config.getini("cloudtasks_config")) or "Cloud Tasks defaults"
    header = [f"cloudtasks: app={app}, queues={settings}, "
              f"clock={config.getini('cloudtasks_clock')}"]
    try:
        chaos = any(value for key, value in _ini_settings(config).items() if key in CHAOS_KEYS)
    except pytest.UsageError:  # reported, with its line, by the first test using the fixtures
        chaos = False
    if chaos:
        seed = config.option.cloudtasks_seed
        header.append(f"cloudtasks chaos seed: {seed} (replay with --cloudtasks-seed={seed})")
    return header


def _ini_settings(config: pytest.Config) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for line in config.getini("cloudtasks_config"):
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or key not in ALL_KEYS:
            raise pytest.UsageError(
                f"cloudtasks_config line {line!r}: expected key=value with a key among "
                f"{', '.join(sorted(ALL_KEYS))}."
            )
        settings[key] = _ini_value(line, key, value.strip())
    return settings


def _ini_value(line: str, key: str, text: str) -> Any:
    """`text` as the type `key` takes; anything else is a usage error, never a silent False."""
    kind = ALL_KEYS[key]
    if kind is bool:
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise pytest.UsageError(
            f"cloudtasks_config line {line!r}: {key} takes true or false (or 1/0, yes/no, "
            f"on/off), not {text!r}."
        )
    try:
        return kind(text)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise pytest.UsageError(
            f"cloudtasks_config line {line!r}: {key} takes {expected}, not {text!r}."
        ) from None


def _check_marker_types(kwargs: dict[str, Any]) -> None:
    """Marker values of the wrong type (`strict="no"` would be true) are usage errors."""
    wrong = []
    for key, value in kwargs.items():
        kind = ALL_KEYS[key]
        if kind is bool and not isinstance(value, bool):
            wrong.append(f"{key}={value!r} (expected True or False)")
        elif kind is Fraction and (isinstance(value, bool) or not isinstance(value, int | float)):
            wrong.append(f"{key}={value!r} (expected a fraction from 0 to 1)")
        elif kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            wrong.append(f"{key}={value!r} (expected an integer)")
        elif kind is float and (isinstance(value, bool) or not isinstance(
                value, int | float | timedelta)):
            wrong.append(f"{key}={value!r} (expected a number of seconds)")
    if wrong:
        raise pytest.UsageError(
            f"@pytest.mark.cloudtasks got {len(wrong)} value(s) of the wrong type: "
            f"{', '.join(wrong)}."
        )


def _start(given: Any) -> datetime:
    value = given
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            value = None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise pytest.UsageError(
            f"@pytest.mark.cloudtasks(start={given!r}): give a timezone-aware datetime or an "
            "ISO 8601 string with an offset, e.g. '2026-03-08T06:30:00+00:00'."
        )
    return value.astimezone(timezone.utc)


def harness_config(request: pytest.FixtureRequest) -> HarnessConfig:
    """Marker keywords over ini defaults, checked."""
    from google.cloud import tasks_v2

    from pytest_cloudtasks.chaos import ChaosConfig
    from pytest_cloudtasks.harness import HarnessConfig

    settings = _ini_settings(request.config)
    marker = request.node.get_closest_marker("cloudtasks")
    if marker is not None:
        if marker.args:
            raise pytest.UsageError("@pytest.mark.cloudtasks takes keyword arguments only.")
        unknown = sorted(set(marker.kwargs) - set(ALL_KEYS))
        if unknown:
            raise pytest.UsageError(
                f"@pytest.mark.cloudtasks got unknown setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(ALL_KEYS))}."
            )
        _check_marker_types(marker.kwargs)
        settings.update(marker.kwargs)
    queue = tasks_v2.Queue()
    for key, kind in RETRY_KEYS.items():
        if key in settings:
            value = settings[key]
            setattr(queue.retry_config, key,
                    timedelta(seconds=value) if kind is float and not isinstance(
                        value, timedelta) else value)
    for key in RATE_KEYS:
        if key in settings:
            setattr(queue.rate_limits, key, settings[key])
    start = settings.get("start")
    return HarnessConfig(
        start=_start(start) if start is not None else None,
        queue_defaults=queue,
        strict=bool(settings.get("strict", False)),
        fail_fast=bool(settings.get("fail_fast", False)),
        max_deliveries=int(settings.get("max_deliveries", 1000)),
        assert_all_handled=bool(settings.get("assert_all_handled", False)),
        clock_backend=request.config.getini("cloudtasks_clock"),
        tick=bool(settings.get("tick", False)),
        lifespan=str(settings.get("lifespan", "auto")),
        deadline_scale=float(settings.get("deadline_scale", 1.0)),
        chaos=ChaosConfig(
            duplicates=settings.get("duplicates", 0.0),
            shuffle=bool(settings.get("shuffle", False)),
            transient_failures=settings.get("transient_failures", 0.0),
            seed=request.config.option.cloudtasks_seed,
            salt=request.node.nodeid,
        ),
    )


@pytest.fixture
def cloudtasks_app(request: pytest.FixtureRequest) -> Any:
    """The ASGI app tasks are delivered to: the ini option `cloudtasks_app`, or override this
    fixture in your conftest.py."""
    path = request.config.getini("cloudtasks_app")
    if not path:
        raise pytest.UsageError(
            "pytest-cloudtasks does not know which app to deliver tasks to. Set "
            "`cloudtasks_app = \"package.module:app\"` in your pytest configuration, or define "
            "a `cloudtasks_app` fixture returning the app in conftest.py."
        )
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attribute or "app")
    except (ImportError, AttributeError) as exc:
        raise pytest.UsageError(
            f"cloudtasks_app = {path!r} could not be loaded ({exc}); expected "
            "'package.module:app'."
        ) from None


@pytest.fixture
def cloudtasks_harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """The engine, clock and deliveries behind `cloudtasks_queue` (one per test)."""
    __tracebackhide__ = True
    backend = request.config.getini("cloudtasks_clock")
    clock = [CLOCK_MODULES[backend]] if backend in CLOCK_MODULES else []
    requested: list[str] = [name for name in ("cloudtasks_queue", "cloudtasks_scheduler")
                            if name in request.fixturenames] or ["cloudtasks_harness"]
    require(["httpx", *clock], f"The {requested[0]} fixture")
    from pytest_cloudtasks.harness import Harness

    try:
        config = harness_config(request)
        harness = Harness(lambda: request.getfixturevalue("cloudtasks_app"), config)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    try:
        yield harness
        if harness.config.assert_all_handled and not request.node.stash.get(CALL_FAILED, False):
            from pytest_cloudtasks.assertions import unhandled

            problem = unhandled(harness)
            if problem is not None:
                pytest.fail(problem, pytrace=False)
    finally:
        harness.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if call.when == "call" and call.excinfo is not None:
        item.stash[CALL_FAILED] = True
    harness = getattr(item, "funcargs", {}).get("cloudtasks_harness")
    if report.failed and harness is not None and harness.chaos.config.on:
        # Any failure (the test's own assert too) says how to replay the injected events.
        report.sections.append(("cloudtasks chaos", harness.chaos.report()))
    return report


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`@pytest.mark.cloudtasks` applies to a test that requests no fixture of ours (as
    time-machine's marker does): its clock and queues are the test's, and what its code
    enqueues is captured. A module or class marker so covers every test under it; decided at
    collection, so tests without the marker pay nothing."""
    if ("cloudtasks_harness" not in metafunc.fixturenames
            and metafunc.definition.get_closest_marker("cloudtasks") is not None):
        metafunc.fixturenames.append("cloudtasks_harness")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A marker on one parameter set (`pytest.param(..., marks=...)`) comes too late to add
    the fixture: without one of ours it would be ignored, so it is a usage error."""
    for item in items:
        if (any(mark.name == "cloudtasks" for mark in item.own_markers)
                and "cloudtasks_harness" not in getattr(item, "fixturenames", ())):
            raise pytest.UsageError(
                f"{item.nodeid} has @pytest.mark.cloudtasks on its parameters but uses neither "
                "cloudtasks_queue nor cloudtasks_scheduler: request one of them, or mark the "
                "whole test."
            )


@pytest.fixture
def cloudtasks_queue(cloudtasks_harness: Harness) -> CloudTasksQueue:
    """Every Cloud Task the app enqueues in this test, with a virtual clock to run them."""
    from pytest_cloudtasks.queue import CloudTasksQueue

    return CloudTasksQueue(cloudtasks_harness)


@pytest.fixture
def cloudtasks_scheduler(cloudtasks_harness: Harness) -> CloudTasksScheduler:
    """Every Cloud Scheduler job the app creates in this test, on the same clock as the
    tasks."""
    from pytest_cloudtasks.scheduler import CloudTasksScheduler

    return CloudTasksScheduler(cloudtasks_harness)
