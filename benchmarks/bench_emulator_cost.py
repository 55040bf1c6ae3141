"""The emulator's Python work per CreateTask and per delivery, counted, not timed.

Wall and CPU time on a shared 2-core machine move by 10-30% between runs (see bench_emulator),
more than a change to the hot paths usually costs. This counts what the interpreter executes
instead: bytecodes (`sys.settrace` with opcode events), the same on every run and on any load.
Bytecodes miss work done in C (protobuf, regular expressions, syscalls), so a change that moves
work into C shows here as a gain it may not fully be; confirm a close call with valgrind's
instruction count (`valgrind --tool=callgrind`, the same scenario), as the notes of issue 13 do.

(a) per create: Google's sync `CloudTasksClient` makes CreateTask calls on a paused queue through
    a recording proxy to the emulator; the client's bytes are then replayed into a fresh
    in-process emulator's gRPC connection (no sockets, no event loop turns), the first
    `WARMUP` requests uncounted.
(b) per delivery: an emulator subprocess counts from just before `resume_queue` until a
    uvicorn worker has answered every one of `DELIVERIES` tasks (event loop and HTTP client
    included, as they run per delivery).

    python -m benchmarks.bench_emulator_cost                  # this tree
    python -m benchmarks.bench_emulator_cost --against REF    # and a git commit: ratios
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.bench_emulator import Child

ROOT = Path(__file__).resolve().parent.parent
CREATES = 1_300
WARMUP = 300
DELIVERIES = 1_000
PARENT = "projects/bench/locations/here"

# Run in a child whose working directory is the tree measured: what it imports is that tree's.
_TRACER = r'''
import collections, json, sys
counts = collections.Counter()
def _local(frame, event, arg):
    if event == "opcode":
        counts[frame.f_code] += 1
    return _local
def tracer(frame, event, arg):
    frame.f_trace_opcodes = True
    return _local
def dump(path, per):
    by_name = collections.Counter()
    for code, count in counts.items():
        by_name[f"{code.co_filename.rsplit('/', 1)[-1]}:{code.co_name}"] += count
    json.dump({"total": sum(counts.values()) / per,
               "top": {k: v / per for k, v in by_name.most_common(12)}}, open(path, "w"))
'''

_REPLAY = _TRACER + r'''
import asyncio, pickle
from fastapi_cloud_tasks.emulator.server import Emulator
chunks = pickle.load(open(sys.argv[1], "rb"))
warm, per, out = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
class Transport:  # what the connection writes is dropped
    def write(self, data): pass
    def get_extra_info(self, *args, **kwargs): return ("127.0.0.1", 1)
    def is_closing(self): return False
    def close(self): pass
    def abort(self): pass
async def main():
    emulator = Emulator("127.0.0.1", 0, max_rate=100_000)  # as the CLI below: --max-rate
    connection = emulator._grpc_server._connect()
    connection.connection_made(Transport())
    start = next(i for i, c in enumerate(chunks) if c.get("creates", 0) >= warm)
    for chunk in chunks[:start]:
        connection.data_received(chunk["data"])
    sys.settrace(tracer)
    for chunk in chunks[start:]:
        connection.data_received(chunk["data"])
    sys.settrace(None)
    created = len(emulator.tasks.pending())
    if created != warm + per:  # else the replay measured refusals, not creates
        sys.exit(f"the replay created {created} tasks, not {warm + per}")
    dump(out, per)
asyncio.run(main())
'''

_COUNTING_EMULATOR = _TRACER + r'''
import os, runpy, signal
out, per = os.environ["BENCH_COST_OUT"], int(os.environ["BENCH_COST_PER"])
signal.signal(signal.SIGUSR1, lambda *_: sys.settrace(tracer))
signal.signal(signal.SIGUSR2, lambda *_: (sys.settrace(None), dump(out, per)))
sys.path.insert(0, ".")
sys.argv[0] = "fastapi_cloud_tasks.emulator"
runpy.run_module("fastapi_cloud_tasks.emulator", run_name="__main__", alter_sys=True)
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}


@contextmanager
def _emulator(tree: Path, log_dir: Path, prefix: list[str],
              env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = _free_port()
    ready = log_dir / f"emulator-{port}.stdout"
    with ready.open("wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, *prefix, "--host", "127.0.0.1", "--port", str(port),
             "--http-port", str(_free_port()), "--max-rate", "100000", "-q"],
            cwd=tree, env=env or _env(tree), stdout=stdout, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while b"READY" not in ready.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the emulator did not start:\n{ready.read_text()}")
            time.sleep(0.05)
        yield process, port
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _Recorder:
    """A loopback TCP proxy keeping what the client sends, tagged with the creates answered
    so far (so the replay knows where its warm-up ends)."""

    def __init__(self, upstream: int) -> None:
        self.chunks: list[dict[str, object]] = []
        self.creates = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._upstream = upstream
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        server = socket.create_connection(("127.0.0.1", self._upstream))
        threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()
        self._pipe(client, server, True)

    def _pipe(self, source: socket.socket, sink: socket.socket, keep: bool) -> None:
        while data := source.recv(65536):
            if keep:
                self.chunks.append({"data": data, "creates": self.creates})
            sink.sendall(data)


def _tasks_client(port: int) -> object:
    from fastapi_cloud_tasks import emulator_client
    return emulator_client(f"127.0.0.1:{port}")


def _queue(client: object, name: str) -> str:
    from google.cloud import tasks_v2
    queue = f"{PARENT}/queues/{name}"
    client.create_queue(parent=PARENT, queue=tasks_v2.Queue(  # type: ignore[attr-defined]
        name=queue, rate_limits=tasks_v2.RateLimits(max_dispatches_per_second=100_000,
                                                    max_concurrent_dispatches=1_000)))
    client.pause_queue(name=queue)  # type: ignore[attr-defined]
    return queue


def _create(client: object, queue: str, url: str, count: int, after: object = None) -> None:
    from google.cloud import tasks_v2
    for _ in range(count):
        client.create_task(parent=queue, task=tasks_v2.Task(  # type: ignore[attr-defined]
            http_request=tasks_v2.HttpRequest(
                url=url, http_method=tasks_v2.HttpMethod.POST, body=b'{"order": 7}',
                headers={"Content-Type": "application/json"})), timeout=60)
        if after is not None:
            after.creates += 1  # type: ignore[attr-defined]


def record_creates(log_dir: Path) -> Path:
    """The client's bytes for `CREATES` CreateTask calls, pickled."""
    import pickle
    with _emulator(ROOT, log_dir, ["-m", "fastapi_cloud_tasks.emulator"]) as (_, port):
        recorder = _Recorder(port)
        client = _tasks_client(recorder.port)
        _create(client, _queue(client, "creates"), "http://127.0.0.1:9/hit", CREATES, recorder)
        time.sleep(0.2)  # the last answer's WINDOW_UPDATEs
    path = log_dir / "creates.pickle"
    path.write_bytes(pickle.dumps(recorder.chunks))
    return path


