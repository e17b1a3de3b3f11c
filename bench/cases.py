"""What a run is made of: the sizes, the shared context of the cases, and the case registry."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pymongo import MongoClient

from bench.engine import Engine
from bench.report import Table
from billing.domain.periods import Period


@dataclass(frozen=True)
class Sizes:
    name: str
    creation: dict[int, int]  # case 1: conversations per invoice -> repetitions (median taken)
    # case 1: repetitions of ours and the floor alone, on top of `creation` (whose repetitions
    # also run naive): their ratio is a difference of ~20% on an engine whose write times swing
    # by 1.5x from one repetition to the next, so it needs more than naive's comparison does.
    floor_extra: dict[int, int]
    run_orgs: int  # case 2
    run_conversations: int
    concurrency: int
    contention_callers: int  # case 3
    contention_conversations: int
    bounded_conversations: int  # case 5
    bounded_chunk: int
    ingest_conversations: int  # case 6, recorded each way
    reconcile_points: tuple[tuple[int, int], ...]  # case 4: (conversations, orgs) per size
    reconcile_budget_s: float  # case 4: a dry run projected to take longer scans one shard
    budget_s: float  # a measurement projected to take longer is cut, and the output says so


SIZES = {
    "tiny": Sizes("tiny", creation={10: 2, 100: 1}, floor_extra={}, run_orgs=16,
                  run_conversations=10, concurrency=16, contention_callers=16,
                  contention_conversations=50, bounded_conversations=2_500,
                  bounded_chunk=1_000, ingest_conversations=200,
                  reconcile_points=((2_000, 10), (10_000, 20)), reconcile_budget_s=30,
                  budget_s=20),
    "medium": Sizes("medium", creation={10: 3, 100: 3, 1_000: 3, 10_000: 1},
                    floor_extra={1_000: 4}, run_orgs=200,
                    run_conversations=100, concurrency=16, contention_callers=16,
                    contention_conversations=1_000, bounded_conversations=20_000,
                    bounded_chunk=1_000, ingest_conversations=2_000,
                    reconcile_points=((20_000, 20), (200_000, 200)), reconcile_budget_s=300,
                    budget_s=180),
    "full": Sizes("full", creation={10: 5, 100: 5, 1_000: 3, 10_000: 1},
                  floor_extra={1_000: 8, 10_000: 6}, run_orgs=1_000,
                  run_conversations=100, concurrency=16, contention_callers=16,
                  contention_conversations=1_000, bounded_conversations=100_000,
                  bounded_chunk=1_000, ingest_conversations=5_000,
                  reconcile_points=((100_000, 100), (1_000_000, 1_000)),
                  reconcile_budget_s=600, budget_s=480),
}
MAX_DOCS_PER_TRANSACTION = 1_000  # billing's default


class CheckFailed(Exception):
    """A figure cannot be trusted: totals differ, a race left two invoices, and so on."""


@dataclass
class Bench:
    engine: Engine
    sizes: Sizes
    delay_ms: float
    period: Period  # a closed month
    log: Callable[[str], None]
    added_rtt_ms: float | None = None  # what the proxy really adds to a round trip, measured

    @contextmanager
    def database(self, label: str) -> Iterator[str]:
        """A fresh database name, dropped afterwards (the run may share a real cluster)."""
        name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
        try:
            yield name
        finally:
            client: MongoClient[dict[str, Any]] = self.engine.client()
            with client:
                client.drop_database(name)


def registry() -> dict[int, Callable[[Bench], Table]]:
    from bench import bounded, contention, creation, ingestion, reconcile, throughput

    return {1: creation.run, 2: throughput.run, 3: contention.run, 4: reconcile.run,
            5: bounded.run, 6: ingestion.run}
