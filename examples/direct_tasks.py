"""Tasks pushed with Google's client directly, the dj-cloud-task way: a decorator registers a
function by name, `.push(**kwargs)` creates an HTTP task posting `{"task": name, "kwargs": ...}`
to one handler URL, and that handler calls `registry.run(body)` to dispatch by name.

Framework-agnostic: the Flask and Django examples each mount the handler their own way. No
`fastapi_cloud_tasks` here: this is what an app written without the library looks like, and
what `pytest_cloudtasks` tests all the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from google.cloud import tasks_v2
from google.protobuf import timestamp_pb2

# Made at import, as many apps do: under the plugin's fixtures it talks to the test's engine
# (no credentials needed); elsewhere to Google Cloud.
client = tasks_v2.CloudTasksClient()


class Task:
    """A registered function: call it to run it here, `.push()` to run it on Cloud Tasks."""

    def __init__(self, registry: TaskRegistry, func: Callable[..., Any]) -> None:
        self.registry, self.func, self.name = registry, func, func.__name__

    def __call__(self, **kwargs: Any) -> Any:
        return self.func(**kwargs)

    def push(self, *, schedule_time: datetime | None = None, **kwargs: Any) -> tasks_v2.Task:
        """Create the task on the registry's queue; it runs at `schedule_time` (or now)."""
        task = tasks_v2.Task(http_request=tasks_v2.HttpRequest(
            url=self.registry.handler_url,
            http_method=tasks_v2.HttpMethod.POST,
            headers={"Content-Type": "application/json"},
            body=json.dumps({"task": self.name, "kwargs": kwargs}).encode(),
        ))
        if schedule_time is not None:
            stamp = timestamp_pb2.Timestamp()
            stamp.FromDatetime(schedule_time)
            task.schedule_time = stamp
        return client.create_task(parent=self.registry.queue, task=task)


class TaskRegistry:
    """The tasks of one app, all posted to `handler_url` on `queue` (a full queue path)."""

    def __init__(self, handler_url: str, queue: str) -> None:
        self.handler_url, self.queue = handler_url, queue
        self.tasks: dict[str, Task] = {}

    def task(self, func: Callable[..., Any]) -> Task:
        registered = self.tasks[func.__name__] = Task(self, func)
        return registered

    def run(self, body: bytes) -> Any:
        """Run the task a Cloud Tasks request's body names; a KeyError for an unknown one."""
        message = json.loads(body)
        return self.tasks[message["task"]](**message["kwargs"])
