"""Pub/Sub target jobs in the pytest harness: a run publishes, `cloudtasks_scheduler.published`
captures each message with its job and occurrence, and no app is called."""

from __future__ import annotations

import pytest

APP = '''
from fastapi import FastAPI

app = FastAPI()
'''

INI = """
[pytest]
cloudtasks_app = app_mod:app
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


def test_published_messages_are_captured_with_their_job_and_occurrence(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(app_mod=APP, test_user='''
        from datetime import datetime, timezone
        import pytest
        from google.cloud import scheduler_v1

        LOCATION = "projects/my-project/locations/asia-south1"
        TOPIC = "projects/my-project/topics/cron-topic"

        @pytest.mark.cloudtasks(start="2026-03-01T10:20:30+00:00")
        def test_hourly_publish(cloudtasks_scheduler):
            cloudtasks_scheduler.client.create_job(parent=LOCATION, job=scheduler_v1.Job(
                name=f"{LOCATION}/jobs/tick", schedule="0 * * * *",
                pubsub_target=scheduler_v1.PubsubTarget(
                    topic_name=TOPIC, data=b"Hello", attributes={"kind": "tick"})))

            cloudtasks_scheduler.advance(hours=2)

            first, second = cloudtasks_scheduler.published
            assert first.job.short_name == "tick"
            assert first.job.describe() == (
                "job tick (0 * * * * UTC) POST "
                f"https://pubsub.googleapis.com/v1/{TOPIC}:publish")
            assert first.job.endpoint is None
            assert (first.topic_name, first.data, first.attributes) == (
                TOPIC, b"Hello", {"kind": "tick"})
            assert first.schedule_time == first.publish_time == datetime(
                2026, 3, 1, 11, tzinfo=timezone.utc)
            assert second.schedule_time == datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
            attempts = cloudtasks_scheduler.attempts
            assert [a.published for a in attempts] == [first, second]
            job = cloudtasks_scheduler.client.get_job(name=f"{LOCATION}/jobs/tick")
            assert job.status.code == 0
            assert job.last_attempt_time == second.publish_time

        def test_run_job_publishes_now(cloudtasks_scheduler):
            cloudtasks_scheduler.client.create_job(parent=LOCATION, job=scheduler_v1.Job(
                name=f"{LOCATION}/jobs/yearly", schedule="0 0 1 1 *",
                pubsub_target=scheduler_v1.PubsubTarget(topic_name=TOPIC, data=b"x")))
            [attempt] = cloudtasks_scheduler.run_job("yearly")
            assert attempt.status_code == 200
            assert [m.data for m in cloudtasks_scheduler.published] == [b"x"]
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
