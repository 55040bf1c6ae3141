"""What importing each package costs: names load on first use, so the emulator never loads
FastAPI or pydantic, and the package alone loads neither them nor Google's clients."""

from __future__ import annotations

import subprocess
import sys

import pytest

import fastapi_cloud_tasks


def loaded_after(statement: str, modules: list[str]) -> list[str]:
    code = f"import sys\n{statement}\nprint(' '.join(m for m in {modules!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    return result.stdout.split()


def test_the_package_alone_loads_nothing_heavy() -> None:
    heavy = ["fastapi", "pydantic", "google.cloud.tasks_v2", "grpc", "google.auth"]
    assert loaded_after("import fastapi_cloud_tasks", heavy) == []


def test_the_emulator_never_loads_fastapi_or_pydantic() -> None:
    statement = "import fastapi_cloud_tasks.emulator.server, fastapi_cloud_tasks.emulator.__main__"
    assert loaded_after(statement, ["fastapi", "pydantic", "starlette"]) == []


def test_every_public_name_resolves_and_a_wrong_one_is_an_attribute_error() -> None:
    for name in fastapi_cloud_tasks.__all__:
        assert getattr(fastapi_cloud_tasks, name) is not None
    assert set(dir(fastapi_cloud_tasks)) >= set(fastapi_cloud_tasks.__all__)
    with pytest.raises(AttributeError, match="has no attribute 'delay_task'"):
        fastapi_cloud_tasks.delay_task  # type: ignore[attr-defined]  # noqa: B018
