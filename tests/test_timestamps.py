"""merge-v1 timestamps: syntax, calendar, and comparison as instants (oracle: datetime)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pith_graph.timestamps import parse_timestamp

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)), st.integers(0, 9)
)
def test_instant_matches_datetime(moment: datetime, digits: int) -> None:
    moment = moment.replace(tzinfo=UTC)
    fraction = f"{moment.microsecond:06d}000"[:digits]
    text = moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0") + (f".{fraction}" if digits else "") + "Z"
    delta = moment.replace(microsecond=0) - EPOCH
    expected_nanos = int(fraction.ljust(9, "0")) if digits else 0
    assert parse_timestamp(text) == (delta.days * 86400 + delta.seconds, expected_nanos)


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-29T00:00:00Z",  # not a leap year
        "2026-04-31T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-00-10T00:00:00Z",
        "2026-01-00T00:00:00Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:60:00Z",
        "2026-01-01T00:00:60Z",  # no leap seconds
        "2026-01-01T00:00:00+00:00",
        "2026-01-01T00:00:00z",
        "2026-01-01t00:00:00Z",
        "2026-01-01 00:00:00Z",
        "2026-01-01T00:00:00.Z",
        "2026-01-01T00:00:00.1234567890Z",  # more than nanoseconds
        "26-01-01T00:00:00Z",
        "2026-01-01T00:00:00Z\n",
        "",
    ],
)
def test_rejected(text: str) -> None:
    assert parse_timestamp(text) is None


def test_compared_as_instants_not_text() -> None:
    a, b = parse_timestamp("2026-06-02T01:03:16.5Z"), parse_timestamp("2026-06-02T01:03:16.25Z")
    assert a is not None and b is not None and a > b  # text order says the opposite
    assert parse_timestamp("2026-06-02T01:03:16Z") == parse_timestamp("2026-06-02T01:03:16.000000000Z")
    assert parse_timestamp("2000-02-29T00:00:00Z") is not None  # divisible by 400
    assert parse_timestamp("1900-02-29T00:00:00Z") is None  # divisible by 100
