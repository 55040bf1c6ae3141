"""Cron expressions and time zones are checked locally, against Cloud Scheduler's rules.

Unix cron with 5 fields; names JAN-DEC and SUN-SAT; 7 is Sunday; ranges, lists and steps. No
L, W, #, ?, no seconds field, no @macros, no legacy English form. Time zones: tz database names.
"""

import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import APIRouter
from google.cloud import scheduler_v1

from fastapi_cloud_tasks import InvalidScheduleError, ScheduledRouteBuilder
from fastapi_cloud_tasks.schedules import (
    check_description,
    check_job,
    check_schedule,
    check_time_zone,
)
from tests.conftest import BASE_URL, LOCATION

VALID_SCHEDULES = [
    "0 7 * * *",
    "*/5 * * * *",
    "* * * * *",
    "0 0 1 1 *",
    "59 23 31 12 6",
    "0 9-17 * * 1-5",
    "0 9-17/2 * * 1-5",
    "0-59/15 * * * *",
    "0,15,30,45 * * * *",
    "5,10-20/5 * * * *",
    "0 7 * JAN *",
    "0 7 * JUL *",  # JUL contains an L
    "0 7 * * WED",  # WED contains a W
    "0 7 * JAN-DEC/2 *",
    "0 7 * * MON-FRI",
    "0 7 * * SUN,SAT",
    "0 7 * * SUN-SAT",
    "0 7 * * mon-fri",
    "0 7 1 jun,jul,aug wed",
    "0 7 * * 7",  # Sunday
    "0 7 * * 0-7",
    "0 7 * * 5-7",
    "30 6 15 * 1",
    "0 0 29 2 *",
    "  0 7 * * *  ",
]

INVALID_SCHEDULES = [
    # (expression, a fragment the message must contain besides the expression)
    ("0 7 L * *", "L, W, # or ?"),
    ("0 7 * * 5L", "L, W, # or ?"),
    ("0 7 15W * *", "L, W, # or ?"),
    ("0 7 LW * *", "L, W, # or ?"),
    ("0 7 * * 1#2", "L, W, # or ?"),
    ("0 7 * * WED#2", "L, W, # or ?"),
    ("0 7 ? * MON", "L, W, # or ?"),
    ("0 7 * JULL *", "L, W, # or ?"),
    ("0 0 7 * * *", "has 6 fields"),
    ("0 0 7 * * * 2030", "has 7 fields"),
    ("0 7 * *", "has 4 fields"),
    ("@daily", "has 1 fields"),
    ("@hourly", "has 1 fields"),
    ("@reboot", "has 1 fields"),
    ("", "has 0 fields"),
    ("   ", "has 0 fields"),
    ("every 5 minutes", "legacy English"),
    ("every day 09:00", "legacy English"),
    ("Every monday 09:00", "legacy English"),
    ("60 * * * *", "Bad minute"),
    ("0 24 * * *", "Bad hour"),
    ("0 0 0 * *", "Bad day-of-month"),
    ("0 0 32 * *", "Bad day-of-month"),
    ("0 0 * 0 *", "Bad month"),
    ("0 0 * 13 *", "Bad month"),
    ("0 0 * * 8", "Bad day-of-week"),
    ("*/0 * * * *", "Bad minute"),
    ("5-1 * * * *", "Bad minute"),
    ("-1 * * * *", "Bad minute"),
    ("a * * * *", "Bad minute"),
    ("0 7 * * MONDAY", "Bad day-of-week"),
    ("0 7 * JANUARY *", "Bad month"),
    ("H * * * *", "Bad minute"),
]


class TestCheckSchedule:
    @pytest.mark.parametrize("expression", VALID_SCHEDULES)
    def test_valid_expression_is_accepted_and_returned_stripped(self, expression):
        assert check_schedule(expression) == expression.strip()

    @pytest.mark.parametrize(("expression", "fragment"), INVALID_SCHEDULES)
    def test_invalid_expression_is_rejected_naming_it(self, expression, fragment):
        with pytest.raises(InvalidScheduleError) as caught:
            check_schedule(expression)
        message = str(caught.value)
        assert f"schedule={expression!r}" in message
        assert fragment in message

    @pytest.mark.parametrize(("expression", "fragment"), INVALID_SCHEDULES)
    def test_error_message_shows_the_expected_format(self, expression, fragment):
        with pytest.raises(InvalidScheduleError, match=r"5 fields .*'0 7 \* \* \*'"):
            check_schedule(expression)

    @pytest.mark.parametrize("value", [None, 5, b"0 7 * * *", ["0", "7", "*", "*", "*"]])
    def test_non_string_schedule_is_rejected(self, value):
        with pytest.raises(InvalidScheduleError, match="must be a string") as caught:
            check_schedule(value)
        assert f"schedule={value!r}" in str(caught.value)


VALID_ZONES = ["UTC", "Asia/Kolkata", "Europe/London", "America/New_York",
               "America/Argentina/Buenos_Aires", "Etc/GMT+5", "Australia/Lord_Howe"]
