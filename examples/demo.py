"""The main job: the full example app, run in-process with its tasks and scheduled job.

Requests go to the app as a user would send them; Cloud Tasks and Cloud Scheduler are the
project's in-memory engines on a virtual clock, so a day of tasks, retries and a daily job
runs in about a second, each delivery a real HTTP request into the app.

    python -m examples.demo            (or: python3 dev.py demo)
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timedelta, timezone

from fastapi.testclient import TestClient

from examples.full.main import app
from pytest_cloudtasks.harness import Attempt, Harness, HarnessConfig

START = datetime(2026, 3, 8, 0, 0, tzinfo=timezone.utc)


def describe(attempt: Attempt) -> str:
    when = attempt.dispatch_time.strftime("%b %d %H:%M:%S.%f")[:-3]
    retry = attempt.request_headers.get("X-CloudTasks-TaskRetryCount")
    extra = f", retry {retry}" if retry not in (None, "0") else ""
    return f"{when}  {attempt.status_code}  {attempt.task.describe()}{extra}"


def main() -> int:
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


if __name__ == "__main__":
    sys.exit(main())
