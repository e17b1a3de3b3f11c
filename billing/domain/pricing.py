"""Pricing of conversations: per conversation and per started minute, in minor units."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

MINUTE_MS = 60_000


def started_minutes(started_at: datetime, ended_at: datetime) -> int:
    """Minutes begun during a conversation: 0 s -> 0, 1 ms to 60 s -> 1, 60.001 s -> 2.

    Computed on whole milliseconds, the precision MongoDB stores.
    """
    delta = ended_at - started_at
    ms = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    if ms < 0:
        raise ValueError("a conversation cannot end before it starts")
    return -(-ms // MINUTE_MS)


@dataclass(frozen=True, slots=True)
class Usage:
    conversations: int
    minutes: int

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.conversations + other.conversations, self.minutes + other.minutes)


def usage(spans: Iterable[tuple[datetime, datetime]]) -> Usage:
    """Conversations counted and started minutes summed over (started_at, ended_at) spans."""
    count = minutes = 0
    for started_at, ended_at in spans:
        count += 1
        minutes += started_minutes(started_at, ended_at)
    return Usage(count, minutes)
