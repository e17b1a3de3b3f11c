"""Counting what a client sends: commands by name, and the failures that make transactions retry.

    counter = CommandCounter()
    client = MongoClient(uri, event_listeners=[counter])
    with counter.counting() as tally:   # only what runs inside the block is counted
        billing.invoices.create_for_period(...)
    tally.total, tally.transactions, tally.retries
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pymongo import monitoring

WRITE_CONFLICT = 112
DUPLICATE_KEY = 11000


@dataclass
class Tally:
    commands: Counter[str] = field(default_factory=Counter)
    write_conflicts: int = 0  # commands failed with WriteConflict (code 112)
    duplicate_keys: int = 0  # writes refused by a unique index (lost races to insert)
    failed_commits: int = 0

    @property
    def total(self) -> int:
        return sum(self.commands.values())

    @property
    def transactions(self) -> int:
        """Committed or attempted commits: one per transaction that wrote or read."""
        return self.commands["commitTransaction"] - self.failed_commits

    @property
    def retries(self) -> int:
        """Transaction attempts that were rolled back and run again: pymongo sends
        abortTransaction after a failed callback, and retries a commit that failed."""
        return self.commands["abortTransaction"] + self.failed_commits

    def add(self, other: Tally) -> None:
        """Adds what `other` counted (another measurement of the same thing) to this one."""
        self.commands.update(other.commands)
        self.write_conflicts += other.write_conflicts
        self.duplicate_keys += other.duplicate_keys
        self.failed_commits += other.failed_commits

    def describe(self) -> str:
        return ", ".join(f"{name} {n}" for name, n in sorted(self.commands.items()))


class CommandCounter(monitoring.CommandListener):
    """Thread-safe; counts nothing outside `counting()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tally: Tally | None = None

    @contextmanager
    def counting(self) -> Iterator[Tally]:
        tally = Tally()
        with self._lock:
            self._tally = tally
        try:
            yield tally
        finally:
            with self._lock:
                self._tally = None

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            if self._tally is not None:
                self._tally.commands[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.command_name not in {"insert", "update", "bulkWrite"}:
            return
        duplicates = sum(1 for e in _write_errors(event.reply) if e.get("code") == DUPLICATE_KEY)
        if duplicates:
            with self._lock:
                if self._tally is not None:
                    self._tally.duplicate_keys += duplicates

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        code = event.failure.get("code") if isinstance(event.failure, dict) else None
        with self._lock:
            if self._tally is None:
                return
            self._tally.write_conflicts += code == WRITE_CONFLICT
            self._tally.duplicate_keys += code == DUPLICATE_KEY
            self._tally.failed_commits += event.command_name == "commitTransaction"


def _write_errors(reply: Any) -> list[dict[str, Any]]:
    """Per-write errors of a successful reply: `writeErrors`, or a client bulkWrite's cursor."""
    errors = list(reply.get("writeErrors", []))
    cursor = reply.get("cursor")
    if reply.get("nErrors") and isinstance(cursor, dict):
        errors += [e for e in cursor.get("firstBatch", []) if e.get("ok") == 0]
    return errors
