"""Which HTTP requests the emulator's REST port answers: its own clients', never a web page's.

Anything a browser can reach it must assume hostile. A page on any site can POST a "simple"
request (`Content-Type: text/plain`, no preflight) to `http://localhost:8124/...`: the emulator
would create the task, then send the page's method, URL, headers and body from the developer's
machine and mint ID tokens for any audience. Through DNS rebinding (a name of the attacker's
that resolves to 127.0.0.1) the page can also read the answers. Two checks stop both, as
Jupyter's and webpack-dev-server's do:

- `Host` must name the emulator: `localhost`, `*.localhost`, a loopback address, the address
  it is bound to (any IP literal when bound to every address, `0.0.0.0` or `::`: rebinding
  needs a DNS name), or a name given with `--allow-host`.
- `Origin`, when present, must be the emulator's own origin: `http://`, an accepted host, its
  own port. Without `Origin`, `Sec-Fetch-Site: cross-site` or `same-site` (a page of another
  origin, in a browser that says so) is refused as well.

Google's REST transport (`requests`), gcloud and curl send no `Origin` and address the
emulator by the name they were given, so they pass. The token certificates are under the
same rule: they are public keys, but nothing that verifies tokens runs in a browser, and one
rule for the whole port leaves no exception to audit.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

__all__ = ["SameOrigin"]

_WILDCARDS = ("", "0.0.0.0", "::")
_CROSS = ("cross-site", "same-site")
_CACHE_SIZE = 64  # Host values seen and accepted; a client sends the same one each time


class SameOrigin:
    """Refusal messages for requests from outside; `None` for those the emulator answers."""

    def __init__(self, bound_host: str, port: int, allowed_hosts: Iterable[str] = ()) -> None:
        self.port = port
        self._bound = _name(bound_host)
        self._any_ip = bound_host in _WILDCARDS
        self._allowed = {_name(host) for host in allowed_hosts}
        self._accepted: set[str] = set()

    def refusal(self, headers: Mapping[str, str]) -> str | None:
        """Why a request with these headers (lower-case names) is refused."""
        host = headers.get("host")
        if host is not None and host not in self._accepted:
            if not self._host_allowed(_name(host)):
                return (f"The emulator refuses requests with Host {host!r}: it answers only "
                        "the names it is reached by on this machine (localhost, a loopback "
                        "address, the address it is bound to), so that a web page cannot read "
                        "its answers through DNS rebinding. If that name is yours, start the "
                        f"emulator with --allow-host {_name(host)}.")
            if len(self._accepted) < _CACHE_SIZE:
                self._accepted.add(host)
        origin = headers.get("origin")
        if origin is not None:
            if not self._own_origin(origin):
                return (f"The emulator refuses requests with Origin {origin!r}: only its own "
                        f"origin (http://HOST:{self.port}, HOST accepted as a Host) may call "
                        "it, so that a web page cannot create tasks from your machine. Call it "
                        "from a program or curl, which send no Origin; a name of yours for the "
                        "emulator needs --allow-host NAME.")
        else:
            fetch_site = headers.get("sec-fetch-site")
            if fetch_site is not None and fetch_site.lower() in _CROSS:
                return (f"The emulator refuses requests with Sec-Fetch-Site {fetch_site!r}: a "
                        "web page of another origin sent it. Call it from a program or curl; "
                        "a name of yours for the emulator needs --allow-host NAME.")
        return None

    def _host_allowed(self, name: str) -> bool:
        if name == "localhost" or name.endswith(".localhost") or name in self._allowed:
            return True
        if name == self._bound and name:
            return True
        try:
            address = ipaddress.ip_address(name[1:-1] if name.startswith("[") else name)
        except ValueError:
            return False
        return address.is_loopback or self._any_ip

    def _own_origin(self, origin: str) -> bool:
        scheme, sep, authority = origin.partition("://")
        if scheme.lower() != "http" or not sep or not authority:
            return False  # "null" (a sandboxed frame, a file), https, garbage
        name, port = _split(authority)
        return (port or "80") == str(self.port) and self._host_allowed(name)


def _name(host: str) -> str:
    return _split(host)[0]


def _split(host: str) -> tuple[str, str]:
    """The host name of a `Host` value or an authority (lower case, one trailing dot dropped,
    IPv6 literals in brackets: `[::1]`) and its port ("" when it names none)."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return host, ""
        return host[:end + 1], host[end + 1:].removeprefix(":")
    if host.count(":") > 1:  # a bare IPv6 address, as --host or --allow-host may give one
        return f"[{host}]", ""
    name, _, port = host.partition(":")
    return name[:-1] if name.endswith(".") else name, port