INVALID_ZONES = ["Mars/Olympus_Mons", "Asia/Mumbai", "IST", "UTC+5:30", "+05:30", "America",
                 "Asia/../Asia/Kolkata", "/etc/localtime", "localtime", "UTC ", "Asia/Kolkata\n"]


class TestCheckTimeZone:
    @pytest.mark.parametrize("zone", VALID_ZONES)
    def test_tz_database_name_is_accepted(self, zone):
        assert check_time_zone(zone) == ZoneInfo(zone)

    @pytest.mark.parametrize("zone", INVALID_ZONES)
    def test_unknown_zone_is_rejected_naming_it(self, zone):
        with pytest.raises(InvalidScheduleError) as caught:
            check_time_zone(zone)
        message = str(caught.value)
        assert f"time_zone={zone!r}" in message
        assert "Asia/Kolkata" in message  # an example of a good name

    @pytest.mark.parametrize("zone", ["", None, 5.5])
    def test_empty_or_non_string_zone_is_rejected(self, zone):
        with pytest.raises(InvalidScheduleError, match="tz database name") as caught:
            check_time_zone(zone)
        assert f"time_zone={zone!r}" in str(caught.value)


# -- the same checks through endpoint.scheduler(...) ----------------------------------------


@pytest.fixture
def endpoint(recording_scheduler: scheduler_v1.CloudSchedulerClient) -> Any:
    router = APIRouter(route_class=ScheduledRouteBuilder(
        base_url=BASE_URL, location_path=LOCATION, client=recording_scheduler,
    ))

    @router.post("/tick")
    def tick() -> None: ...

    return tick


class TestThroughScheduler:
    @pytest.mark.parametrize(("expression", "fragment"), INVALID_SCHEDULES)
    def test_invalid_expression_fails_at_scheduler_before_any_call(
        self, endpoint, scheduler_service, expression, fragment
    ):
        with pytest.raises(InvalidScheduleError) as caught:
            endpoint.scheduler(name="tick", schedule=expression)
        assert f"schedule={expression!r}" in str(caught.value)
        assert fragment in str(caught.value)
        assert scheduler_service.calls == []

    @pytest.mark.parametrize("zone", INVALID_ZONES)
    def test_invalid_zone_fails_at_scheduler_before_any_call(self, endpoint, scheduler_service,
                                                             zone):
        with pytest.raises(InvalidScheduleError) as caught:
            endpoint.scheduler(name="tick", schedule="0 7 * * *", time_zone=zone)
        assert f"time_zone={zone!r}" in str(caught.value)
        assert scheduler_service.calls == []

    @pytest.mark.parametrize("expression", VALID_SCHEDULES)
    def test_valid_expression_is_sent_as_the_jobs_schedule(self, endpoint, scheduler_service,
                                                           expression):
        endpoint.scheduler(name="tick", schedule=expression).schedule()
        stored = scheduler_service.jobs[f"{LOCATION}/jobs/tick"]
        assert stored.schedule == expression.strip()

    @pytest.mark.parametrize("zone", VALID_ZONES)
    def test_valid_zone_is_sent_as_the_jobs_time_zone(self, endpoint, scheduler_service, zone):
        endpoint.scheduler(name="tick", schedule="0 7 * * *", time_zone=zone).schedule()
        assert scheduler_service.jobs[f"{LOCATION}/jobs/tick"].time_zone == zone


class TestJobLimits:
    """Cloud Scheduler's documented limits (scheduler_v1 Job and HttpTarget docstrings)."""

    def job(self, **fields: Any) -> scheduler_v1.Job:
        target = {"uri": "https://worker.example.com/run", **fields.pop("http_target", {})}
        return scheduler_v1.Job(name=f"{LOCATION}/jobs/daily",
                                http_target=scheduler_v1.HttpTarget(**target), **fields)

    def test_a_job_within_the_limits_is_returned(self):
        job = self.job(description="d" * 500,
                       http_target={"uri": "https://w.example.com/" + "u" * 2061})
        assert len(job.http_target.uri) == 2083
        assert check_job(job) is job

    @pytest.mark.parametrize(("fields", "message"), [
        ({"description": "d" * 501}, "description is 501 characters long"),
        ({"http_target": {"uri": "https://w.example.com/" + "u" * 2062}},
         "URI is 2084 characters long once encoded"),
        ({"http_target": {"uri": "https://w.example.com/ü" + "u" * 2056}},
         "URI is 2084 characters long once encoded"),
        ({"http_target": {"body": b"x" * (1024 * 1024)}}, "bytes; Cloud Scheduler accepts at most"),
    ])
    def test_a_job_over_a_limit_is_rejected(self, fields, message):
        with pytest.raises(InvalidScheduleError, match=message):
            check_job(self.job(**fields))

    @pytest.mark.parametrize("description", [123, b"bytes", ["a"]])
    def test_a_description_that_is_not_a_string_is_rejected(self, description):
        with pytest.raises(InvalidScheduleError,
                           match=re.escape(f"description={description!r} must be a string")):
            check_description(description)

    def test_no_description_is_the_empty_one(self):
        assert check_description(None) == ""
