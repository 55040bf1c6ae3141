"""Routing misses: a task whose method and URL reach no route of the app is a configuration
mistake (most often a prefix given to `include_router` but missing from the builder's
`base_url`), reported at its first attempt instead of as a hundred retried 404s.

Only answers a routing miss could have produced are checked (404, 405, and the trailing-slash
redirects), so tasks the app serves cost nothing; an endpoint that matched and answered 404
itself is an ordinary failed attempt. Routes are matched with Starlette's own
`route.matches(scope)`, mounts and hosts included; a WSGI app's with Flask's url_map or Django's
URL resolver (wsgi_routes.py); any other app's 404 is an ordinary failed attempt.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import unquote

from starlette.routing import BaseRoute, Host, Match, Mount

from fastapi_cloud_tasks.engine.http_target import split_url
from pytest_cloudtasks.errors import TaskRoutingError

__all__ = ["RouteCheck"]

# 301 and 308: the trailing-slash redirects of Django (APPEND_SLASH) and Flask (strict_slashes).
ROUTING_STATUSES = frozenset({301, 307, 308, 404, 405})
_NEAREST = 3
_MAX_WRAPPERS = 16  # middleware keeps the app it wraps in `.app`


class RouteCheck:
    """Checks an attempt's answer for a routing miss, once per (app, method, host, path)."""

    def __init__(self) -> None:
        self._known: dict[tuple[int, int, str, str, str], str | None] = {}

    def check(self, app: Any, attempt: Any) -> None:
        """Raise `TaskRoutingError` if `attempt` was answered by the app's router, not by a
        route."""
        __tracebackhide__ = True
        if attempt.status_code not in ROUTING_STATUSES:
            return
        method = attempt.delivered.method
        target = split_url(attempt.delivered.url)
        key = (id(app), attempt.status_code, method, target.host, target.path)
        if key not in self._known:
            self._known[key] = _miss(app, attempt.status_code, method, target.host,
                                     unquote(target.path))
        problem = self._known[key]
        if problem is not None:
            raise TaskRoutingError(
                f"{method} {attempt.delivered.url} ({attempt.task.describe()}) {problem} "
                "The task URL is the builder's base_url + the route's path on its APIRouter: "
                "a prefix given to include_router(prefix=...) or app.mount() belongs in "
                "base_url. A task meant for another app needs cloudtasks_queue.route(base_url, "
                "app).",
                attempt,
            )


def _routes_of(app: Any) -> Sequence[BaseRoute] | None:
    """The app's routes (through middleware wrappers); None for an app without a router."""
    for _ in range(_MAX_WRAPPERS):
        routes = getattr(app, "routes", None)
        if isinstance(routes, list):
            return routes
        app = getattr(app, "app", None)
        if app is None:
            break
    return None


def _miss(app: Any, status: int, method: str, host: str, path: str) -> str | None:
    """What is wrong with `method path` for `app`, or None if a route takes it."""
    routes = _routes_of(app)
    if routes is None:  # not a Starlette app: a WSGI app's own router, or nothing to check
        from pytest_cloudtasks.wsgi_routes import wsgi_miss

        return wsgi_miss(app, status, method, host, path)
    scope = {"type": "http", "method": method, "path": path, "root_path": "",
             "headers": [(b"host", host.encode("latin-1", "replace"))], "query_string": b""}
    found, partial = _resolve(routes, scope)
    if found:
        return None
    if partial is not None:
        allowed = ", ".join(sorted(_methods(partial)))
        return (f"reaches the route {partial.path!r} (its path matches), which answers only "
                f"{allowed}: every attempt gets 405 Method Not Allowed.")
    answer = ("307, Starlette's redirect to the path with or without its trailing slash, "
              "which Cloud Tasks does not follow" if status == 307 else "404 Not Found")
    return no_route(answer, _paths(routes), path)


def no_route(answer: str, candidates: Iterable[tuple[str, str]], path: str) -> str:
    """The sentence for a path no route takes, with the (methods, path) nearest to it."""
    listing = "".join(f"\n    {m} {p}" for m, p in _nearest(candidates, path))
    return (f"matches no route of the app: every attempt gets {answer}. Nearest routes:"
            f"{listing or ' (the app has none)'}\n")


def _resolve(routes: Sequence[BaseRoute], scope: dict[str, Any]) -> tuple[bool, Any]:
    """(a route takes the request, the first route whose path matched but not its method),
    deciding as Starlette's Router does: the first full match wins."""
    partial = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            inner = getattr(route, "routes", None) if isinstance(route, Mount | Host) else None
            if inner:  # a router inside decides
                return _resolve(inner, {**scope, **child})
            return True, None
        if match is Match.PARTIAL and partial is None:
            partial = route
    return False, partial


def _methods(route: Any) -> set[str]:
    methods = set(getattr(route, "methods", None) or ())
    return methods - {"HEAD"} if methods > {"HEAD"} else methods


def _paths(routes: Sequence[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):  # FastAPI >= 0.137 keeps an included router as one entry
            for context in contexts():
                if context.methods and context.path:
                    yield ",".join(sorted(_methods(context))), prefix + context.path
                elif context.starlette_route is not None:
                    yield from _paths([context.starlette_route], prefix)
        elif isinstance(route, Mount):
            inner = route.routes
            if inner:
                yield from _paths(inner, prefix + route.path)
            else:
                yield "*", f"{prefix}{route.path}/..."
        elif isinstance(route, Host):
            yield from _paths(route.routes, prefix)
        elif _methods(route):
            yield ",".join(sorted(_methods(route))), prefix + str(getattr(route, "path", ""))


def _nearest(routes: Iterable[tuple[str, str]], path: str) -> list[tuple[str, str]]:
    candidates = list(dict.fromkeys(routes))
    return sorted(
        candidates,
        key=lambda c: -difflib.SequenceMatcher(None, path, c[1], autojunk=False).ratio(),
    )[:_NEAREST]
