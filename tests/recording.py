"""Recording Cloud Tasks / Cloud Scheduler services behind Google's real clients.

They keep every request they are sent and answer as the services do for the few RPCs the
production package uses; the full fakes live in fastapi_cloud_tasks.engine.
"""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import urlsplit

from google.api_core import exceptions
from google.cloud import scheduler_v1, tasks_v2
from starlette.testclient import TestClient


class RecordingTasks:
    def __init__(self) -> None:
        self.requests: list[tasks_v2.CreateTaskRequest] = []
        self.queue_requests: list[tasks_v2.CreateQueueRequest] = []
        self.queues: dict[str, tasks_v2.Queue] = {}
        self.create_queue_error: Exception | None = None
        self._ids = itertools.count(1)

    def create_queue(self, request: tasks_v2.CreateQueueRequest) -> tasks_v2.Queue:
        self.queue_requests.append(request)
        if self.create_queue_error is not None:
            raise self.create_queue_error
        if request.queue.name in self.queues:
            raise exceptions.AlreadyExists("Queue already exists")
        self.queues[request.queue.name] = request.queue
        return request.queue

    def create_task(self, request: tasks_v2.CreateTaskRequest) -> tasks_v2.Task:
        self.requests.append(request)
        task = tasks_v2.Task(request.task)
        if not task.name:
            task.name = f"{request.parent}/tasks/{next(self._ids):019d}"
        return task

    @property
    def last(self) -> tasks_v2.Task:
        return self.requests[-1].task


class RecordingScheduler:
    def __init__(self) -> None:
        self.jobs: dict[str, scheduler_v1.Job] = {}
        self.calls: list[tuple[str, Any]] = []

    def create_job(self, request: scheduler_v1.CreateJobRequest) -> scheduler_v1.Job:
        self.calls.append(("create_job", request))
        if request.job.name in self.jobs:
            raise exceptions.AlreadyExists("Job already exists.")
        job = scheduler_v1.Job(request.job)
        job.state = scheduler_v1.Job.State.ENABLED
        job.http_target.headers["User-Agent"] = "Google-Cloud-Scheduler"
        self.jobs[job.name] = job
        return job

    def get_job(self, request: scheduler_v1.GetJobRequest) -> scheduler_v1.Job:
        self.calls.append(("get_job", request))
        if request.name not in self.jobs:
            raise exceptions.NotFound("Job not found.")
        return scheduler_v1.Job(self.jobs[request.name])

    def update_job(self, request: scheduler_v1.UpdateJobRequest) -> scheduler_v1.Job:
        self.calls.append(("update_job", request))
        current = self.jobs.get(request.job.name)
        if current is None:
            raise exceptions.NotFound("Job not found.")
        for path in request.update_mask.paths:
            setattr(current, path, getattr(request.job, path))
        current.http_target.headers["User-Agent"] = "Google-Cloud-Scheduler"
        return scheduler_v1.Job(current)

    def delete_job(self, request: scheduler_v1.DeleteJobRequest) -> None:
        self.calls.append(("delete_job", request))
        if self.jobs.pop(request.name, None) is None:
            raise exceptions.NotFound("Job not found.")

    def rpc_names(self) -> list[str]:
        return [name for name, _ in self.calls]


def deliver(client: TestClient, method: str, url: str, headers: dict[str, str], body: bytes):
    """Send a stored task/job request to the app the way Cloud Tasks would (path and query)."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return client.request(method, target, headers=headers, content=body or None)


def deliver_task(client: TestClient, task: tasks_v2.Task):
    http = task.http_request
    method = tasks_v2.HttpMethod(http.http_method).name
    return deliver(client, method, http.url, dict(http.headers), http.body)