def create_cost(tree: Path, recording: Path, log_dir: Path) -> dict[str, object]:
    out = log_dir / f"create-{tree.name}.json"
    subprocess.run([sys.executable, "-c", _REPLAY, str(recording), str(WARMUP),
                    str(CREATES - WARMUP), str(out)],
                   cwd=tree, env=_env(tree), check=True)
    return dict(json.loads(out.read_text()))


def delivery_cost(tree: Path, log_dir: Path) -> dict[str, object]:
    out = log_dir / f"delivery-{tree.name}.json"
    ready = log_dir / f"worker-{tree.name}.ready"
    worker = Child("worker", [sys.executable, "-m", "benchmarks.bench_emulator", "--worker",
                              str(ready)], log_dir, ready)
    try:
        address = worker.wait_ready()
        env = {**_env(tree), "BENCH_COST_OUT": str(out), "BENCH_COST_PER": str(DELIVERIES)}
        with _emulator(tree, log_dir, ["-c", _COUNTING_EMULATOR], env) as (emulator, port):
            client = _tasks_client(port)
            queue = _queue(client, "deliveries")
            _create(client, queue, f"http://{address}/hit", DELIVERIES)
            urllib.request.urlopen(urllib.request.Request(f"http://{address}/reset",
                                                          method="POST"), timeout=10)
            emulator.send_signal(signal.SIGUSR1)
            time.sleep(0.2)
            client.resume_queue(name=queue)  # type: ignore[attr-defined]
            deadline = time.monotonic() + 120
            while worker_count(address) < DELIVERIES and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # the last responses read and settled
            emulator.send_signal(signal.SIGUSR2)
            deadline = time.monotonic() + 10
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        worker.stop()
    return dict(json.loads(out.read_text()))


def worker_count(address: str) -> int:
    with urllib.request.urlopen(f"http://{address}/count", timeout=10) as reply:
        return int(json.load(reply)["count"])


@contextmanager
def _tree(ref: str | None, log_dir: Path) -> Iterator[Path]:
    if ref is None:
        yield ROOT
        return
    path = log_dir / f"tree-{ref}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), ref],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
                       check=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--against", metavar="REF", help="also measure this git commit")
    args = parser.parse_args(argv if argv is not None else [])
    with tempfile.TemporaryDirectory(prefix="bench-emulator-cost-") as tmp:
        log_dir = Path(tmp)
        recording = record_creates(log_dir)
        rows = [("this tree", create_cost(ROOT, recording, log_dir), delivery_cost(ROOT, log_dir))]
        if args.against:
            with _tree(args.against, log_dir) as other:
                rows.append((args.against, create_cost(other, recording, log_dir),
                             delivery_cost(other, log_dir)))
    for label, create, delivery in rows:
        print(f"[{label}] bytecodes per create: {create['total']:,.0f}; "
              f"per delivery: {delivery['total']:,.0f}")
    if len(rows) == 2:
        (_, create, delivery), (_, old_create, old_delivery) = rows
        print(f"create_bytecodes_ratio = {create['total'] / old_create['total']:.3f}  "  # type: ignore[operator]
              f"(this tree / {args.against}; ≤ 1: no more work per create)")
        print(f"delivery_bytecodes_ratio = {delivery['total'] / old_delivery['total']:.3f}")  # type: ignore[operator]
    for label, create, delivery in rows:
        print(f"[{label}] most bytecodes per create: {_top(create)}")
        print(f"[{label}] most bytecodes per delivery: {_top(delivery)}")


def _top(figures: dict[str, object]) -> str:
    top = figures["top"]
    assert isinstance(top, dict)
    return ", ".join(f"{name} {count:.0f}" for name, count in list(top.items())[:6])


if __name__ == "__main__":
    main(sys.argv[1:])
