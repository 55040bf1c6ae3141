"""Cloud Scheduler's schedule format (unix cron, 5 fields) and time zones, checked locally."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from fastapi_cloud_tasks.exceptions import InvalidScheduleError

__all__ = ["check_schedule", "check_time_zone"]

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
