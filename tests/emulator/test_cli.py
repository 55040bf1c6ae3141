"""The emulator's command line: a mistake is one line on stderr and an exit status, never a
traceback."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

PROG = "python -m fastapi_cloud_tasks.emulator"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fastapi_cloud_tasks.emulator", *args],
                          capture_output=True, text=True, timeout=60)


def assert_one_line(result: subprocess.CompletedProcess[str], status: int, text: str) -> None:
    assert result.returncode == status
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{PROG}: ")
    assert text in line


@pytest.mark.parametrize(("setting", "text"), [
    ("rate=abc", "queue setting 'rate=abc': 'abc' is not a number"),
    ("max_attempts=1.5", "queue setting 'max_attempts=1.5': '1.5' is not a whole number"),
    ("speed=3", "queue setting 'speed=3': use key=value with key one of rate,"),
])
def test_a_bad_queue_setting_is_one_line_and_exit_2(setting: str, text: str) -> None:
    result = run("--port", "0", "--queue", f"projects/p/locations/l/queues/q,{setting}")
    assert_one_line(result, 2, text)


def test_an_invalid_queue_name_is_one_line_and_exit_2() -> None:
    name = "projects/p/locations/l/queues/bad_name!"
    result = run("--port", "0", "--queue", name)
    assert_one_line(result, 2, f"--queue: Invalid queue name {name!r}")


@pytest.mark.parametrize("which", ["--port", "--http-port"])
def test_a_busy_port_is_one_line_and_exit_1(which: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = ["--port", str(port)] if which == "--port" else ["--port", "0", which, str(port)]
        result = run(*args)
    assert_one_line(result, 1, "address already in use. Pick free ports with --port and")


def test_the_port_help_states_its_default() -> None:
    assert "gRPC port (default 8123; 0: any free port)" in run("--help").stdout
