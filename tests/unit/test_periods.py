"""Periods are closed, half-open UTC intervals at millisecond precision."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.domain.periods import Period, last_closed_month, next_month, utc
from billing.errors import InvalidPeriod, PeriodNotClosed

NOW = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)
OCT_START = datetime(2026, 10, 1, tzinfo=UTC)
NOV_START = datetime(2026, 11, 1, tzinfo=UTC)
offsets = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23, minutes=-59),
                            max_value=timedelta(hours=23, minutes=59)).map(
        lambda d: timedelta(minutes=d // timedelta(minutes=1)))
)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(InvalidPeriod, match="naive"):
        Period.of(datetime(2026, 10, 1), NOV_START, now=NOW)
    with pytest.raises(InvalidPeriod, match="naive"):
        Period.of(OCT_START, datetime(2026, 11, 1), now=NOW)


@pytest.mark.parametrize("value", ["2026-10-01T00:00:00Z", 1_790_000_000, None,
                                   date(2026, 10, 1), {"$gte": OCT_START}])
def test_only_datetimes_are_accepted(value: Any) -> None:
    with pytest.raises(InvalidPeriod):
        Period.of(value, NOV_START, now=NOW)


@pytest.mark.parametrize("start, end", [(NOV_START, NOV_START), (NOV_START, OCT_START),
                                        (NOV_START, NOV_START + timedelta(microseconds=999))])
def test_end_must_be_after_start(start: datetime, end: datetime) -> None:
    # The last case: both floor to the same millisecond, so the period is empty.
    with pytest.raises(InvalidPeriod, match="must be after") as info:
        Period.of(start, end, now=NOW)
    assert not isinstance(info.value, PeriodNotClosed)


def test_a_period_ending_after_now_is_not_closed() -> None:
    with pytest.raises(PeriodNotClosed):
        Period.of(OCT_START, NOW + timedelta(milliseconds=1), now=NOW)
    assert Period.of(OCT_START, NOW, now=NOW).end == NOW


def test_now_defaults_to_the_clock() -> None:
    with pytest.raises(PeriodNotClosed):
        Period.of(OCT_START, datetime.now(UTC) + timedelta(days=1))
    assert Period.of(OCT_START, NOV_START).start == OCT_START


def test_other_offsets_are_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    period = Period.of(datetime(2026, 10, 1, 2, 0, tzinfo=plus_two),
                       datetime(2026, 10, 31, 19, 0, tzinfo=timezone(timedelta(hours=-5))),
                       now=NOW)
    assert period.start == OCT_START
    assert period.end == NOV_START
    assert period.start.tzinfo is UTC and period.end.tzinfo is UTC
    assert period.label == "2026-10"


@pytest.mark.parametrize("micro, floored", [(0, 0), (999, 0), (1000, 1000), (123_456, 123_000),
                                            (999_999, 999_000)])
def test_microseconds_are_floored_to_milliseconds(micro: int, floored: int) -> None:
    value = utc(datetime(2026, 10, 1, 0, 0, 1, micro, tzinfo=UTC), name="t")
    assert value == datetime(2026, 10, 1, 0, 0, 1, floored, tzinfo=UTC)


@settings(max_examples=100, deadline=None)
@given(st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1),
                    timezones=offsets))
def test_utc_is_the_same_instant_floored(value: datetime) -> None:
    result = utc(value, name="t")
    assert result.tzinfo is UTC
    assert result.microsecond % 1000 == 0
    assert timedelta(0) <= value - result < timedelta(milliseconds=1)


@pytest.mark.parametrize("value", [
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
    datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))),
])
def test_datetimes_outside_the_utc_range_are_an_invalid_period(value: datetime) -> None:
    with pytest.raises(InvalidPeriod):
        utc(value, name="started_at")


@pytest.mark.parametrize("text, start, end", [
    ("2026-10", OCT_START, NOV_START),
    ("2026-01", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
    ("2025-12", datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
    ("2024-02", datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
    ("1970-01", datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 2, 1, tzinfo=UTC)),
])
def test_month_parses_a_calendar_month(text: str, start: datetime, end: datetime) -> None:
    period = Period.month(text, now=NOW)
    assert (period.start, period.end) == (start, end)
    assert period.label == text


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-1", "26-10", "2026/10", "2026-10-01",
                                  "", " 2026-10", "2026-10 ", "october", None, 202610,
                                  {"$ne": None}, ["2026-10"]])
def test_month_refuses_anything_but_yyyy_mm(text: Any) -> None:
    with pytest.raises(InvalidPeriod, match="not a month"):
        Period.month(text, now=NOW)


@pytest.mark.parametrize("text", ["1969-12", "0000-01"])
def test_month_before_1970_says_so(text: str) -> None:
    with pytest.raises(InvalidPeriod, match="before 1970-01") as caught:
        Period.month(text, now=NOW)
    assert "not a month" not in caught.value.message


@pytest.mark.parametrize("text", ["2026-10\n", "\uff12\uff10\uff12\uff16-\uff11\uff10"])
def test_month_refuses_lookalikes(text: str) -> None:
    with pytest.raises(InvalidPeriod):
        Period.month(text, now=NOW)


def test_the_current_month_is_not_closed() -> None:
    with pytest.raises(PeriodNotClosed):
        Period.month("2026-11", now=NOW)
    closed = Period.month("2026-11", now=datetime(2026, 12, 1, tzinfo=UTC))
    assert closed.end == datetime(2026, 12, 1, tzinfo=UTC)


def test_the_last_representable_month_is_a_billing_error() -> None:
    with pytest.raises(InvalidPeriod):
        Period.month("9999-12", now=NOW)


def test_label_of_other_periods_is_an_iso_interval() -> None:
    odd = Period.of(datetime(2026, 10, 2, tzinfo=UTC), NOV_START, now=NOW)
    assert odd.label == "2026-10-02T00:00:00+00:00/2026-11-01T00:00:00+00:00"
    two_months = Period.of(datetime(2026, 9, 1, tzinfo=UTC), NOV_START, now=NOW)
    assert "/" in two_months.label
    late_start = Period.of(OCT_START + timedelta(milliseconds=1), NOV_START, now=NOW)
    assert "/" in late_start.label


@pytest.mark.parametrize("now, expected", [
    (datetime(2026, 11, 1, tzinfo=UTC), "2026-10"),
    (datetime(2026, 10, 31, 23, 59, 59, 999_999, tzinfo=UTC), "2026-09"),
    (datetime(2026, 1, 15, tzinfo=UTC), "2025-12"),
    (datetime(2026, 1, 1, tzinfo=UTC), "2025-12"),
    (datetime(2024, 3, 1, 0, 0, 0, 1, tzinfo=UTC), "2024-02"),
    # 00:30 on 1 November in Paris is still 31 October in UTC.
    (datetime(2026, 11, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), "2026-09"),
])
def test_last_closed_month_at_boundaries(now: datetime, expected: str) -> None:
    assert last_closed_month(now).label == expected


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(1970, 2, 1), max_value=datetime(9999, 11, 30),
                    timezones=st.one_of(st.just(UTC), offsets)))
def test_last_closed_month_is_the_whole_month_before_now(now: datetime) -> None:
    period = last_closed_month(now)
    in_utc = now.astimezone(UTC)
    first_instant = datetime(in_utc.year, in_utc.month, 1, tzinfo=UTC)
    assert period.end == first_instant
    assert period.start.day == 1 and period.start.time() == datetime.min.time()
    assert next_month(period.start) == period.end
    assert period.label == period.start.strftime("%Y-%m")
    # It is closed, and re-validating it changes nothing.
    assert Period.of(period.start, period.end, now=now) == period
    assert Period.month(period.label, now=now) == period
