"""Serving a WSGI app (Flask, Django's `get_wsgi_application()`) to the drain as an ASGI app.

The adapter is a2wsgi's `WSGIMiddleware`: each request runs in a thread of its own pool (as a
threaded WSGI server would), the body is read and the response streamed through the event loop,
and an exception the app lets escape propagates out of the ASGI call. asgiref's `WsgiToAsgi`
(which Django brings) was the alternative: it runs every request on asgiref's one shared
"thread-sensitive" thread, so a handler left running past its deadline would hold up every
later delivery (and any `sync_to_async` in the test), and it refuses the lifespan scope.

Frameworks catch a handler's exception and answer 500 themselves; their `got_request_exception`
signals hand it to us, so a failed task's report shows the app's frames as for an ASGI app.
Everything here is imported only when an app is found to be WSGI.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
from typing import Any

import anyio

__all__ = ["WSGIApp", "adapt", "is_wsgi"]

_EXCEPTION_KEY = "pytest_cloudtasks.wsgi_exception"
# By class (MRO) name, so that nothing is imported to check: WSGI apps whose `__call__` may be
# hidden behind a wrapper of the framework's own.
_WSGI_TYPES = frozenset({"flask.sansio.app.App", "flask.app.Flask",
                         "django.core.handlers.wsgi.WSGIHandler"})


def is_wsgi(app: Any) -> bool:
    """True for a WSGI app: a Flask or Django WSGI handler, or a plain callable taking exactly
    two positional arguments (environ, start_response). An ASGI app is a coroutine function of
    three; anything unclear is served as ASGI, as before (wrap it in `WSGIApp` to say)."""
    if isinstance(app, WSGIApp):
        return False
    if any(f"{cls.__module__}.{cls.__qualname__}" in _WSGI_TYPES for cls in type(app).__mro__):
        return True
    if not callable(app):
        return False
    routine = inspect.isroutine(app) or isinstance(app, functools.partial)
    if inspect.iscoroutinefunction(app if routine else type(app).__call__):
        return False
    try:
        parameters = inspect.signature(app).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: not ours to guess
        return False
    positional = [p for p in parameters
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    return len(required) == 2 or len(positional) == 2


class WSGIApp:
    """An ASGI app serving the WSGI app `wsgi` (through a2wsgi, in a pool of `workers` threads).

    `cloudtasks_app` and `cloudtasks_queue.route()` wrap WSGI apps in it themselves; return
    `WSGIApp(app)` from the fixture when an app is not recognised as WSGI. Its lifespan is
    a2wsgi's: one that completes at once, with nothing in its state."""

    def __init__(self, wsgi: Any, workers: int = 10) -> None:
        from pytest_cloudtasks.extras import require

        require(["a2wsgi"], f"Serving the WSGI app {wsgi!r}")
        from a2wsgi import WSGIMiddleware

        self.wsgi = wsgi  # not `.app`: the routing check walks `.app` looking for routes
        # An unbounded send queue (0): a handler left running past its deadline never blocks
        # on a queue nobody reads any more.
        self._adapter = WSGIMiddleware(wsgi, workers=workers, send_queue_size=0)
        _listen_for_exceptions(wsgi)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._adapter(scope, receive, send)  # type: ignore[arg-type]
            return
        call = asyncio.ensure_future(self._adapter(scope, receive, send))  # type: ignore[arg-type]
        try:
            await asyncio.shield(call)
        except asyncio.CancelledError:
            # Past its deadline: the thread cannot be stopped, so the call (kept in the
            # harness's background until teardown) waits for it, as anyio does for a sync
            # FastAPI endpoint (shielded: the deadline cancels through an anyio scope).
            with anyio.CancelScope(shield=True):
                await asyncio.wait({call})
            raise
        caught = scope.pop(_EXCEPTION_KEY, None)
        if caught is not None:  # the framework answered 500; report what it caught
            raise caught

    def close(self) -> None:
        """Let the pool's idle threads go (a call past its deadline was waited for already)."""
        self._adapter.executor.shutdown(wait=False)

    def __repr__(self) -> str:
        return f"WSGIApp({self.wsgi!r})"


def adapt(app: Any) -> Any:
    """`app` itself if it is ASGI, else a `WSGIApp` serving it."""
    return WSGIApp(app) if is_wsgi(app) else app


def _listen_for_exceptions(app: Any) -> None:
    """Connect (once per process) to the framework's signal for an exception it turned into a
    500, keeping the exception in the request's ASGI scope (`environ["asgi.scope"]`)."""
    names = {cls.__module__.partition(".")[0] for cls in type(app).__mro__}
    if "flask" in names:
        import flask

        flask.got_request_exception.connect(_flask_exception, weak=False)
    if "django" in names:
        from django.core.signals import got_request_exception

        got_request_exception.connect(_django_exception, weak=False,
                                      dispatch_uid="pytest_cloudtasks.wsgi")


def _flask_exception(sender: Any, exception: BaseException, **extra: Any) -> None:
    import flask

    _keep(flask.request.environ, exception)


def _django_exception(sender: Any, request: Any = None, **extra: Any) -> None:
    exception = sys.exc_info()[1]  # Django sends the signal inside its `except` block
    if request is not None and exception is not None:
        _keep(request.META, exception)


def _keep(environ: dict[str, Any], exception: BaseException) -> None:
    scope = environ.get("asgi.scope")
    if isinstance(scope, dict):
        scope.setdefault(_EXCEPTION_KEY, exception)
