"""A delivery as it goes on the wire: the URL split into what the request line and Host say,
and the header lines. One rule for the emulator's HTTP client and the pytest harness's
in-process requests, so an app sees the same request from both."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, urlsplit

__all__ = ["BODY_METHODS", "HttpTarget", "split_url", "wire_headers"]

BODY_METHODS = ("POST", "PUT", "PATCH")
# Set per connection and per message by whoever writes the request, never by the sender.
NOT_FORWARDED = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive",
    "proxy-connection", "te", "trailer", "upgrade",
})

_URL_SAFE = "!#$%&'()*+,-./:;=?@[]_~"  # kept as written: reserved characters and escapes


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
    dropped. Raises ValueError for a URL that is not http(s) with a host, or a bad port."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"cannot send to {url!r}: not an http(s) URL with a host")
    path, query = parts.path or "/", parts.query
    if not _sendable(path):
        path = quote(path, safe=_URL_SAFE)
    if not _sendable(query):
        query = quote(query, safe=_URL_SAFE)
    return HttpTarget(parts.scheme, parts.hostname, parts.port,
                      parts.netloc.rpartition("@")[2], path, query)


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
    fields = [(b"Host", host)]
    fields += [(name.encode("ascii"), value.encode("ascii")) for name, value in headers.items()
               if name.lower() not in NOT_FORWARDED]
    if body or method in BODY_METHODS:
        fields.append((b"Content-Length", str(len(body)).encode()))
    return fields
