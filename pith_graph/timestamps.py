"""RFC 3339 UTC timestamps as merge-v1 reads them.

merge-v1 accepts ``YYYY-MM-DDTHH:MM:SS[.fraction]Z`` (UTC, upper-case ``T`` and
``Z``, 1 to 9 fraction digits) and compares timestamps as instants, never as
text: ``...:16Z`` and ``...:16.000Z`` are the same instant, and
``...:16.5Z`` sorts after ``...:16.25Z``.
"""

from __future__ import annotations

import calendar
import re
from typing import Final

__all__ = ["Instant", "parse_timestamp"]

#: (seconds since the epoch, nanoseconds): a total order on instants.
Instant = tuple[int, int]

_TIMESTAMP_RE: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?Z"
)


def parse_timestamp(text: str) -> Instant | None:
    """Return the instant ``text`` names, or None if it is not a merge-v1 timestamp.

    Calendar-checked (no 30 February, no hour 24, no leap second 60).
    """
    match = _TIMESTAMP_RE.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if not (1 <= month <= 12 and hour < 24 and minute < 60 and second < 60):
        return None
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    fraction = match.group(7) or ""
    nanos = int(fraction.ljust(9, "0")) if fraction else 0
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    return (seconds, nanos)
