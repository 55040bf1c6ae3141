"""Type-check the README's Python code as a user's project, in DIR:

    python tests/typing/readme_code.py DIR

A block starting with `# path.py` is that file; any other block is checked as a module of its
own after `from myapp.main import *`: it may use what the app defines, and imports the rest.
Runs mypy --strict and pyright (standard) there; exits non-zero if either reports anything.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
FILE_HEADER = re.compile(r"# (\S+\.py)\b")


def write_project(readme: Path, out: Path) -> list[Path]:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    written: list[Path] = []
    for number, code in enumerate(BLOCK.findall(readme.read_text()), start=1):
        header = FILE_HEADER.match(code)
        if header and out / header.group(1) not in written:
            path = out / header.group(1)
        elif header:  # a later version of a file shown before: checked as a module of its own
            path = out / f"snippet_{number}.py"
        else:
            path = out / f"snippet_{number}.py"
            code = "from myapp.main import *  # noqa: F403\n" + code
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent != out:
            (path.parent / "__init__.py").touch()
        path.write_text(code)
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    out = Path(argv[0]).resolve()
    files = [str(p.relative_to(out)) for p in write_project(ROOT / "README.md", out)]
    (out / "pyrightconfig.json").write_text(
        '{"typeCheckingMode": "standard", "pythonVersion": "3.10",'
        ' "reportWildcardImportFromLibrary": "none"}'
    )
    commands = [
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         *files],
        [sys.executable, "-m", "pyright", "--pythonpath", sys.executable, *files],
    ]
    failed = 0
    for command in commands:  # against the packages as installed (tox installs the wheel)
        print("$", " ".join(command[2:]), flush=True)
        failed |= subprocess.run(command, cwd=out).returncode
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
