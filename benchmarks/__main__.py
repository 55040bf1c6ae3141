"""Run every `benchmarks/bench_*.py` module's `main()` in turn: `python -m benchmarks`.

Benchmarks report; they do not gate: missing a target never changes the exit code. A benchmark
that crashes (for instance because its paths no longer send equal requests, so its comparison
would mean nothing) is reported, the others still run, and the exit code is 1.
Pass module names (e.g. `bench_delay`) to run only those.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path


def discover() -> list[str]:
    """The `bench_*` modules of this package, in name order."""
    here = str(Path(__file__).resolve().parent)
    return sorted(
        info.name for info in pkgutil.iter_modules([here]) if info.name.startswith("bench_")
    )


def run(names: list[str]) -> int:
    """Run each named module's `main()`; the number of benchmarks that crashed."""
    crashed = 0
    for name in names:
        print(f"=== {name} ===", flush=True)
        started = time.perf_counter()
        try:
            importlib.import_module(f"{__package__ or 'benchmarks'}.{name}").main()
        except Exception:
            crashed += 1
            traceback.print_exc()
            print(f"=== {name}: CRASHED ===\n", flush=True)
            continue
        print(f"=== {name}: {time.perf_counter() - started:.1f} s ===\n", flush=True)
    return crashed


if __name__ == "__main__":
    sys.exit(1 if run(sys.argv[1:] or discover()) else 0)
