"""What the fixtures need beyond the base install, checked when a fixture is requested.

The `pytest11` entry point ships with every install of fastapi-cloud-tasks, so the plugin must
load (and let unrelated tests run) without the `[testing]` extra; a test that requests a fixture
is told what to install instead of failing on a bare import error deep in a drain.
"""

from __future__ import annotations

import importlib
import sys

import pytest

__all__ = ["INSTALL_TESTING", "missing_message", "require"]

INSTALL_TESTING = 'pip install "fastapi-cloud-tasks[testing]"'
# Each optional module: its distribution's name, what it is for, the command that installs it.
_NEEDED = {
    "httpx": ("httpx", "the responses of Attempt.response", INSTALL_TESTING),
    "time_machine": ("time-machine",
                     "the default clock backend, cloudtasks_clock = time-machine",
                     INSTALL_TESTING),
    "freezegun": ("freezegun", "the clock backend cloudtasks_clock = freezegun",
                  INSTALL_TESTING),
    "a2wsgi": ("a2wsgi", "serving a WSGI app (Flask, Django) to the drain", INSTALL_TESTING),
}


def missing_message(module: str, what: str) -> str:
    """The sentence telling a user that `what` needs `module` and how to install it."""
    package, purpose, command = _NEEDED[module]
    return f"{what} needs {package} ({purpose}), which is not installed: run `{command}`."


def require(modules: list[str], what: str) -> None:
    """Import each module, or raise `pytest.UsageError` naming the first missing one."""
    for module in modules:
        if sys.modules.get(module) is not None:  # imported already: skip the import machinery
            continue
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # installed, but broken inside: that traceback helps more
                raise
            raise pytest.UsageError(missing_message(module, what)) from None
