"""Pricing counts conversations and the minutes begun in each, on whole milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.domain.pricing import Usage, started_minutes, usage

T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
ms = st.integers(min_value=0, max_value=40 * 86_400_000).map(lambda n: timedelta(milliseconds=n))
spans = st.lists(
    st.tuples(st.integers(min_value=0, max_value=10**9), ms).map(
        lambda t: (T0 + timedelta(milliseconds=t[0]), T0 + timedelta(milliseconds=t[0]) + t[1])),
    max_size=20,
)


@pytest.mark.parametrize("duration, minutes", [
    (timedelta(0), 0),
    (timedelta(milliseconds=1), 1),
    (timedelta(seconds=59, milliseconds=999), 1),
    (timedelta(seconds=60), 1),
    (timedelta(seconds=60, milliseconds=1), 2),
    (timedelta(minutes=2), 2),
    (timedelta(days=1), 1440),
    (timedelta(days=3, milliseconds=1), 3 * 1440 + 1),
    # Below a millisecond is below what MongoDB stores: no minute has begun.
    (timedelta(microseconds=999), 0),
])
def test_started_minutes_boundaries(duration: timedelta, minutes: int) -> None:
    assert started_minutes(T0, T0 + duration) == minutes


@pytest.mark.parametrize("duration", [timedelta(milliseconds=-1), timedelta(microseconds=-1),
                                      timedelta(days=-2)])
def test_a_conversation_cannot_end_before_it_starts(duration: timedelta) -> None:
    with pytest.raises(ValueError, match="cannot end before it starts"):
        started_minutes(T0, T0 + duration)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=400 * 86_400_000))
def test_started_minutes_cover_the_duration_and_no_more(duration_ms: int) -> None:
    duration = timedelta(milliseconds=duration_ms)
    minutes = started_minutes(T0, T0 + duration)
    assert minutes * MINUTE >= duration > (minutes - 1) * MINUTE


@settings(max_examples=100, deadline=None)
@given(ms, st.integers(min_value=0, max_value=10**12))
def test_started_minutes_depend_only_on_the_duration(duration: timedelta, shift_ms: int) -> None:
    start = T0 + timedelta(milliseconds=shift_ms)
    assert started_minutes(start, start + duration) == started_minutes(T0, T0 + duration)


def test_usage_counts_conversations_and_sums_minutes() -> None:
    assert usage([]) == Usage(0, 0)
    assert usage([(T0, T0), (T0, T0 + timedelta(seconds=61)), (T0, T0 + MINUTE)]) == Usage(3, 3)


def test_usage_takes_any_iterable_once() -> None:
    assert usage((T0, T0 + MINUTE * k) for k in range(4)) == Usage(4, 0 + 1 + 2 + 3)


@settings(max_examples=100, deadline=None)
@given(spans, spans)
def test_usage_is_additive_over_concatenation(
    first: list[tuple[datetime, datetime]], second: list[tuple[datetime, datetime]]
) -> None:
    assert usage(first + second) == usage(first) + usage(second)
    assert usage(first).conversations == len(first)
