"""A delivery as it goes on the wire: the URL split into what the request line and Host say,
and the header lines. One rule for the emulator's HTTP client and the pytest harness's
in-process requests, so an app sees the same request from both."""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, urlsplit

__all__ = ["BODY_METHODS", "HttpTarget", "split_url", "unsendable", "wire_headers"]

BODY_METHODS = ("POST", "PUT", "PATCH")
# Set per connection and per message by whoever writes the request, never by the sender.
NOT_FORWARDED = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive",
    "proxy-connection", "te", "trailer", "upgrade",
})
_ASCII = operator.methodcaller("encode", "ascii")  # UnicodeEncodeError past ASCII

_URL_SAFE = "!#$%&'()*+,-./:;=?@[]_~"  # kept as written: reserved characters and escapes
# RFC 9110 §5.1 field-name = token; §5.5 field-value: visible ASCII, spaces and tabs (obs-text
# left out: a delivery encodes header values as ASCII). CR, LF and NUL never.
_HEADER_NAMES = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?: [!#$%&'*+\-.^_`|~0-9A-Za-z]+)*\Z")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*\Z")
_NOT_IN_HOST = frozenset(' "<>\\^`{|}')


@dataclass(frozen=True)
class HttpTarget:
    scheme: str  # "http" or "https"
    host: str  # without brackets for IPv6
    port: int | None  # as written in the URL; None for the scheme's default
    authority: str  # the Host header: host[:port], without user info
    path: str  # percent-encoded, "/" at least
    query: str  # percent-encoded, without "?"

    @property
    def default_port(self) -> int:
        return self.port if self.port is not None else (443 if self.scheme == "https" else 80)


@lru_cache(maxsize=1024)  # once per URL: a queue's tasks mostly go to a few
def split_url(url: str) -> HttpTarget:
    """`url` as it is sent. Characters that cannot go on the wire as written (non-ASCII,
    spaces, controls) are percent-encoded as UTF-8, as HTTP clients do; the fragment is
    dropped. Raises ValueError, a sentence naming the URL, for one that is not http(s) with a
    host a request can name, or has a port outside 1..65535."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError for one that is not a number or out of range
    except ValueError:
        raise ValueError(f"{url!r} is not a valid URL: its host or port cannot be parsed "
                         "(a port is a number in 1..65535).") from None
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"{url!r} is not a valid URL: it needs http:// or https:// and a "
                         "host.")
    if port == 0:
        raise ValueError(f"{url!r} is not a valid URL: port 0 cannot be connected to; use "
                         "1..65535.")
    if not host.isprintable() or not _NOT_IN_HOST.isdisjoint(host):
        raise ValueError(f"{url!r} is not a valid URL: its host {host!r} has characters no "
                         "host name has.")
    authority = parts.netloc.rpartition("@")[2]
    if not authority.isascii():
        try:
            authority.encode("idna")  # what the Host header will carry
        except UnicodeError:
            raise ValueError(f"{url!r} is not a valid URL: its host is not a valid "
                             "internationalized domain name.") from None
    path, query = parts.path or "/", parts.query
    if not _sendable(path):
        path = quote(path, safe=_URL_SAFE)
    if not _sendable(query):
        query = quote(query, safe=_URL_SAFE)
    return HttpTarget(parts.scheme, host, port, authority, path, query)


def unsendable(url: str, headers: Mapping[str, str], url_field: str = "URL") -> str | None:
    """Why no HTTP request could carry this URL and these headers (a sentence naming the bad
    value, the URL called `url_field`), or None. Checked when a task or job is created, so
    what could never be sent is refused at once instead of failing every attempt (the
    library's `.delay()` refuses the same values before calling the API).

    Google's HttpRequest.url: "Cloud Tasks will encode some characters for safety and
    compatibility", so a path or query with spaces or non-ASCII is percent-encoded
    (`split_url`); what no encoding mends (the host, the port, a header line) is refused."""
    try:
        split_url(url)
    except ValueError as exc:
        return f"{url_field} {exc}"
    if not headers:
        return None
    # All names, then all values, in one pass each: a check on the path of every create.
    names = " ".join(headers)  # a space within a name shows in the count
    if names.count(" ") != len(headers) - 1 or not _HEADER_NAMES.match(names):
        name = next(n for n in headers if " " in n or not _HEADER_NAMES.match(n))
        return (f"Header name {name[:100]!r} is not an HTTP token: use letters, digits and "
                "!#$%&'*+-.^_`|~ only, no spaces or colons.")
    values = "".join(headers.values())
    if not (values.isascii() and values.isprintable()) and not _HEADER_VALUE.match(values):
        name, value = next((n, v) for n, v in headers.items() if not _HEADER_VALUE.match(v))
        shown = value if len(value) <= 100 else value[:100] + "..."
        return (f"Header {name!r} has the value {shown!r}, which cannot be sent: use "
                "printable ASCII without line breaks (percent- or base64-encode the rest).")
    return None


def _sendable(text: str) -> bool:
    return text.isascii() and text.isprintable() and " " not in text


def wire_headers(target: HttpTarget, method: str, headers: dict[str, str],
                 body: bytes) -> list[tuple[bytes, bytes]]:
    """The header lines sent: Host, the delivery's headers, and Content-Length for a body (or
    a method that takes one). Values must be ASCII, as httpx requires (UnicodeEncodeError).

    The sender's own framing and connection fields are not passed on: the hop-by-hop fields
    of RFC 9110 §7.6.1 belong to each connection, and a `Transfer-Encoding: chunked` beside
    our Content-Length would let the body be read as a second request."""
    authority = target.authority
    host = authority.encode("ascii") if authority.isascii() else authority.encode("idna")
    if not NOT_FORWARDED.isdisjoint(map(str.lower, headers)):
        headers = {k: v for k, v in headers.items() if k.lower() not in NOT_FORWARDED}
    # Encoded by map() in C: this runs for every attempt.
    names, values = map(_ASCII, headers), map(_ASCII, headers.values())
    fields = [(b"Host", host), *zip(names, values, strict=True)]
    if body or method in BODY_METHODS:
        fields.append((b"Content-Length", str(len(body)).encode()))
    return fields
