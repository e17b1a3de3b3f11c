"""Billing periods: half-open UTC intervals [start, end) at MongoDB's millisecond precision."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from billing.errors import InvalidPeriod, PeriodNotClosed, shown

_MONTH = re.compile(r"\A(\d{4})-(\d{2})\Z", re.ASCII)


def utc(value: Any, *, name: str) -> datetime:
    """An aware datetime converted to UTC and floored to milliseconds (what BSON stores)."""
    if not isinstance(value, datetime):
        raise InvalidPeriod(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidPeriod(
            f"{name} is a naive datetime ({value.isoformat()}): pass an aware one, "
            "e.g. datetime(..., tzinfo=timezone.utc)"
        )
    try:
        moment: datetime = value.astimezone(UTC)
    except OverflowError:
        raise InvalidPeriod(f"{name} {value.isoformat()} is outside the UTC range") from None
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime
    end: datetime

    @classmethod
    def of(cls, start: Any, end: Any, *, now: datetime | None = None) -> Period:
        """Validate a closed period: aware datetimes, start < end <= now."""
        period = cls(utc(start, name="period_start"), utc(end, name="period_end"))
        if period.end <= period.start:
            raise InvalidPeriod(
                f"period_end {period.end.isoformat()} must be after "
                f"period_start {period.start.isoformat()}"
            )
        now = now or datetime.now(UTC)
        if period.end > now:
            raise PeriodNotClosed(
                f"the period ends at {period.end.isoformat()}, in the future: "
                "bill it after it has closed"
            )
        return period

    @classmethod
    def month(cls, text: Any, *, now: datetime | None = None) -> Period:
        """Parse 'YYYY-MM' into the closed calendar month [first day, first day of next)."""
        match = _MONTH.match(text) if isinstance(text, str) else None
        if not match or not 1 <= int(match[2]) <= 12:
            raise InvalidPeriod(f"period {shown(text)} is not a month like 2026-10")
        if int(match[1]) < 1970:
            raise InvalidPeriod(f"period {text!r} is before 1970-01, the first month billing "
                                "bills: give a month from 1970-01 on, like 2026-10")
        start = datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)
        if start.year == 9999 and start.month == 12:
            raise InvalidPeriod(f"period {text!r} ends after the last representable date")
        return cls.of(start, next_month(start), now=now)

    @property
    def label(self) -> str:
        """'2026-10' for a calendar month, else 'start/end' in ISO 8601."""
        if self.start.day == 1 and self.start == self.start.replace(
            hour=0, minute=0, second=0, microsecond=0
        ) and self.end == next_month(self.start):
            return self.start.strftime("%Y-%m")
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


def next_month(start: datetime) -> datetime:
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start.replace(year=year, month=month, day=1)


def last_closed_month(now: datetime | None = None) -> Period:
    """The calendar month before the one `now` falls in."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    this_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    previous = (this_month - timedelta(days=1)).replace(day=1)
    return Period(previous, this_month)
