"""What the pytest plugin costs a run that never requests its fixtures.

pytest imports every `pytest11` entry point at start, so whatever `pytest_cloudtasks.plugin`
imports at load is paid by every pytest run in the environment. Two measures, each in fresh
subprocesses (an import is paid once per process):

(a) the plugin module's own import: the cumulative `-X importtime` figure of
    `pytest_cloudtasks.plugin`, imported after pytest (which a pytest run has loaded anyway);
(b) a whole pytest run of one trivial test, with the plugin and with `-p no:cloudtasks`,
    interleaved so drift hits both alike. The child's CPU time is the figure: on a machine
    shared with other work, wall time mostly measures waiting for a core.

    python -m benchmarks.bench_plugin
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORT_RUNS = 7
PYTEST_ROUNDS = 5  # per variant
TARGET_IMPORT_MS = 50.0
TARGET_RUN_OVERHEAD_MS = 50.0
# Imported at load, these would be the cost the plugin must not impose (and need extras).
HEAVY = ("fastapi", "pydantic", "google.cloud.tasks_v2", "grpc", "httpx", "freezegun")
PROBE = (
    "import sys, pytest, pytest_cloudtasks.plugin; "
    f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
)


def plugin_import_us() -> tuple[int, str]:
    """One fresh interpreter: the plugin's cumulative import time (µs) and the heavy modules
    that were loaded with it."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", PROBE],
                          capture_output=True, text=True, check=True, timeout=60)
    for line in done.stderr.splitlines():
        fields = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if len(fields) == 3 and fields[2] == "pytest_cloudtasks.plugin":  # top level only
            return int(fields[1]), done.stdout.strip()
    raise RuntimeError(f"no importtime line for pytest_cloudtasks.plugin in:\n{done.stderr}")


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pytest_run_s(folder: Path, *extra: str) -> tuple[float, float]:
    """Wall and CPU seconds of one pytest subprocess."""
    started, cpu = time.perf_counter(), _children_cpu_s()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra,
         "test_trivial.py"],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )
    elapsed, cpu = time.perf_counter() - started, _children_cpu_s() - cpu
    if done.returncode != 0:
        raise RuntimeError(f"pytest {' '.join(extra)} exited {done.returncode}:\n{done.stdout}"
                           f"{done.stderr}")
    return elapsed, cpu


def main() -> None:
    imports = [plugin_import_us() for _ in range(IMPORT_RUNS)]
    import_ms = statistics.median(us for us, _ in imports) / 1000
    heavy = imports[0][1] or "none"
    print(f"(a) import pytest_cloudtasks.plugin after pytest, {IMPORT_RUNS} fresh interpreters: "
          f"median {import_ms:.1f} ms (each: "
          + " ".join(f"{us / 1000:.1f}" for us, _ in imports) + f"); heavy modules loaded: {heavy}")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "pytest.ini").write_text("[pytest]\n")  # not the project's configuration
        (folder / "test_trivial.py").write_text("def test_nothing():\n    pass\n")
        pytest_run_s(folder)  # warm the file system caches for both variants
        runs: dict[str, list[tuple[float, float]]] = {"with": [], "without": []}
        for round_number in range(PYTEST_ROUNDS):
            order = ["with", "without"] if round_number % 2 == 0 else ["without", "with"]
            for variant in order:
                extra = () if variant == "with" else ("-p", "no:cloudtasks")
                runs[variant].append(pytest_run_s(folder, *extra))
    def median(variant: str, index: int) -> float:
        return statistics.median(run[index] for run in runs[variant])

    print(f"(b) pytest on one trivial test, {PYTEST_ROUNDS} interleaved rounds, median CPU (wall): "
          f"with the plugin {median('with', 1):.2f} s ({median('with', 0):.2f} s), with "
          f"-p no:cloudtasks {median('without', 1):.2f} s ({median('without', 0):.2f} s); load "
          f"average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")

    cpu_ms = (median("with", 1) - median("without", 1)) * 1000
    wall_ms = (median("with", 0) - median("without", 0)) * 1000
    print(f"plugin_import_ms={import_ms:.1f} (target <= {TARGET_IMPORT_MS:.0f})")
    print(f"plugin_run_overhead_cpu_ms={cpu_ms:.0f} (target <= {TARGET_RUN_OVERHEAD_MS:.0f}; "
          "whole pytest run)")
    print(f"plugin_run_overhead_wall_ms={wall_ms:.0f} (cross-check; noisy on a busy machine)")
    print(f"plugin_heavy_modules_at_load={heavy} (target none)")


if __name__ == "__main__":
    main()
