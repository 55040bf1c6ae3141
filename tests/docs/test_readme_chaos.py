"""The README's at-least-once example runs: the handler that charges twice is caught by
`duplicates=1`, with the seed and the injected duplicate in the report, and its idempotent fix
passes under every seed tried."""

from __future__ import annotations

import pytest

from tests.docs.test_readme import BLOCK, README


def _blocks() -> list[tuple[str, str]]:
    return [(name, code) for name, code in BLOCK.findall(README.read_text())
            if name.startswith("payments/")]


def test_the_example_has_an_app_its_test_and_the_fixed_app() -> None:
    assert [name for name, _ in _blocks()] == [
        "payments/app.py", "payments/test_payments.py", "payments/app.py"]


def _lay_out(pytester: pytest.Pytester, app: str) -> None:
    _, test = _blocks()[1]
    pytester.mkpydir("payments")
    (pytester.path / "payments" / "app.py").write_text(app)
    (pytester.path / "payments" / "test_payments.py").write_text(test)
    pytester.makeini("[pytest]\ncloudtasks_app = payments.app:app\nfilterwarnings = error\n"
                     "asyncio_default_fixture_loop_scope = function\n")
    pytester.syspathinsert()


def test_the_handler_that_charges_twice_is_caught(pytester: pytest.Pytester) -> None:
    _lay_out(pytester, _blocks()[0][1])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--cloudtasks-seed=271828")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "E       AssertionError: assert [[]('alice', 50...'alice', 500)] == [[]('alice', 500)]",
        "E         Left contains one more item: ('alice', 500)",
        "*- cloudtasks chaos -*",
        "Chaos (duplicates=1) with seed 271828: replay with --cloudtasks-seed=271828.",
        "Injected: 1",
        "  duplicate of charge(customer='alice', cents=500) (attempt #2) at 2026-*",
    ])


def test_the_idempotent_handler_passes(pytester: pytest.Pytester) -> None:
    _lay_out(pytester, _blocks()[2][1])
    for seed in ("1", "2", "271828"):
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                               f"--cloudtasks-seed={seed}")
        result.assert_outcomes(passed=1)
