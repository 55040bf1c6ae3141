"""The emulator without its `[emulator]` extra: one sentence with the install line, no
traceback (h11 and hpack are made unimportable in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from emulator_support import ROOT

BLOCK = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None\n"


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize(("blocked", "needs"), [
    (["h11", "hpack"], "needs h11 and hpack, which are not installed"),
    (["hpack"], "needs hpack, which is not installed"),
])
def test_the_command_names_the_missing_packages_and_the_extra(
    blocked: list[str], needs: str
) -> None:
    done = python(BLOCK.format(names=blocked) + (
        "import runpy\nsys.argv = ['emulator', '--port', '0']\n"
        "runpy.run_module('fastapi_cloud_tasks.emulator', run_name='__main__')\n"))

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"python -m fastapi_cloud_tasks.emulator: The fastapi-cloud-tasks emulator {needs}: "
        'run `pip install "fastapi-cloud-tasks[emulator]"`.\n')


def test_importing_the_emulator_class_names_the_extra() -> None:
    done = python(BLOCK.format(names=["h11"])
                  + "from fastapi_cloud_tasks.emulator import Emulator\n")

    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "ModuleNotFoundError: The fastapi-cloud-tasks emulator needs h11, which is not "
        'installed: run `pip install "fastapi-cloud-tasks[emulator]"`.')


def test_the_package_and_its_plain_modules_import_without_the_extra() -> None:
    done = python(BLOCK.format(names=["h11", "hpack"]) + (
        "import fastapi_cloud_tasks, fastapi_cloud_tasks.emulator\n"
        "import fastapi_cloud_tasks.emulator.__main__\n"))

    assert done.returncode == 0, done.stderr
