"""`cloudtasks_scheduler`: Cloud Scheduler jobs fired on the same virtual clock as the tasks."""

from __future__ import annotations

from google.cloud import scheduler_v1

from pytest_cloudtasks.captured import CapturedJob
from pytest_cloudtasks.harness import Attempt
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

    def __repr__(self) -> str:
        return f"<CloudTasksScheduler {len(self.jobs)} jobs at {self.now.isoformat()}>"
