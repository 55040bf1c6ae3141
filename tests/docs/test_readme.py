"""The README's examples run: its app module and test files, as a user would lay them out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"```python\n# (\S+\.py)[^\n]*\n(.*?)```", re.S)


def readme_files() -> dict[str, str]:
    """The blocks of the testing example (the at-least-once example runs in
    test_readme_chaos.py: its app comes twice, before and after the fix)."""
    return {name: code for name, code in BLOCK.findall(README.read_text())
            if not name.startswith("payments/")}


def test_readme_has_the_app_and_its_tests() -> None:
    assert set(readme_files()) == {"myapp/main.py", "test_dinner.py", "test_breakfast.py"}


def test_readme_testing_examples_pass(pytester: pytest.Pytester) -> None:
    files = readme_files()
    pytester.mkpydir("myapp")
    (pytester.path / "myapp" / "main.py").write_text(files.pop("myapp/main.py"))
    for name, code in files.items():
        (pytester.path / name).write_text(code)
    pytester.makeini(
        "[pytest]\n"
        "cloudtasks_app = myapp.main:app\n"
        "asyncio_default_fixture_loop_scope = function\n"
    )
    pytester.syspathinsert()
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
