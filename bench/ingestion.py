"""Case 6: recording conversations, `record_many` in batches against `record` one at a time.

Both record the same number of conversations (with external ids, the idempotent path a host
backend uses) for one org each, in the same run, a batch's worth each way per round, taking
turns with the engine's floor for the same batch (a raw `insert_many` in one transaction); the
counts in the database must match. Then `record_many` sends every batch again, as a host
retrying them would, and writes nothing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import MongoClient

from bench import floor, seed
from bench.cases import Bench, CheckFailed
from bench.counting import CommandCounter, Tally
from bench.report import Table, num
from billing import Billing
from billing.adapters import schema
from billing.domain.inputs import NewConversation
from billing.plans.conversations import batch_plan

HEADERS = ["call", "conversations", "calls", "seconds", "conversations/s", "commands",
           "transactions", "speed-up"]
BATCH = 1_000  # record_many's largest batch


def run(bench: Bench) -> Table:
    n = bench.sizes.ingest_conversations
    table = Table(6, "Recording conversations: record_many against record", HEADERS)
    counter = CommandCounter()
    items = _items(bench, n)
    rounds = [items[i:i + BATCH] for i in range(0, n, BATCH)]
    labels = ["record, one at a time", f"record_many, batches of {BATCH:,}",
              "floor: insert_many, one transaction per batch",
              "record_many again, the same batches (writes nothing)"]
    with bench.database("ingest") as db_name, bench.engine.client(counter) as client:
        b = Billing(client, database=db_name)
        b.setup()
        orgs = [b.orgs.create(name=label, currency="usd", per_conversation=seed.PER_CONVERSATION,
                              per_started_minute=seed.PER_STARTED_MINUTE).id
                for label in labels[:3]]
        floor_org = b.database[schema.ORGS].find_one({"_id": ObjectId(orgs[2])})
        sides: list[Callable[[list[dict[str, Any]]], int]] = [
            lambda part: _one_by_one(b, orgs[0], part),
            lambda part: _batched(b, orgs[1], part),
            lambda part: _floor(client, db_name, floor_org, part),
            lambda part: _batched(b, orgs[1], part),
        ]
        tallies = [Tally() for _ in labels]
        calls, seconds = [0] * len(labels), [0.0] * len(labels)
        rates: list[list[float]] = [[] for _ in labels]

        def measure(who: int, number: int, part: list[dict[str, Any]]) -> None:
            bench.log(f"case 6: round {number + 1} of {len(rounds)}, {labels[who]}, "
                      f"{len(part):,} conversations")
            with counter.counting() as tally:
                started = time.perf_counter()
                calls[who] += sides[who](part)
                took = time.perf_counter() - started
            seconds[who] += took
            rates[who].append(len(part) / took)
            tallies[who].add(tally)

        for number, part in enumerate(rounds):
            # Each round records the same slice each way, in an order that turns round by
            # round: an engine that slows down over the run (or pauses to write back) weighs
            # on every side alike.
            for k in range(3):
                measure((number + k) % 3, number, part)
        for number, part in enumerate(rounds):  # a host retrying every batch it sent
            measure(3, number, part)
        for who, label in enumerate(labels[:3]):
            stored = b.database.conversations.count_documents({"org_id": ObjectId(orgs[who])})
            if stored != n:
                raise CheckFailed(f"case 6: {label} stored {stored} conversations, expected {n}")
    rate = [statistics.median(r) for r in rates]
    for who, label in enumerate(labels):
        table.rows.append([label, num(n), num(calls[who]), num(seconds[who], 2),
                           num(rate[who], 0), str(tallies[who].total),
                           str(tallies[who].transactions), f"{rate[who] / rate[0]:.1f}x"])
        table.notes.append(f"{label}: {tallies[who].describe()}; conversations/s by round: "
                           f"{', '.join(num(r, 0) for r in rates[who])}")
    table.notes.append(
        f"conversations/s is the median of the {len(rounds)} round(s), each recording "
        f"{min(n, BATCH):,} conversations each way in an order that turns round by round; over "
        f"the whole run record_many was {seconds[0] / seconds[1]:.1f}x record. The floor writes "
        "the documents record_many writes, with no reads; the repeated batches run last.")
    floor_ratio = rate[2] / rate[1]
    table.notes.append(f"Goal, record_many within 1.25x of the floor: "
                       f"{'met' if floor_ratio <= 1.25 else 'NOT met'} ({floor_ratio:.2f}x).")
    ratio, ceiling = rate[1] / rate[0], rate[2] / rate[0]
    table.notes.append(
        f"Goal, record_many at least 20x the conversations/s of record: "
        f"{'met' if ratio >= 20 else 'NOT met'} ({ratio:.1f}x). No batch call can pass the "
        f"floor, which is {ceiling:.1f}x record on this engine.")
    return table


def _items(bench: Bench, n: int) -> list[dict[str, Any]]:
    start = bench.period.start
    return [{"started_at": start + timedelta(seconds=10 * i),
             "ended_at": start + timedelta(seconds=10 * i + (i * 37) % 301),
             "external_id": f"conv-{i}"} for i in range(n)]


def _one_by_one(b: Billing, org_id: str, items: list[dict[str, Any]]) -> int:
    for item in items:
        b.conversations.record(org_id, **item)
    return len(items)


def _batched(b: Billing, org_id: str, items: list[dict[str, Any]]) -> int:
    calls = 0
    for i in range(0, len(items), BATCH):
        b.conversations.record_many(org_id, items[i:i + BATCH])
        calls += 1
    return calls


def _floor(client: MongoClient[dict[str, Any]], database: str, org: dict[str, Any],
           items: list[dict[str, Any]]) -> int:
    """The documents `record_many` writes for `items` (built by its own plan, as it builds
    them, for `org`, read beforehand), inserted a batch per transaction: no reads."""
    org_id, calls = org["_id"], 0
    for i in range(0, len(items), BATCH):
        plan = batch_plan(org, [], [NewConversation.parse(**item) for item in items[i:i + BATCH]],
                          org_id=org_id, now=datetime.now(UTC), make_id=ObjectId)
        floor.insert_batch(client, database, [write.doc for write in plan.writes])
        calls += 1
    return calls
