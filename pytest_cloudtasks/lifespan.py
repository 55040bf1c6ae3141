"""Running an app's ASGI lifespan around a test's deliveries, as a server does.

Like uvicorn (`--lifespan auto|on|off`) and Starlette's TestClient: the startup runs before
the first delivery into the app, the shutdown at the test's teardown, and every request's scope
gets a shallow copy of the state the lifespan set up (`request.state.db`). The lifespan runs on
the event loop the app is called on (the helper thread's loop in sync tests, the test's loop in
async ones), as a task beside the deliveries: a pool opened at startup is used on its own loop.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from pytest_cloudtasks.errors import CloudTasksUsageError, PytestCloudTasksError

__all__ = ["MODES", "Lifespan", "LifespanFailed", "Lifespans", "call_on_loop"]

MODES = ("auto", "on", "off")


class LifespanFailed(PytestCloudTasksError, RuntimeError):
    """Raised when an app's lifespan fails: at startup (from the drain that would deliver into
    the app first) or at shutdown (at the test's teardown)."""


class Lifespan:
    """One app's lifespan on the running event loop."""

    def __init__(self, app: Any, mode: str) -> None:
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}  # what the lifespan put in its scope's "state"
        self.supported = True
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = 0
        self._task: asyncio.Task[None] | None = None
        self._exception: BaseException | None = None
        self._failed: str | None = None  # the message of a startup/shutdown.failed event

    async def start(self) -> None:
        """Send `lifespan.startup` and wait for the app's answer."""
        __tracebackhide__ = True
        self.loop, self.thread = asyncio.get_running_loop(), threading.get_ident()
        started = self.loop.create_future()
        stopping = self._stopping = asyncio.Event()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "lifespan.startup"}
            try:
                await stopping.wait()
            except asyncio.CancelledError:
                # An async test's loop is closing (its runner cancels every task left) before
                # the teardown could ask: shut down now, while the loop still runs.
                _uncancel()
            return {"type": "lifespan.shutdown"}

        async def send(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind.endswith(".failed"):
                self._failed = str(message.get("message", ""))
            if kind.startswith("lifespan.startup.") and not started.done():
                started.set_result(kind == "lifespan.startup.complete")

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            except Exception as exc:  # reported by start() or stop(), as a server logs it
                self._exception = exc
            finally:
                if not started.done():  # returned or raised before answering the startup
                    started.set_result(None)

        self._task = self.loop.create_task(run())
        answer = await started
        if answer is True:
            return
        if answer is None and self.mode == "auto" and self._failed is None:
            # uvicorn's `--lifespan auto`: an app that raises at (or ignores) the lifespan
            # scope does not support the protocol; serve it without one.
            self.supported = False
            return
        if answer is False:  # startup.failed: Starlette re-raises just after; keep its error
            await asyncio.wait({self._task}, timeout=1.0)
        self._task = None  # over: nothing to shut down
        raise LifespanFailed(self._why("startup")) from self._exception

    async def stop(self) -> None:
        """Send `lifespan.shutdown` and wait for the app to finish."""
        __tracebackhide__ = True
        if self._task is None or not self.supported:
            return
        if not self._task.done():
            self._stopping.set()
            await self._task
        self.check_shutdown()

    def check_shutdown(self) -> None:
        """Raise if the shutdown (already over) failed."""
        __tracebackhide__ = True
        if self._task is not None and self.supported and (
                self._failed is not None or self._exception is not None):
            raise LifespanFailed(self._why("shutdown")) from self._exception

    def _why(self, phase: str) -> str:
        if self._exception is not None:
            reason = f"{type(self._exception).__name__}: {self._exception}"
        elif self._failed:
            reason = self._failed.strip().splitlines()[-1]
        elif phase == "startup":
            reason = "the app returned without completing the startup"
        else:
            reason = "lifespan.shutdown.failed"
        return (
            f"The lifespan of {app_label(self.app)} failed at {phase}: {reason}. Fix the "
            "app's lifespan, or turn it off for this test with "
            "@pytest.mark.cloudtasks(lifespan=\"off\") (suite-wide: `lifespan = off` in "
            "cloudtasks_config)."
        )


class Lifespans:
    """The lifespans of one test's apps: each started on first delivery, stopped at teardown."""

    def __init__(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"lifespan={mode!r}: use one of {', '.join(map(repr, MODES))} "
                             "(auto: run the app's lifespan if it has one).")
        self.mode = mode
        self._started: dict[int, Lifespan] = {}

    async def state_for(self, app: Any) -> dict[str, Any] | None:
        """The app's lifespan state (started now if this is its first delivery); None when
        the lifespan is off or the app does not support it."""
        __tracebackhide__ = True
        if self.mode == "off":
            return None
        lifespan = self._started.get(id(app))
        if lifespan is None:
            _require_asyncio()
            lifespan = self._started[id(app)] = Lifespan(app, self.mode)
            await lifespan.start()
        elif lifespan.loop is not asyncio.get_running_loop():
            raise CloudTasksUsageError(
                f"{app_label(app)} got deliveries on two event loops: its lifespan runs on the "
                "first one, so one test drains either with the sync calls (advance, "
                "run_until_empty, run_task, run_job) or with the async ones (aadvance, "
                "arun_until_empty), not both."
            )
        return lifespan.state if lifespan.supported else None

    def close(self) -> None:
        """Shut every started lifespan down, on its own loop; raise the first failure."""
        __tracebackhide__ = True
        failure: BaseException | None = None
        for lifespan in reversed(list(self._started.values())):
            try:
                if lifespan.loop is None:
                    continue
                if lifespan.loop.is_closed():  # it shut down as the loop closed
                    lifespan.check_shutdown()
                else:
                    call_on_loop(lifespan.loop, lifespan.thread, lifespan.stop)
            except Exception as exc:
                failure = failure or exc
        self._started.clear()
        if failure is not None:
            raise failure


def call_on_loop(loop: asyncio.AbstractEventLoop, thread: int,
                 func: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run `func()` on `loop` from sync code at teardown: on its thread while it runs (the
    helper thread's loop), or on this thread when it is idle here (an async test's loop after
    the test returned)."""
    if loop.is_running():
        if thread == threading.get_ident():
            raise RuntimeError("cannot wait for the event loop from inside it")
        return asyncio.run_coroutine_threadsafe(func(), loop).result()
    return loop.run_until_complete(func())


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None and sys.version_info >= (3, 11):
        task.uncancel()


def _require_asyncio() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise CloudTasksUsageError(
            "The app's lifespan runs on asyncio, and this test's event loop is not asyncio's: "
            "turn the lifespan off with @pytest.mark.cloudtasks(lifespan=\"off\")."
        ) from None


def app_label(app: Any) -> str:
    """`module:name` where a loaded module holds `app` (an app module before a test module
    importing it), else its type: for error messages only (it scans every module)."""
    found = [
        (_is_test_module(name), f"{name}:{attribute}")
        for name, module in list(sys.modules.items())
        for attribute, value in list(getattr(module, "__dict__", {}).items())
        if value is app and not attribute.startswith("_")
    ]
    if found:
        return f"the app {min(found, key=lambda item: item[0])[1]}"
    return f"the app {type(app).__module__}.{type(app).__qualname__} object"


def _is_test_module(name: str) -> bool:
    last = name.rpartition(".")[2]
    return last.startswith("test_") or last.endswith("_test") or last == "conftest"

