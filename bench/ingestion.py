"""Case 6: recording conversations, `record_many` in batches against `record` one at a time.

Both record the same number of conversations (with external ids, the idempotent path a host
backend uses) for one org each, in the same run; the counts in the database must match.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from bson import ObjectId

from bench import seed
from bench.cases import Bench, CheckFailed
from bench.counting import CommandCounter
from bench.report import Table, num
from billing import Billing

HEADERS = ["call", "conversations", "calls", "seconds", "conversations/s", "commands",
           "transactions", "speed-up"]
BATCH = 1_000  # record_many's largest batch


def run(bench: Bench) -> Table:
    n = bench.sizes.ingest_conversations
    table = Table(6, "Recording conversations: record_many against record", HEADERS)
    counter = CommandCounter()
    items = _items(bench, n)
    with bench.database("ingest") as db_name, bench.engine.client(counter) as client:
        b = Billing(client, database=db_name)
        b.setup()
        rows = []
        for label, call in [("record, one at a time", _one_by_one),
                            (f"record_many, batches of {BATCH:,}", _batched)]:
            org = b.orgs.create(name=label, currency="usd", per_conversation=seed.PER_CONVERSATION,
                                per_started_minute=seed.PER_STARTED_MINUTE)
            bench.log(f"case 6: {label}, {n:,} conversations")
            with counter.counting() as tally:
                started = time.perf_counter()
                calls = call(b, org.id, items)
                seconds = time.perf_counter() - started
            stored = b.database.conversations.count_documents({"org_id": ObjectId(org.id)})
            if stored != n:
                raise CheckFailed(f"case 6: {label} stored {stored} conversations, expected {n}")
            rows.append((label, calls, seconds, tally))
    base = n / rows[0][2]
    for label, calls, seconds, tally in rows:
        table.rows.append([label, num(n), num(calls), num(seconds, 2), num(n / seconds, 0),
                           str(tally.total), str(tally.transactions),
                           f"{n / seconds / base:.1f}x"])
        table.notes.append(f"{label}: {tally.describe()}")
    ratio = rows[1][2] and rows[0][2] / rows[1][2]
    table.notes.append(f"Goal, record_many at least 20x the conversations/s of record: "
                       f"{'met' if ratio >= 20 else 'NOT met'} ({ratio:.1f}x).")
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
