"""Cloud Scheduler's rules for a job's schedule (unix cron, 5 fields), time zone and retry
config, checked locally: by the library before it sends a job, and by the fake service."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from google.cloud import scheduler_v1

from fastapi_cloud_tasks.exceptions import InvalidScheduleError

__all__ = [
    "RETRY_DEFAULTS",
    "check_description",
    "check_job",
    "check_schedule",
    "check_time_zone",
    "complete_retry_config",
]

# Cloud Scheduler's documented limits, from google.cloud.scheduler_v1's Job and HttpTarget:
# "The maximum allowed size for a job is 1MB" (read as 1 MiB, as for tasks);
# HttpTarget.uri: "The maximum allowed URL length is 2083 characters after encoding";
# Job.description: "This string must not contain more than 500 characters".
MAX_JOB_BYTES = 1024 * 1024
MAX_URI_LENGTH = 2083
MAX_DESCRIPTION_LENGTH = 500
# What a URL may hold unencoded: printable ASCII but the space.
_URL_SAFE = "".join(map(chr, range(0x21, 0x7F)))

# What Cloud Scheduler uses for a RetryConfig field the job leaves unset (retry_count and
# max_retry_duration default to 0: no retries, no time limit).
RETRY_DEFAULTS = {
    "retry_count": 0,
    "min_backoff_duration": timedelta(seconds=5),
    "max_backoff_duration": timedelta(hours=1),
    "max_doublings": 5,
    "max_retry_duration": timedelta(0),
}

_UNSUPPORTED = re.compile(r"[LW#?]")
# Month and weekday names, removed before looking for L and W (JUL and WED contain them).
_NAMES = re.compile(
    r"\b(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|SUN|MON|TUE|WED|THU|FRI|SAT)\b"
)
# System files in the zoneinfo directories that are not tz database names.
_NOT_ZONES = frozenset({"localtime", "posixrules"})
_CRON_HELP = (
    "Cloud Scheduler takes unix cron: 5 fields (minute hour day-of-month month day-of-week), "
    "e.g. '0 7 * * *' for 07:00 every day or '*/5 * * * *' for every 5 minutes."
)


def check_schedule(schedule: object) -> str:
    """Return `schedule` if Cloud Scheduler accepts it, else raise InvalidScheduleError."""
    if not isinstance(schedule, str):
        raise InvalidScheduleError(f"schedule={schedule!r} must be a string. {_CRON_HELP}")
    text = schedule.strip()
    if text.lower().startswith("every "):
        raise InvalidScheduleError(
            f"schedule={schedule!r} uses App Engine's legacy English format, which this "
            f"library does not support. {_CRON_HELP}"
        )
    fields = text.split()
    if len(fields) != 5:
        raise InvalidScheduleError(
            f"schedule={schedule!r} has {len(fields)} fields; {_CRON_HELP}"
        )
    if _UNSUPPORTED.search(_NAMES.sub("", text.upper())):
        raise InvalidScheduleError(
            f"schedule={schedule!r} uses L, W, # or ?, which Cloud Scheduler's unix cron does "
            f"not support. {_CRON_HELP}"
        )
    try:
        CronSim(text, datetime(2000, 1, 1, tzinfo=timezone.utc))
    except CronSimError as exc:
        message = f"schedule={schedule!r} is invalid: {exc}. {_CRON_HELP}"
        raise InvalidScheduleError(message) from None
    return text


def check_time_zone(time_zone: object) -> ZoneInfo:
    """The `ZoneInfo` for a tz database name, or InvalidScheduleError."""
    if not isinstance(time_zone, str) or not time_zone or time_zone in _NOT_ZONES:
        raise InvalidScheduleError(
            f"time_zone={time_zone!r} must be a tz database name such as 'UTC' or 'Asia/Kolkata'."
        )
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory ("America")
        raise InvalidScheduleError(
            f"time_zone={time_zone!r} is not in the tz database; use a name such as 'UTC', "
            "'Europe/London' or 'Asia/Kolkata'."
        ) from None


def check_description(description: object) -> str:
    """`description` ('' for None) if Cloud Scheduler accepts it, else InvalidScheduleError."""
    if description is None:
        return ""
    if not isinstance(description, str):
        raise InvalidScheduleError(f"description={description!r} must be a string or None.")
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidScheduleError(
            f"The job description is {len(description)} characters long; Cloud Scheduler "
            f"accepts at most {MAX_DESCRIPTION_LENGTH}. Shorten it: {description[:60]!r}..."
        )
    return description


def check_job(job: scheduler_v1.Job) -> scheduler_v1.Job:
    """`job` if it is within Cloud Scheduler's limits (URI length, description, size), else
    InvalidScheduleError. Checked on the final job, after any pre_create_hook."""
    check_description(job.description)
    uri = job.http_target.uri
    encoded = len(quote(uri, safe=_URL_SAFE))
    if encoded > MAX_URI_LENGTH:
        raise InvalidScheduleError(
            f"The job's URI is {encoded} characters long once encoded; Cloud Scheduler "
            f"accepts at most {MAX_URI_LENGTH}. Move large values from the path or query to "
            f"the body: {uri[:80]!r}..."
        )
    size = scheduler_v1.Job.pb(job).ByteSize()
    if size > MAX_JOB_BYTES:
        raise InvalidScheduleError(
            f"The job {job.name!r} is {size} bytes; Cloud Scheduler accepts at most "
            f"{MAX_JOB_BYTES} (1 MiB). Store large payloads elsewhere (e.g. Cloud Storage) "
            "and pass a reference."
        )
    return job


def complete_retry_config(config: scheduler_v1.RetryConfig) -> scheduler_v1.RetryConfig:
    """`config` with Cloud Scheduler's defaults where it leaves a field unset, checked
    against the service's ranges (else InvalidScheduleError)."""
    complete = scheduler_v1.RetryConfig(config)
    for field, default in RETRY_DEFAULTS.items():
        if field not in config:  # proto-plus reads unset fields as zero: only defaults differ
            setattr(complete, field, default)
    if not 0 <= complete.retry_count <= 5:
        raise InvalidScheduleError(
            f"retry_config.retry_count={complete.retry_count} is outside 0..5, the range Cloud "
            "Scheduler allows."
        )
    for field in ("min_backoff_duration", "max_backoff_duration", "max_retry_duration"):
        if getattr(complete, field) < timedelta(0):
            raise InvalidScheduleError(f"retry_config.{field} must not be negative.")
    if complete.min_backoff_duration > complete.max_backoff_duration:
        raise InvalidScheduleError(
            "retry_config.min_backoff_duration is longer than max_backoff_duration; "
            "swap them or raise the maximum."
        )
    if complete.max_doublings < 0:
        raise InvalidScheduleError("retry_config.max_doublings must not be negative.")
    return complete
