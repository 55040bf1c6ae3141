"""A local Cloud Tasks and Cloud Scheduler that Google's own clients talk to over gRPC or
REST.

The same engines as the pytest plugin, driven by the real clock and real HTTP:
`python -m fastapi_cloud_tasks.emulator --port 8123`. Its protocol helpers (h11, hpack) come
with the `[emulator]` extra, so `Emulator` is imported on first use and a missing extra is a
sentence saying what to install.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from fastapi_cloud_tasks.lazy_exports import lazy_getattr

if TYPE_CHECKING:
    from fastapi_cloud_tasks.emulator.server import Emulator

__all__ = ["Emulator"]

INSTALL_EMULATOR = 'pip install "fastapi-cloud-tasks[emulator]"'
NEEDS = ("h11", "hpack")  # the [emulator] extra: HTTP/1.1 and HPACK for its servers


def missing_extra_message(exc: ModuleNotFoundError) -> str | None:
    """The sentence for an import that failed for want of the `[emulator]` extra, else None."""
    if exc.name not in NEEDS:
        return None
    missing = [name for name in NEEDS if _missing(name)] or [exc.name]
    which = "which is not installed" if len(missing) == 1 else "which are not installed"
    return (f"The fastapi-cloud-tasks emulator needs {' and '.join(missing)}, {which}: run "
            f"`{INSTALL_EMULATOR}`.")


def _missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except ValueError:  # blocked: sys.modules[name] is None
        return True


if not TYPE_CHECKING:
    __getattr__ = lazy_getattr(
        __name__, {"Emulator": "server"}, lambda exc, name: missing_extra_message(exc)
    )
