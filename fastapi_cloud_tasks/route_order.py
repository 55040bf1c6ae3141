"""Which route answers a task's path: Starlette tries a router's routes in the order they were
declared and runs the first that matches fully, so `/items/latest` declared before
`/items/{item_id}` answers `item_id="latest"`. A task whose path an earlier route answers
would run the other endpoint on every attempt; `.delay()` refuses it instead.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any
from urllib.parse import unquote

from fastapi.routing import APIRoute, APIRouter
from starlette.routing import BaseRoute, Match, Route

__all__ = ["EarlierRoutes", "route_label"]

# APIRouter.add_api_route builds the route (route_class(...)) and then appends it to
# `self.routes`; FastAPI's app-level decorators and include_router go through it too.
_ADD_API_ROUTE = APIRouter.add_api_route.__code__
# Route classes whose matches() fails whenever their path_regex does not match.
_PLAIN_MATCHES = frozenset({Route.matches, APIRoute.matches})
# The route's __init__ and our constructors sit between add_api_route and us.
_MAX_FRAMES = 12


def _router_building(frame: FrameType | None) -> list[BaseRoute] | None:
    """The `routes` list of the APIRouter whose add_api_route is running up the stack.

    A route object does not know its router, and the route classes are built by FastAPI,
    so the router is found where it calls the route class."""
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return None
        if frame.f_code is _ADD_API_ROUTE:
            router = frame.f_locals.get("self")
            return router.routes if isinstance(router, APIRouter) else None
        frame = frame.f_back
    return None


def route_label(route: BaseRoute) -> str:
    """How a message names any route: `module.function (METHODS /path)`."""
    endpoint = getattr(route, "endpoint", None) or getattr(route, "app", None)
    name = (f"{getattr(endpoint, '__module__', '?')}."
            f"{getattr(endpoint, '__qualname__', type(endpoint).__name__)}")
    methods = "/".join(sorted(getattr(route, "methods", None) or ())) or "any method"
    return f"{name} ({methods} {getattr(route, 'path', '?')})"


class EarlierRoutes:
    """The routes declared before `route` on the router it is being added to.

    Construct it while the router builds the route (from the route class's `__init__`); the
    routes before it are read once the route is on the router, at the first check.
    """

    def __init__(self, route: BaseRoute, routes: list[BaseRoute] | None = None) -> None:
        self._route = route
        self._routes = routes if routes is not None else _router_building(sys._getframe(1))
        self._earlier: Sequence[tuple[re.Pattern[str] | None, BaseRoute]] | None = None

    def _candidates(self, method: str) -> Sequence[tuple[re.Pattern[str] | None, BaseRoute]]:
        if self._earlier is None:
            routes = self._routes or []
            index = next((i for i, r in enumerate(routes) if r is self._route), None)
            if index is None:  # not on its router (yet): nothing known to check
                return ()
            # Only a full match wins over a later route, and a full match needs the method.
            self._earlier = [
                (_prefilter(r), r) for r in routes[:index]
                if getattr(r, "methods", None) is None or method in r.methods  # type: ignore[attr-defined]
            ]
        return self._earlier

    def answering(self, method: str, raw_path: str) -> BaseRoute | None:
        """The earlier route that would answer `method raw_path` (percent-encoded), if any."""
        candidates = self._candidates(method)
        if not candidates:
            return None
        path = unquote(raw_path)  # as a server puts it in the scope
        scope: dict[str, Any] = {"type": "http", "method": method, "path": path,
                                 "root_path": "", "headers": []}
        for regex, other in candidates:
            if regex is not None and regex.match(path) is None:
                continue  # the common case, decided without building a child scope
            try:
                match, _ = other.matches(scope)
            except Exception:  # a route that needs more of the scope (e.g. a Host route)
                continue
            if match is Match.FULL:
                return _inner_route(other, scope)
        return None


def _prefilter(route: BaseRoute) -> re.Pattern[str] | None:
    """The regex a route's path must match for it to match at all, where that is known."""
    if type(route).matches in _PLAIN_MATCHES:
        regex: re.Pattern[str] = route.path_regex  # type: ignore[attr-defined]
        return regex
    return None


def _inner_route(route: BaseRoute, scope: dict[str, Any]) -> BaseRoute:
    """The route that answers inside an included router (FastAPI >= 0.137 keeps the router
    included as one entry; its private `_match` tells which of its routes matched)."""
    try:
        inner = route._match(scope)[2]  # type: ignore[attr-defined]
    except Exception:
        return route
    return inner if isinstance(inner, BaseRoute) else route
