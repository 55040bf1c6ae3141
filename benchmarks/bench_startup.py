"""How long the emulator takes to answer its first call, against the floor any Python emulator
has: importing Google's Cloud Tasks and Cloud Scheduler clients and grpc.

Each round, interleaved so drift hits both alike, in fresh subprocesses:
(a) `python -c "from google.cloud import tasks_v2, scheduler_v1; import grpc"`, wall time;
(b) `python -m fastapi_cloud_tasks.emulator --port 0`, from spawn until a ListQueues call from
    this process (its client already warm) is answered.

    python -m benchmarks.bench_startup
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from google.cloud import tasks_v2

from fastapi_cloud_tasks import emulator_client

ROUNDS = 7
TARGET_RATIO = 1.6
IMPORTS = "from google.cloud import tasks_v2, scheduler_v1; import grpc"


def import_s() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORTS], check=True, timeout=60)
    return time.perf_counter() - started


def first_answer_s() -> float:
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "fastapi_cloud_tasks.emulator", "--port", "0", "-q"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().split()  # READY HOST:PORT http=N
        if not ready or ready[0] != "READY":
            raise RuntimeError(f"the emulator did not start: {ready!r}")
        client = emulator_client(ready[1])
        client.list_queues(parent="projects/p/locations/l", timeout=30)
        elapsed = time.perf_counter() - started
        client.transport.close()
        return elapsed
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    # Warm this process's client code and the OS caches before measuring.
    tasks_v2.ListQueuesRequest(parent="projects/p/locations/l")
    first_answer_s()
    imports, answers = [], []
    for _ in range(ROUNDS):
        imports.append(import_s())
        answers.append(first_answer_s())
    floor, start = statistics.median(imports), statistics.median(answers)
    print(f"import_clients_and_grpc_s={floor:.3f} (median of {ROUNDS})")
    print(f"emulator_first_answer_s={start:.3f} (median of {ROUNDS})")
    print(f"startup_ratio={start / floor:.2f} (target <= {TARGET_RATIO})")


if __name__ == "__main__":
    main()
