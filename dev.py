"""Set-up and run in one command, on a machine with only Python 3.10+.

    python3 dev.py test    the whole suite under tox (both FastAPI versions, ruff, mypy)
    python3 dev.py demo    the example app: tasks and a scheduled job, run and logged

Creates .venv-tox/ with tox in it on first use; anything after the command goes to tox.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TOOLS = ROOT / ".venv-tox"
COMMANDS = {"test": [], "demo": ["-e", "demo", "--"], "bench": ["-e", "bench", "--"]}


def tox_executable() -> Path:
    bindir = TOOLS / ("Scripts" if os.name == "nt" else "bin")
    tox = bindir / "tox"
    if not tox.exists():
        print(f"dev.py: installing tox into {TOOLS}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
        subprocess.run(
            [str(bindir / "python"), "-m", "pip", "install", "--quiet", "tox>=4.20"], check=True
        )
    return tox


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    command = [str(tox_executable()), *COMMANDS[argv[0]], *argv[1:]]
    return subprocess.run(command, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
