"""Google's own clients, wherever they are made, talk to the test's engine while a test uses
`cloudtasks_queue` or `cloudtasks_scheduler`.

Code on Cloud Tasks often builds `tasks_v2.CloudTasksClient()` at import time, at module level.
That runs before any fixture, and on a machine without Google credentials Google's constructor
raises `DefaultCredentialsError` (every transport: gRPC, gRPC asyncio and REST look for
credentials when the client is built, not at the first call). So the capture has two parts:

- From pytest's start (`pytest_load_initial_conftests`, before conftest.py files import the
  app), the constructors of `CloudTasksClient` and `CloudSchedulerClient` are wrapped: one
  built at import or collection, or while a harness is active, whose credentials cannot be
  found is built with anonymous credentials instead and keeps the error, raised at its first
  use outside a test (where it would have been raised without the plugin, one step later).
  In a test without our fixtures the constructor raises, as without the plugin. The asyncio
  clients build one of these inside, so they are covered too. The wrap is installed when
  Google's client module is imported (an import hook; pytest's start imports nothing of
  Google's), or at once if it already was.
- The clients reach their transport through the `_transport` attribute on every RPC
  (`self._transport._wrapped_methods[self._transport.create_task]`, the asyncio clients via
  `self._client._transport`). A property on the class answers that read: while a test's
  harness is active, with the engine's in-memory transport (the asyncio one for an asyncio
  client); otherwise with the client's own. So a client made anywhere — at import, in the
  test, in a request handler, on any thread — follows the test that is running, whatever
  transport or `client_options` it was given, and nothing is redirected once the test ends.

Patching the transport read rather than replacing clients keeps everything else Google's:
request coercion from dicts and flattened arguments, `retry=` and `timeout=`, pagers and
`google.api_core.exceptions`. Only the standard library is imported here: the plugin loads
this module at every pytest start.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["ClientCapture", "capture_clients", "installed"]

# Module -> (client class, the ClientOverride fields of its sync and asyncio in-memory clients).
_TARGETS = {
    "google.cloud.tasks_v2.services.cloud_tasks.client":
        ("CloudTasksClient", "tasks", "tasks_async"),
    "google.cloud.scheduler_v1.services.cloud_scheduler.client":
        ("CloudSchedulerClient", "scheduler", "scheduler_async"),
}
_DEFERRED = "_cloudtasks_deferred_error"
_ASYNC = "_cloudtasks_asyncio"
_BUILDING = "_cloudtasks_building"

# The overrides (fastapi_cloud_tasks.clients.ClientOverride) of the harnesses alive now; a
# process-wide stack, as the app may call from a worker thread that does not see the test's
# context. The innermost wins.
_active: list[Any] = []
_lock = threading.Lock()


@contextmanager
def capture_clients(override: Any) -> Iterator[None]:
    """Every patched Google client talks to `override`'s in-memory clients inside the block."""
    with _lock:
        _active.append(override)
    try:
        yield
    finally:
        with _lock:
            _active.remove(override)


class ClientCapture:
    """One pytest session's capture, and its policy for clients used where no harness is
    active: `outside="allow"` (their own transport, as without the plugin) or `"error"`.

    Sessions nest (pytester runs pytest inside pytest): the classes are patched once, while
    any session is installed, and the innermost session's policy applies."""

    def __init__(self, outside: str = "allow") -> None:
        self.outside = outside
        self.current_test: str | None = None  # the node id of the test running now

    def install(self) -> None:
        if self in _sessions:
            return
        _sessions.append(self)
        if len(_sessions) > 1:
            return
        for module_name in _TARGETS:
            module = sys.modules.get(module_name)
            if module is not None:
                _patch_module(module)
        if any(name not in sys.modules for name in _TARGETS):
            sys.meta_path.insert(0, _FINDER)

    def uninstall(self) -> None:
        if self not in _sessions:
            return
        _sessions.remove(self)
        if _sessions:
            return
        if _FINDER in sys.meta_path:
            sys.meta_path.remove(_FINDER)
        while _undo:
            _undo.pop()()

    def check_outside(self, class_name: str) -> None:
        """The opt-in error for a client used where no fixture of ours is active."""
        if self.outside != "error":
            return
        from pytest_cloudtasks.errors import ClientOutsideFixtureError

        where = (f"test {self.current_test}" if self.current_test is not None
                 else "code running outside any test (at import or collection)")
        raise ClientOutsideFixtureError(
            f"A {class_name} was used by {where}, which uses neither cloudtasks_queue nor "
            "cloudtasks_scheduler, and cloudtasks_clients_outside = 'error' forbids that "
            "(it would reach Google Cloud). Request one of the fixtures in that test, or set "
            "cloudtasks_clients_outside = 'allow'."
        )


