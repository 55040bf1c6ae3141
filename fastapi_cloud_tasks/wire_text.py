"""The text forms of values in a URL path, a query string, a header or a cookie, refusing
(with `Undeliverable`) what could not arrive unchanged: a value FastAPI would parse back
differently, or that cannot be put on the wire at all."""

from __future__ import annotations

import re
import sys
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote

__all__ = ["Undeliverable", "as_text", "cookie_pair", "header_text", "listed", "path_text",
           "surrogate_in"]

_COOKIE_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class Undeliverable(Exception):
    """A value that cannot travel: args are (parameter name, why)."""


def listed(item: Any) -> list[Any]:
    """A query or header value as the list of values sent (None: none)."""
    if item is None:
        return []
    return list(item) if isinstance(item, list) else [item]


def surrogate_in(text: str) -> str | None:
    """Why `text` cannot be sent as UTF-8, or None if it can."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"contains the lone surrogate {exc.object[exc.start:exc.end]!r}, which is not "
                "text and has no UTF-8 form; pass valid text (decode bytes with "
                "errors='replace' or 'backslashreplace')")
    return None


def as_text(name: str, value: Any, where: str) -> str:
    """A JSON scalar as FastAPI reads it back from text (`where` names the place for errors)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        bad = surrogate_in(value)
        if bad is not None:
            raise Undeliverable(name, bad)
        return value
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # over sys.get_int_max_str_digits(): the worker cannot parse it
            digits = int(value.bit_length() * 0.30103) + 1
            raise Undeliverable(
                name,
                f"an int of about {digits:,} digits is over Python's limit of "
                f"{sys.get_int_max_str_digits():,} digits for int-text conversion, so the "
                f"endpoint could not read it from a {where}; send a smaller number, or its "
                "hex(value) text in a str parameter",
            ) from None
    if isinstance(value, float):
        return str(value)
    raise Undeliverable(name, f"a {type(value).__name__} value cannot be sent in a {where}")


def path_text(name: str, value: Any, key: str, is_path: bool) -> str:
    """A path parameter's segment, percent-encoded (`is_path`: a {key:path} parameter)."""
    text = as_text(name, value, "URL path")
    if text == "" or ("/" in text and not is_path):
        raise Undeliverable(
            name,
            f"{text!r} cannot be a path segment (empty, or contains '/'); declare the parameter "
            "as {" + key + ":path} or send the value in the query or body",
        )
    return quote(text, safe="/" if is_path else "")


def header_text(name: str, value: Any) -> str:
    """A header's one value, printable ASCII."""
    items = listed(value)
    if len(items) != 1:
        raise Undeliverable(
            name, "Cloud Tasks sends each header once; pass exactly one value for a header"
        )
    text = as_text(name, items[0], "header")
    if text != text.strip() or not all(" " <= ch <= "~" for ch in text):
        raise Undeliverable(
            name,
            f"header value {text!r} must be printable ASCII without leading or trailing spaces",
        )
    return text


def cookie_pair(name: str, key: str, value: Any) -> str:
    """`key=value` for the Cookie header, quoted as Starlette's cookie parser unquotes."""
    if not _COOKIE_NAME.match(key):
        raise Undeliverable(name, f"{key!r} is not a valid cookie name")
    text = as_text(name, value, "cookie")
    _, quoted = SimpleCookie().value_encode(text)
    # The cookie quoting escapes only characters up to U+00FF; the rest would go raw into a
    # header, which carries ASCII only.
    wide = next((ch for ch in quoted if ch > "~"), None)
    if wide is not None:
        raise Undeliverable(
            name,
            f"cookie value {text!r} contains {wide!r}; a Cookie header carries only "
            "characters up to U+00FF. Send the value in the query or body, or encode it "
            "(e.g. urllib.parse.quote) and decode it in the endpoint",
        )
    return f"{key}={quoted}"
