"""From `.delay()` keyword arguments to the HTTP request that FastAPI will parse back.

Each argument is validated with the endpoint's own FastAPI field (so pydantic's rules apply at the
call site), serialized to its place in the request, and then the whole request is parsed back
with FastAPI's own request parsing. A value that would not arrive unchanged is an error here,
not a task that fails at the worker until its retries run out.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlencode

from fastapi import params
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_body_to_args, request_params_to_args
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.datastructures import Headers, QueryParams
from starlette.requests import cookie_parser
from starlette.routing import BaseRoute

from fastapi_cloud_tasks.exceptions import (
    ArgumentProblem,
    BadMethodException,
    arguments_error,
)
from fastapi_cloud_tasks.route_order import EarlierRoutes, route_label
from fastapi_cloud_tasks.wire_text import (
    Undeliverable,
    as_text,
    cookie_pair,
    header_text,
    listed,
    path_text,
    surrogate_in,
)

__all__ = ["EndpointSignature", "HttpCall", "endpoint_label", "supplied_by"]

_LOCATIONS = ("path", "query", "header", "cookie", "body")
# Methods Cloud Tasks and Cloud Scheduler can send, and those that may carry a body.
_SENDABLE_METHODS = frozenset({"POST", "GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_PATH_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
_JSON = "application/json"


@dataclass(frozen=True)
class HttpCall:
    """The HTTP request a task or job will make, relative to the builder's base URL."""

    method: str
    path: str  # percent-encoded, starts with "/"
    query: str  # percent-encoded, without "?"
    headers: dict[str, str]
    body: bytes | None

    @property
    def path_and_query(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


@dataclass(frozen=True)
class _Param:
    name: str  # the Python keyword the caller uses
    location: str
    key: str  # its name on the wire: query key, header name, cookie name, body key
    field: Any  # fastapi's ModelField (its module moved between FastAPI releases)
    is_model: bool  # a pydantic model spread over several query keys, headers or cookies
    required: bool
    # A plain str/int/float/bool in the path or query under its own name: its text form
    # (str(), "true"/"false", quote/unquote) parses back to the same value by construction.
    exact: bool = False


# Set or reserved by both services whatever the caller sends.
_SERVICE_HEADERS = frozenset({"user-agent", "host", "content-length", "content-type"})


def supplied_by(service_prefix: str) -> Callable[[str], bool]:
    """A check for headers a service sets (or reserves) itself, the ones a caller never
    passes: its own (`x-cloudtasks-`, `x-cloudscheduler`), Google's, and the transport's."""
    prefixes = (service_prefix, "x-google-", "x-appengine-")
    return lambda header: header.startswith(prefixes) or header in _SERVICE_HEADERS


def endpoint_label(route: APIRoute) -> str:
    """How messages name an endpoint: `module.function (POST /path)`."""
    func = route.endpoint
    name = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', route.name)}"
    return f"{name} ({route_method(route)} {route.path})"


def route_method(route: APIRoute) -> str:
    """The one HTTP method a task route answers (Starlette adds HEAD to every GET route)."""
    methods = set(route.methods or ())
    if methods >= {"GET", "HEAD"}:
        methods.discard("HEAD")
    if len(methods) != 1:
        raise BadMethodException(
            f"Route {route.path!r} answers {sorted(route.methods or ())}; a task or job sends "
            "exactly one HTTP method. Declare the endpoint with a single method, "
            "e.g. @router.post(...)."
        )
    (method,) = methods
    if method not in _SENDABLE_METHODS:
        raise BadMethodException(
            f"Route {route.path!r} uses {method}, which Cloud Tasks cannot send; "
            f"use one of {sorted(_SENDABLE_METHODS)}."
        )
    return method


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _walk(sub)


def _wire_key(field: Any, location: str) -> str:
    alias = str(field.alias)
    info = field.field_info
    if location == "header" and alias == field.name and getattr(info, "convert_underscores", True):
        return alias.replace("_", "-")
    return alias


class EndpointSignature:
    """What a route accepts, and how to turn keyword arguments into an `HttpCall` for it.

    `is_supplied(header_name)` tells which headers the service sets itself (for example
    `X-CloudTasks-*`): the caller never passes those, even when a dependency declares them.
    `routes` is the list of routes of the route's router, by default found while the router
    builds the route: a path an earlier route there answers is refused.
    """

    def __init__(
        self,
        route: APIRoute,
        *,
        is_supplied: Callable[[str], bool],
        routes: list[BaseRoute] | None = None,
    ) -> None:
        self.route = route
        self.label = endpoint_label(route)
        self.method = route_method(route)
        self.params: dict[str, _Param] = {}
        fields: dict[str, list[Any]] = {loc: [] for loc in _LOCATIONS}
        seen: set[tuple[str, str]] = set()
        for dependant in _walk(route.dependant):
            for location in _LOCATIONS:
                for field in getattr(dependant, f"{location}_params"):
                    if (location, field.name) in seen:
                        continue
                    seen.add((location, field.name))
                    fields[location].append(field)
                    self._add_param(field, location, is_supplied)
        if fields["body"] and self.method not in _BODY_METHODS:
            raise BadMethodException(
                f"{self.label} has body parameters, but Cloud Tasks sends a body only with "
                "POST, PUT or PATCH. Use one of those methods or move the values to the query."
            )
        self._fields = fields
        # Fields whose text form provably parses back to the same value are not re-parsed.
        self._round_trip_fields = {
            location: [f for f in location_fields
                       if f.name not in self.params or not self.params[f.name].exact]
            for location, location_fields in fields.items()
        }
        # The route's path as (is_parameter, text) pieces, static text already quoted.
        self._template = tuple(
            (True, part) if i % 2 else (False, quote(part, safe="/"))
            for i, part in enumerate(_PATH_PARAM.split(route.path))
        )
        self._embed_body = bool(
            getattr(route, "_embed_body_fields", len(fields["body"]) > 1)
        )
        self._earlier_routes = EarlierRoutes(route, routes)
        self._path_keys = frozenset(
            key for key, convertor in route.param_convertors.items()
            if type(convertor).__name__ == "PathConvertor"
        )

    def _add_param(self, field: Any, location: str, is_supplied: Callable[[str], bool]) -> None:
        if isinstance(field.field_info, params.Form):  # File is a Form too
            raise BadMethodException(
                f"{self.route.endpoint.__qualname__} takes {field.name!r} as form data or a "
                "file upload; tasks carry JSON bodies. Accept a pydantic model or bytes in a "
                "JSON field instead."
            )
        key = _wire_key(field, location)
        if location == "header" and is_supplied(key.lower()):
            return
        annotation = field.field_info.annotation
        is_model = (
            location in ("query", "header", "cookie")
            and isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
        )
        known = self.params.get(field.name)
        if known is not None and known.location != location:
            raise BadMethodException(
                f"{self.label} reads {field.name!r} from both the {known.location} and the "
                f"{location}; a task argument can fill only one. Rename one of them."
            )
        required = bool(field.field_info.is_required())
        if is_model and required:
            # FastAPI builds a parameter model from whatever keys arrive: none may be enough.
            required = bool(field.validate({}, {}, loc=(location,))[1])
        convertor = type(self.route.param_convertors.get(key)).__name__
        exact = (
            (location == "query" or (location == "path" and convertor == "StringConvertor"))
            and annotation in (str, int, float, bool)
            and not field.field_info.metadata
            and key == field.name
        )
        self.params[field.name] = _Param(field.name, location, key, field, is_model, required,
                                         exact)

    # -- keyword arguments -> HttpCall -------------------------------------------------------

    def bind(self, kwargs: Mapping[str, Any]) -> HttpCall:
        """Validate `kwargs` against the endpoint and build the request; raises
        `TaskArgumentsError` listing every problem."""
        problems: list[ArgumentProblem] = []
        typed: dict[str, Any] = {}
        for name, value in kwargs.items():
            param = self.params.get(name)
            if param is None:
                expected = ", ".join(sorted(self.params)) or "no arguments"
                problems.append(
                    ArgumentProblem("unknown", name, "", f"not a parameter; expected {expected}",
                                    value)
                )
                continue
            result, errors = param.field.validate(value, {}, loc=(param.location, name))
            if errors:
                problems.extend(_type_problem(param, error, value) for error in errors)
            else:
                typed[name] = result
        for param in self.params.values():
            if param.required and param.name not in kwargs:
                problems.append(
                    ArgumentProblem("missing", param.name, param.location, "required, not given")
                )
        call = self._serialize(typed, kwargs, problems)
        if not problems:
            problems.extend(self._check_path_is_ours(call, kwargs))
        if problems:
            raise arguments_error(self.label, problems)
        problems = self._check_round_trip(call, typed, kwargs)
        if problems:
            raise arguments_error(self.label, problems)
        return call

    def _serialize(
        self, typed: Mapping[str, Any], kwargs: Mapping[str, Any], problems: list[ArgumentProblem]
    ) -> HttpCall:
        """Build the request; values that cannot travel are added to `problems`."""
        path_values: dict[str, str] = {}
        query: list[tuple[str, str]] = []
        headers: dict[str, str] = {}
        cookies: list[str] = []
        body: dict[str, Any] = {}
        for name, value in typed.items():
            param = self.params[name]
            try:
                wire = _serialized(param, value)
                for key, item in _spread(param, wire):
                    if param.location == "path":
                        path_values[key] = path_text(name, item, key, key in self._path_keys)
                    elif param.location == "query":
                        query.extend((key, as_text(name, v, "query string")) for v in listed(item))
                    elif item is None:
                        continue  # an absent header or cookie: the endpoint's default applies
                    elif param.location == "header":
                        headers[key] = header_text(name, item)
                    elif param.location == "cookie":
                        cookies.append(cookie_pair(name, key, item))
                    else:
                        body[key] = item
            except Undeliverable as exc:
                problems.append(
                    ArgumentProblem(
                        "undeliverable", name, param.location, exc.args[1], kwargs[name]
                    )
                )
        if cookies:
            headers["Cookie"] = "; ".join(cookies)
        payload = self._body_payload(body, kwargs, problems)
        if payload is not None:
            headers["Content-Type"] = _JSON
        path = "".join(
            path_values.get(part, "") if is_param else part for is_param, part in self._template
        )
        return HttpCall(self.method, path, urlencode(query, quote_via=quote), headers, payload)

    def _body_payload(
        self, body: dict[str, Any], kwargs: Mapping[str, Any], problems: list[ArgumentProblem]
    ) -> bytes | None:
        if not body:
            return b"{}" if self._embed_body else None
        content = body if self._embed_body else next(iter(body.values()))
        try:
            text = json.dumps(content, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except ValueError as exc:
            problems.extend(
                ArgumentProblem("undeliverable", name, "body", f"cannot be sent as JSON: {exc}",
                                kwargs.get(name))
                for name, p in self.params.items() if p.location == "body" and p.key in body
            )
            return None
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate somewhere: name the values holding one
            for name, p in self.params.items():
                if p.location == "body" and p.key in body:
                    bad = surrogate_in(json.dumps(body[p.key], ensure_ascii=False))
                    if bad is not None:
                        problems.append(ArgumentProblem("undeliverable", name, "body", bad,
                                                        kwargs.get(name)))
            return None

    def _check_path_is_ours(
        self, call: HttpCall, kwargs: Mapping[str, Any]
    ) -> list[ArgumentProblem]:
        """A problem if a route declared earlier on the router would answer `call`."""
        other = self._earlier_routes.answering(self.method, call.path)
        if other is None:
            return []
        names = [n for n, p in self.params.items() if p.location == "path" and n in kwargs]
        return [ArgumentProblem(
            "undeliverable", ", ".join(names) or "(path)", "path",
            f"{self.method} {call.path} is answered by {route_label(other)}, declared before "
            "this route on its router (Starlette runs the first route that matches); pass "
            "another value, or declare this route before that one",
            kwargs[names[0]] if names else None,
        )]

    def parse(
        self, call: HttpCall, fields: Mapping[str, list[Any]] | None = None
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Parse `call` the way FastAPI will: the endpoint's values and FastAPI's errors
        (for `fields` by location, default all)."""
        fields = self._fields if fields is None else fields
        match = self.route.path_regex.match(unquote(call.path))
        if match is None:
            return {}, [{"loc": ("path",), "msg": f"{call.path!r} does not match the route "
                         f"{self.route.path!r}", "type": "path"}]
        parsed: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for location in ("path", "query", "header", "cookie"):
            if fields[location]:
                source = _SOURCES[location](self.route, match, call)
                values, errs = request_params_to_args(fields[location], source)
                parsed.update(values)
                errors.extend(errs)
        if fields["body"]:
            received = json.loads(call.body) if call.body else None
            values, errs = _run_sync(
                request_body_to_args(fields["body"], received, self._embed_body)
            )
            parsed.update(values)
            errors.extend(errs)
        return {name: parsed[name] for name in self.params if name in parsed}, errors

    def _check_round_trip(
        self, call: HttpCall, typed: Mapping[str, Any], kwargs: Mapping[str, Any]
    ) -> list[ArgumentProblem]:
        """Parse `call` back the way FastAPI will and compare with what the caller gave."""
        parsed, errors = self.parse(call, self._round_trip_fields)
        problems = []
        for name, value in typed.items():
            param = self.params[name]
            if param.exact:
                continue
            if name not in parsed:
                detail = "; ".join(
                    str(e.get("msg"))
                    for e in errors
                    if tuple(e.get("loc", ()))[:1] == (param.location,)
                )
                message = f"would be rejected by the endpoint: {detail or 'not received'}"
            elif not _same(parsed[name], value):
                message = f"would arrive as {parsed[name]!r}, not {value!r}"
            else:
                continue
            problems.append(ArgumentProblem("undeliverable", name, param.location, message,
                                            kwargs[name]))
        return problems


# Each request part as FastAPI reads it, built only for the parts an endpoint has fields in.
_SOURCES: dict[str, Callable[[APIRoute, Any, HttpCall], Any]] = {
    "path": lambda route, match, call: {
        k: route.param_convertors[k].convert(v) for k, v in match.groupdict().items()
    },
    "query": lambda route, match, call: QueryParams(call.query),
    "header": lambda route, match, call: Headers(
        raw=[(k.lower().encode(), v.encode()) for k, v in call.headers.items()]
    ),
    "cookie": lambda route, match, call: cookie_parser(call.headers.get("Cookie", "")),
}


def _type_problem(param: _Param, error: Mapping[str, Any], value: Any) -> ArgumentProblem:
    inner = ".".join(str(part) for part in tuple(error.get("loc", ()))[2:])
    message = str(error.get("msg", error))
    return ArgumentProblem(
        "type", param.name, param.location, f"{inner}: {message}" if inner else message, value
    )


def _spread(param: _Param, wire: Any) -> Iterator[tuple[str, Any]]:
    if not param.is_model:
        yield param.key, wire
        return
    for key, item in wire.items():
        if item is None:
            continue
        yield (key.replace("_", "-") if param.location == "header" else key), item


def _serialized(param: _Param, value: Any) -> Any:
    """The value as JSON data, the form every part of the request is built from."""
    try:
        return param.field.serialize(value, mode="json")
    except ValueError as exc:  # pydantic's serialization errors, undecodable bytes
        hint = " (bytes travel as UTF-8 text: pass text, or base64-encode binary data)" if (
            isinstance(exc, UnicodeDecodeError) or "utf-8" in str(exc).lower()) else ""
        raise Undeliverable(param.name, f"cannot be serialized for the request: {exc}{hint}"
                             ) from None


def _same(left: Any, right: Any) -> bool:
    try:
        return bool(left == right)
    except Exception:  # values without a usable == cannot be compared: trust the parse
        return True


def _run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (FastAPI's JSON body parsing awaits nothing)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("FastAPI's body parsing suspended; report this to fastapi-cloud-tasks")


def keyword_arguments(
    signature: EndpointSignature, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> Mapping[str, Any]:
    """`kwargs` with positional `args` named after the endpoint's parameters, in order, as a
    call of the endpoint itself would bind them (the typed `.delay()` accepts both)."""
    if not args:
        return kwargs
    names = [
        p.name for p in inspect.signature(signature.route.endpoint).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    problems = [
        ArgumentProblem("unknown", f"#{i + 1}", "",
                        f"positional argument beyond the endpoint's {len(names)} positional "
                        "parameters; pass it by keyword", value)
        for i, value in enumerate(args[len(names):], start=len(names))
    ]
    named = dict(zip(names, args, strict=False))
    problems.extend(
        ArgumentProblem("unknown", name, "", "given both by position and by keyword", kwargs[name])
        for name in named if name in kwargs
    )
    if problems:
        raise arguments_error(signature.label, problems)
    return {**named, **kwargs}
