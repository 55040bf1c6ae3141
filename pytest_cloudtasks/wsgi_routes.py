"""Routing misses of WSGI apps, asked of their own routers: Flask's `url_map` (methods and
strict slashes included) and Django's URL resolver (paths only: a view decides its methods, so
a Django 405 is an ordinary failed attempt). Other WSGI apps have no router to ask."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pytest_cloudtasks.routing import no_route

__all__ = ["wsgi_miss"]

_NOT_FOLLOWED = "which Cloud Tasks does not follow"


def wsgi_miss(app: Any, status: int, method: str, host: str, path: str) -> str | None:
    """What is wrong with `method path` for the WSGI app behind `app`, or None if a route
    takes it (or nothing can tell)."""
    wsgi = getattr(app, "wsgi", None)  # a WSGIApp serving it
    names = {f"{cls.__module__}.{cls.__qualname__}" for cls in type(wsgi).__mro__}
    if "flask.sansio.app.App" in names:
        return _flask_miss(wsgi, status, method, host, path)
    if "django.core.handlers.wsgi.WSGIHandler" in names and status in (301, 404):
        return _django_miss(status, path)
    return None


def _flask_miss(app: Any, status: int, method: str, host: str, path: str) -> str | None:
    from werkzeug.exceptions import MethodNotAllowed, NotFound
    from werkzeug.routing import RequestRedirect

    try:
        app.url_map.bind(host).match(path, method)
    except RequestRedirect as redirect:
        return (f"is redirected by Flask to {urlsplit(redirect.new_url).path!r} (the route's "
                f"trailing slash): every attempt gets {status}, {_NOT_FOLLOWED}.")
    except MethodNotAllowed as refused:
        allowed = ", ".join(sorted(set(refused.valid_methods or ()) - {"HEAD", "OPTIONS"}))
        return (f"reaches a Flask route whose path matches, which answers only {allowed}: "
                "every attempt gets 405 Method Not Allowed.")
    except NotFound:
        rules = ((",".join(sorted(set(rule.methods or ()) - {"HEAD", "OPTIONS"})), rule.rule)
                 for rule in app.url_map.iter_rules() if rule.endpoint != "static")
        return no_route("404 Not Found", rules, path)
    return None


def _django_miss(status: int, path: str) -> str | None:
    from django.urls import Resolver404, get_resolver

    resolver = get_resolver()
    try:
        resolver.resolve(path)
    except Resolver404:
        pass
    else:
        return None  # the view answered 404 itself, or a middleware redirected: the app's call
    if status == 301:  # CommonMiddleware's APPEND_SLASH, if the slashed path resolves
        slashed = path + "/"
        try:
            resolver.resolve(slashed)
        except Resolver404:
            return None
        return (f"is redirected by Django to {slashed!r} (APPEND_SLASH): every attempt gets "
                f"301, {_NOT_FOLLOWED}.")
    patterns = (("*", "/" + str(pattern.pattern)) for pattern in resolver.url_patterns)
    return no_route("404 Not Found", patterns, path)
