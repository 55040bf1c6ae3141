"""`cloudtasks_scheduler`: Cloud Scheduler jobs fired on the same virtual clock as the tasks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from google.cloud import scheduler_v1

from pytest_cloudtasks.assertions import check_times, job_expectation, listing
from pytest_cloudtasks.captured import CapturedJob
from pytest_cloudtasks.harness import Attempt, PublishedMessage
from pytest_cloudtasks.queue import Timeline

__all__ = ["CloudTasksScheduler"]


class CloudTasksScheduler(Timeline):
    """Every Cloud Scheduler job the app creates in this test; time is shared with
    `cloudtasks_queue`, so advancing either runs job occurrences and tasks in time order."""

    @property
    def jobs(self) -> dict[str, CapturedJob]:
        """Jobs by short id."""
        captured = (CapturedJob(r) for r in self._harness.scheduler.jobs())
        return {job.short_name: job for job in captured}

    @property
    def client(self) -> scheduler_v1.CloudSchedulerClient:
        """A real `CloudSchedulerClient` backed by this test's engine."""
        return self._harness.scheduler_client

    @property
    def attempts(self) -> list[Attempt]:
        """Every job run attempt so far."""
        return [a for a in self._harness.attempts if isinstance(a.task, CapturedJob)]

    @property
    def published(self) -> list[PublishedMessage]:
        """Every message the runs of Pub/Sub target jobs published so far, in order."""
        return list(self._harness.published)

    def run_job(self, job_id: str) -> list[Attempt]:
        """RunJob: run the job now (even while paused) and deliver that run."""
        __tracebackhide__ = True
        name = job_id if "/" in job_id else self._full_name(job_id)
        self.client.run_job(name=name)
        # Stop following real time first: the forced run is due at the engine's "now", which
        # would already be later than `self.now` read on a clock still ticking.
        self._harness.clock.freeze()
        return self._harness.run(self.now, forced_only=True)

    def _full_name(self, job_id: str) -> str:
        job = self.jobs.get(job_id)
        if job is None:
            raise LookupError(f"no job {job_id!r}; jobs: {sorted(self.jobs)}")
        return job.name

    def assert_scheduled(self, endpoint: Callable[..., Any],
                         arguments: Mapping[str, Any] | None = None, /, *,
                         times: int | None = None, **kwargs: Any) -> CapturedJob:
        """Assert a job of `endpoint` (the function or its `ScheduledTask`) exists with these
        arguments (a subset, validated and typed as `.schedule()` does), exactly `times` jobs
        if given; returns the first matching job."""
        __tracebackhide__ = True
        check_times("assert_scheduled", times)
        expected = job_expectation("assert_scheduled", endpoint, {**(arguments or {}), **kwargs})
        jobs = list(self.jobs.values())
        matched = expected.select(jobs)
        self._harness.asserted.update(job.name for job in matched)
        if not matched:
            raise AssertionError(
                f"{expected.text} is not scheduled. Jobs in this test:\n{listing(jobs, _state)}")
        if times is not None and len(matched) != times:
            raise AssertionError(
                f"{expected.text} is scheduled by {len(matched)} job(s), expected {times}:\n"
                f"{listing(matched, _state)}"
            )
        return matched[0]

    def assert_not_scheduled(self, endpoint: Callable[..., Any],
                             arguments: Mapping[str, Any] | None = None, /,
                             **kwargs: Any) -> None:
        """Assert no job of `endpoint` with these arguments exists."""
        __tracebackhide__ = True
        expected = job_expectation("assert_not_scheduled", endpoint,
                                   {**(arguments or {}), **kwargs})
        matched = expected.select(self.jobs.values())
        if matched:
            raise AssertionError(
                f"{expected.text} is scheduled by {len(matched)} job(s), expected none:\n"
                f"{listing(matched, _state)}"
            )

    def __repr__(self) -> str:
        return f"<CloudTasksScheduler {len(self.jobs)} jobs at {self.now.isoformat()}>"


def _state(job: CapturedJob) -> str:
    return f"{job.state}, next run {job.next_run.isoformat() if job.next_run else None}"
