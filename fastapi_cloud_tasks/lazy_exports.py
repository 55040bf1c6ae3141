"""A package's public names imported on first use (PEP 562), so importing the package is cheap:
the emulator never loads FastAPI, and pytest's plugin loading never loads Google's clients.

Type checkers see each package's `if TYPE_CHECKING:` imports instead, so a misspelled name
stays an error for them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(
    package: str,
    modules: Mapping[str, str],
    explain_missing: Callable[[ModuleNotFoundError, str], str | None] | None = None,
) -> Callable[[str], Any]:
    """A module `__getattr__` resolving `name` from `package.modules[name]`.

    `explain_missing(exc, name)` turns a missing optional dependency into the sentence that says
    what to install (None: re-raise as is).
    """

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            # Not cached in the package: the module in sys.modules stays the one source
            # (pytester's in-process runs drop and re-import submodules).
            return getattr(importlib.import_module(f"{package}.{module}"), name)
        except ModuleNotFoundError as exc:
            message = explain_missing(exc, name) if explain_missing is not None else None
            if message is None:
                raise
            raise ModuleNotFoundError(message, name=exc.name) from None

    return __getattr__
