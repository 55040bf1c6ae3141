"""`SameOrigin` on header lists, for the cases no loopback socket can show: an emulator bound
to another address or to every address. Raw requests on 127.0.0.1 are in test_http_server.py,
Google's REST client in test_rest.py."""

from __future__ import annotations

import pytest

from fastapi_cloud_tasks.emulator.same_origin import SameOrigin


def refused(policy: SameOrigin, host: str, origin: str | None = None) -> bool:
    headers = {"host": host}
    if origin is not None:
        headers["origin"] = origin
    return policy.refusal(headers) is not None


@pytest.mark.parametrize(("bound", "host", "answered"), [
    ("192.0.2.10", "192.0.2.10:8124", True),  # the address it is bound to
    ("192.0.2.10", "192.0.2.11:8124", False),
    ("0.0.0.0", "192.0.2.11:8124", True),  # bound to every address: any IP literal
    ("0.0.0.0", "[2001:db8::1]:8124", True),
    ("::", "192.0.2.11", True),
    ("0.0.0.0", "attacker.example:8124", False),  # ...but never a name: rebinding needs one
    ("myhost.lan", "MyHost.lan:8124", True),  # bound by name
    ("::1", "[::1]:8124", True),
    ("127.0.0.1", "localhost.attacker.example", False),
    ("127.0.0.1", "127.0.0.1.nip.io", False),
])
def test_host_names_the_emulator_by_loopback_or_its_bound_address(
    bound: str, host: str, answered: bool
) -> None:
    assert refused(SameOrigin(bound, 8124), host) is not answered


@pytest.mark.parametrize(("origin", "answered"), [
    ("http://192.0.2.10:8124", True),
    ("http://localhost:8124", True),
    ("http://192.0.2.10:8125", False),  # another port: another origin
    ("https://192.0.2.10:8124", False),
    ("http://192.0.2.10", False),  # port 80
    ("http://attacker.example:8124", False),
])
def test_origin_must_be_the_emulators_own(origin: str, answered: bool) -> None:
    assert refused(SameOrigin("192.0.2.10", 8124), "192.0.2.10:8124", origin) is not answered


def test_allow_host_names_are_compared_without_case_or_port() -> None:
    policy = SameOrigin("127.0.0.1", 8124, ["Emulator", "tasks.internal."])

    assert not refused(policy, "emulator:8124", "http://EMULATOR:8124")
    assert not refused(policy, "tasks.internal")
    assert refused(policy, "other:8124")


def test_a_request_without_host_is_answered() -> None:
    """HTTP/1.0 may omit it; every browser sends one."""
    assert SameOrigin("127.0.0.1", 8124).refusal({}) is None