_sessions: list[ClientCapture] = []
_undo: list[Callable[[], None]] = []


def _may_defer() -> bool:
    """Whether a client built now may put off its missing credentials: at import or
    collection (no test running yet), or while a harness is active. In a test without our
    fixtures the constructor raises, as it would without the plugin."""
    return bool(_active) or not _sessions or _sessions[-1].current_test is None


def _patch_module(module: Any) -> None:
    class_name, sync, asyncio = _TARGETS[module.__name__]
    cls = getattr(module, class_name)
    if isinstance(vars(cls).get("_transport"), property):
        return
    from google.auth.credentials import AnonymousCredentials
    from google.auth.exceptions import DefaultCredentialsError

    original_init = cls.__init__

    def __init__(self: Any, **kwargs: Any) -> None:  # Google's are keyword-only
        vars(self)[_BUILDING] = True  # Google's __init__ reads its own transport
        try:
            original_init(self, **kwargs)
        except DefaultCredentialsError as exc:
            if kwargs.get("credentials") is not None or not _may_defer():
                raise  # given credentials, or a test without our fixtures: as without us
            try:
                original_init(self, **{**kwargs, "credentials": AnonymousCredentials()})
            except Exception:  # e.g. a credentials_file that is missing: Google's error
                raise exc from None
            vars(self)[_DEFERRED] = exc
        finally:
            del vars(self)[_BUILDING]
        own = vars(self).get("_transport")
        vars(self)[_ASYNC] = (getattr(own, "kind", "") == "grpc_asyncio"
                              or bool(getattr(own, "_asynchronous", False)))

    def get_transport(self: Any) -> Any:
        own = vars(self).get("_transport")
        if getattr(own, "kind", None) == "in-memory" or _BUILDING in vars(self):
            return own  # the engine's own clients, and clients a test built on them
        try:
            override = _active[-1]
        except IndexError:  # no harness (checked so, as one may end on another thread)
            override = None
        if override is not None:
            client = getattr(override, asyncio if vars(self).get(_ASYNC) else sync)
            if vars(self).get(_ASYNC):
                client = client._client  # the asyncio client's inner sync client
            return vars(client)["_transport"]
        if _sessions:
            _sessions[-1].check_outside(cls.__name__)
        deferred = vars(self).get(_DEFERRED)
        if deferred is not None:
            raise type(deferred)(
                f"{deferred} (pytest_cloudtasks let this {cls.__name__} be built without "
                "credentials; outside a test using cloudtasks_queue or cloudtasks_scheduler "
                "it needs them, as it would without the plugin.)"
            ) from deferred
        if own is None:
            raise AttributeError(f"{cls.__name__} has no transport yet")
        return own

    def set_transport(self: Any, value: Any) -> None:
        vars(self)["_transport"] = value

    __init__.__wrapped__ = original_init  # type: ignore[attr-defined]
    cls.__init__ = __init__
    cls._transport = property(
        get_transport, set_transport,
        doc="The engine's transport while a pytest_cloudtasks test runs, else the own.")

    def undo() -> None:
        cls.__init__ = original_init
        delattr(cls, "_transport")

    _undo.append(undo)


class _PatchOnImport:
    """A meta path finder that lets Google's client modules load as usual, then patches them."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name not in _TARGETS:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


class _PatchingLoader:
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._loader.exec_module(module)
        if _sessions:  # not uninstalled meanwhile
            _patch_module(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


_FINDER = _PatchOnImport()


def installed() -> bool:
    """Whether the Cloud Tasks client class is patched now (tests of the plugin read it)."""
    module = sys.modules.get("google.cloud.tasks_v2.services.cloud_tasks.client")
    return module is not None and isinstance(vars(module.CloudTasksClient).get("_transport"),
                                             property)
