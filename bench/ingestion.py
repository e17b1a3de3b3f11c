"""Case 6: recording conversations, `record_many` in batches against `record` one at a time.

Both record the same number of conversations (with external ids, the idempotent path a host
backend uses) for one org each, in the same run, a batch's worth each way per round, taking
turns; the counts in the database must match.
"""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from typing import Any

from bson import ObjectId

from bench import seed
from bench.cases import Bench, CheckFailed
from bench.counting import CommandCounter, Tally
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
    rounds = [items[i:i + BATCH] for i in range(0, n, BATCH)]
    labels = ["record, one at a time", f"record_many, batches of {BATCH:,}"]
    calls_of = [_one_by_one, _batched]
    with bench.database("ingest") as db_name, bench.engine.client(counter) as client:
        b = Billing(client, database=db_name)
        b.setup()
        orgs = [b.orgs.create(name=label, currency="usd", per_conversation=seed.PER_CONVERSATION,
                              per_started_minute=seed.PER_STARTED_MINUTE).id for label in labels]
        tallies = [Tally(), Tally()]
        calls, seconds = [0, 0], [0.0, 0.0]
        rates: list[list[float]] = [[], []]
        for number, part in enumerate(rounds):
            # Each round records the same slice each way, their order alternating: an engine
            # that slows down over the run (or pauses to write back) weighs on both.
            for who in (0, 1) if number % 2 == 0 else (1, 0):
                bench.log(f"case 6: round {number + 1} of {len(rounds)}, {labels[who]}, "
                          f"{len(part):,} conversations")
                with counter.counting() as tally:
                    started = time.perf_counter()
                    calls[who] += calls_of[who](b, orgs[who], part)
                    took = time.perf_counter() - started
                seconds[who] += took
                rates[who].append(len(part) / took)
                tallies[who].add(tally)
        for who, label in enumerate(labels):
            stored = b.database.conversations.count_documents({"org_id": ObjectId(orgs[who])})
            if stored != n:
                raise CheckFailed(f"case 6: {label} stored {stored} conversations, expected {n}")
    base = statistics.median(rates[0])
    for who, label in enumerate(labels):
        rate = statistics.median(rates[who])
        table.rows.append([label, num(n), num(calls[who]), num(seconds[who], 2), num(rate, 0),
                           str(tallies[who].total), str(tallies[who].transactions),
                           f"{rate / base:.1f}x"])
        table.notes.append(f"{label}: {tallies[who].describe()}; conversations/s by round: "
                           f"{', '.join(num(r, 0) for r in rates[who])}")
    ratio = statistics.median(rates[1]) / base
    table.notes.append(
        f"conversations/s is the median of the {len(rounds)} round(s), each recording "
        f"{min(n, BATCH):,} conversations each way, in alternating order; over the whole run "
        f"record_many was {seconds[0] / seconds[1]:.1f}x record.")
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
