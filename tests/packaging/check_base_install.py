"""Checks an environment holding the wheel without extras, plus pytest (tox -e packaging):

1. pytest loads the plugin and runs a test that does not use it (exit 0);
2. a test requesting `cloudtasks_queue` errors with the UsageError naming the `[testing]` extra;
3. the emulator exits 1 with one line naming the `[emulator]` extra, no traceback.

Every run happens in a temporary folder with its own pytest.ini, so the installed wheel is what
gets imported (not this checkout) and the project's own pytest configuration does not apply.
Exits 0 when every check passes; otherwise prints what differed and exits 1.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

TRIVIAL = "def test_plain():\n    assert 1 + 1 == 2\n"
USES_QUEUE = "def test_queue(cloudtasks_queue):\n    pass\n"
FIXTURE_ERROR = (
    "UsageError: The cloudtasks_queue fixture needs httpx (the responses of Attempt.response), "
    'which is not installed: run `pip install "fastapi-cloud-tasks[testing]"`.'
)
EMULATOR_ERROR = (
    "python -m fastapi_cloud_tasks.emulator: The fastapi-cloud-tasks emulator needs h11 and "
    'hpack, which are not installed: run `pip install "fastapi-cloud-tasks[emulator]"`.'
)


def run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=folder, capture_output=True, text=True,
                          timeout=300, check=False)


def check(folder: Path) -> list[str]:
    problems: list[str] = []
    present = [m for m in ("httpx", "freezegun", "h11", "hpack")
               if importlib.util.find_spec(m) is not None]
    if present:
        return [f"not a base install: {', '.join(present)} importable, so the checks below "
                "would prove nothing."]
    (folder / "pytest.ini").write_text("[pytest]\n")
    (folder / "test_trivial.py").write_text(TRIVIAL)
    (folder / "test_queue.py").write_text(USES_QUEUE)

    where = run(folder, "-c", "import pytest_cloudtasks; print(pytest_cloudtasks.__file__)")
    if "site-packages" not in where.stdout:
        problems.append(f"pytest_cloudtasks is not imported from the installed wheel: "
                        f"{where.stdout}{where.stderr}")

    trivial = run(folder, "-m", "pytest", "-p", "no:cacheprovider", "test_trivial.py")
    if trivial.returncode != 0 or "1 passed" not in trivial.stdout:
        problems.append(f"a test that does not use the plugin: exit {trivial.returncode}\n"
                        f"{trivial.stdout}{trivial.stderr}")
    if "cloudtasks: app=" not in trivial.stdout:  # its report header: the plugin was loaded
        problems.append(f"the plugin's report header is missing:\n{trivial.stdout}")

    queue = run(folder, "-m", "pytest", "-p", "no:cacheprovider", "test_queue.py")
    if queue.returncode != 1 or "1 error" not in queue.stdout or FIXTURE_ERROR not in queue.stdout:
        problems.append(f"a test requesting cloudtasks_queue: exit {queue.returncode}, expected 1 "
                        f"with {FIXTURE_ERROR!r}\n{queue.stdout}{queue.stderr}")

    emulator = run(folder, "-m", "fastapi_cloud_tasks.emulator", "--port", "0")
    if (emulator.returncode != 1 or emulator.stderr.strip() != EMULATOR_ERROR
            or emulator.stdout):
        problems.append(f"the emulator without its extra: exit {emulator.returncode}, expected 1 "
                        f"and only {EMULATOR_ERROR!r} on stderr\n{emulator.stdout}"
                        f"{emulator.stderr}")
    return problems


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        problems = check(Path(tmp))
    for problem in problems:
        print(f"FAILED {problem}\n", file=sys.stderr)
    if not problems:
        print("base install: pytest runs with the plugin loaded, a fixture names [testing], "
              "the emulator names [emulator]")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
