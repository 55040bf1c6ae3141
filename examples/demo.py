"""The main job: the full example app on the local emulator, its tasks and a scheduled job.

Starts the emulator (`python -m fastapi_cloud_tasks.emulator`) and the example worker
(`uvicorn examples.full.main:app`) on loopback ports, calls the app as a user would, forces a
run of the daily job, and shows the logs of both until every task and the job have run.

    python -m examples.demo               (or: python3 dev.py demo)
    python -m examples.demo --serve       keep both running afterwards (Ctrl-C stops), the
                                          emulator's dashboard at the URL it prints
    python -m examples.demo --in-process  the same flow on the pytest plugin's virtual clock
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from examples.full.main import app
from fastapi_cloud_tasks import emulator_scheduler_client
from pytest_cloudtasks.harness import Attempt, Harness, HarnessConfig

ROOT = Path(__file__).resolve().parents[1]

START = datetime(2026, 3, 8, 0, 0, tzinfo=timezone.utc)


def describe(attempt: Attempt) -> str:
    when = attempt.dispatch_time.strftime("%b %d %H:%M:%S.%f")[:-3]
    retry = attempt.request_headers.get("X-CloudTasks-TaskRetryCount")
    extra = f", retry {retry}" if retry not in (None, "0") else ""
    return f"{when}  {attempt.status_code}  {attempt.task.describe()}{extra}"


def run_in_process() -> int:
    """A day of the app's tasks and its daily job in about a second, no ports needed."""
    logging.basicConfig(level=logging.WARNING, format="    app log: %(message)s",
                        stream=sys.stdout)
    harness = Harness(lambda: app, HarnessConfig(start=START))
    try:
        with TestClient(app) as client:
            print(f"== {START:%Y-%m-%d %H:%M} UTC: a user calls the app")
            for method, path in [
                ("POST", "/trigger/hello"),
                ("POST", "/trigger/dinner"),
                ("POST", "/trigger/order/42"),
                ("POST", "/trigger/order/42"),
                ("POST", "/trigger/flaky"),
                ("POST", "/trigger/audit"),
                ("POST", "/schedule"),
            ]:
                response = client.request(method, path)
                print(f"  {method} {path} -> {response.status_code} {response.json()}")
        print(f"\n== pending: {len(harness.engine.pending())} tasks, "
              f"{len(harness.scheduler.jobs())} scheduled job(s); running one day")
        attempts = harness.run(START + timedelta(days=1))
        print("\n== deliveries (virtual time, status, what ran)")
        for attempt in attempts:
            print("  " + describe(attempt))
        failed = [a for a in attempts if not a.succeeded]
        print(f"\n== {len(attempts)} deliveries, {len(failed)} failed attempt(s) retried; "
              f"{len(harness.engine.pending())} task(s) left")
        ok = not harness.engine.pending() and any(
            a.task.describe().startswith("job ") and a.succeeded for a in attempts
        )
        return 0 if ok else 1
    finally:
        harness.close()


EXPECTED = (
    "hello ran: 'Triggered task'",
    "hello ran: 'order 42'",
    "fail_twice succeeded on attempt 3",
    "make_dinner ran at Taj",
    "audit ran for 'login', called by fastapi-cloud-tasks@",
    "home_cook (test-home-cook-at-7AM-IST) ran",
)


class Process:
    """A child process whose output is echoed with a prefix and kept for inspection."""

    def __init__(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.lines: list[str] = []
        self.popen = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, env=env, cwd=ROOT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip())
            print(f"  {self.name:8} | {line.rstrip()}", flush=True)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if text in line:
                    return line
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not print {text!r} within {timeout:g} s")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        self._reader.join(5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_with_emulator(serve: bool) -> int:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    emulator = Process("emulator", [sys.executable, "-m", "fastapi_cloud_tasks.emulator",
                                    "--port", "0", "--verbose"], env)
    worker: Process | None = None
    try:
        ready = emulator.wait_for("READY", 30).split()
        host, certs_port = ready[1], ready[2].split("=")[1]
        dashboard = f"http://127.0.0.1:{certs_port}/"
        print(f"  {'you':8} | the emulator's dashboard: {dashboard}", flush=True)
        port = free_port()
        worker_url = f"http://127.0.0.1:{port}"
        env.update(CLOUD_TASKS_EMULATOR_HOST=host, CLOUD_SCHEDULER_EMULATOR_HOST=host,
                   WORKER_URL=worker_url,
                   OIDC_CERTS_URL=f"http://127.0.0.1:{certs_port}/oauth2/v1/certs")
        worker = Process("worker", [sys.executable, "-m", "uvicorn", "examples.full.main:app",
                                    "--host", "127.0.0.1", "--port", str(port)], env)
        worker.wait_for("Uvicorn running", 30)
        with httpx.Client(base_url=worker_url, timeout=30) as client:
            for path in ["/trigger/hello", "/trigger/dinner?countdown=2", "/trigger/order/42",
                         "/trigger/order/42", "/trigger/flaky", "/trigger/audit", "/schedule"]:
                response = client.post(path)
                print(f"  {'you':8} | POST {path} -> {response.status_code} {response.json()}",
                      flush=True)
        job = "projects/gcp-project-id/locations/asia-south1/jobs/test-home-cook-at-7AM-IST"
        scheduler = emulator_scheduler_client(host)
        scheduler.run_job(name=job)  # don't wait for 7 AM in Kolkata
        scheduler.transport.close()
        print(f"  {'you':8} | RunJob {job}", flush=True)
        for text in EXPECTED:
            worker.wait_for(text, 30)
        print("\n== every task and the scheduled job ran on the emulator", flush=True)
        if serve:
            print(f"== serving: app {worker_url}, emulator {host}, dashboard {dashboard}; "
                  "Ctrl-C stops", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
        return 0
    except RuntimeError as exc:
        print(f"\n== demo failed: {exc}", flush=True)
        return 1
    finally:
        if worker is not None:
            worker.stop()
        emulator.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help="keep serving afterwards")
    parser.add_argument("--in-process", action="store_true",
                        help="run on the pytest plugin's virtual clock instead")
    args = parser.parse_args(argv)
    return run_in_process() if args.in_process else run_with_emulator(args.serve)


if __name__ == "__main__":
    sys.exit(main())
