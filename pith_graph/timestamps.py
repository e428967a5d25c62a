"""RFC 3339 UTC timestamps as merge-v1 reads them.

merge-v1 accepts ``YYYY-MM-DDTHH:MM:SS[.fraction]Z`` (UTC, upper-case ``T`` and
``Z``, 1 to 9 fraction digits) and compares timestamps as instants, never as
text: ``...:16Z`` and ``...:16.000Z`` are the same instant, and
``...:16.5Z`` sorts after ``...:16.25Z``.
"""

from __future__ import annotations

import functools
import re
from typing import Final

__all__ = ["Instant", "parse_timestamp"]

#: (seconds since the epoch, nanoseconds): a total order on instants.
Instant = tuple[int, int]

_TIMESTAMP_RE: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z"
)


_DAYS_IN_MONTH: Final = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_since_epoch(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


@functools.lru_cache(maxsize=4096)
def parse_timestamp(text: str) -> Instant | None:
    """Return the instant ``text`` names, or None if it is not a merge-v1 timestamp.

    Calendar-checked (no 30 February, no hour 24, no leap second 60). Remembered:
    the events of a bundle, and a key's ``rotates_at``, repeat the same few times.
    """
    match = _TIMESTAMP_RE.fullmatch(text)
    if match is None:
        return None
    year_s, month_s, day_s, hour_s, minute_s, second_s, fraction = match.groups()
    year, month, day = int(year_s), int(month_s), int(day_s)
    hour, minute, second = int(hour_s), int(minute_s), int(second_s)
    if not (1 <= month <= 12 and hour < 24 and minute < 60 and second < 60 and day >= 1):
        return None
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if day > _DAYS_IN_MONTH[month] + (month == 2 and leap):
        return None
    nanos = int(fraction.ljust(9, "0")) if fraction else 0
    seconds = _days_since_epoch(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    return (seconds, nanos)
