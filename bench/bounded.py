"""Case 5: bounded billing of one large org, `max_docs_per_transaction` conversations at a time.

A probe org of one chunk is billed first (also a warm-up); if the full size is projected to
outlast the budget it is cut to what fits, and the notes say so.
"""

from __future__ import annotations

import time

from bson import ObjectId

from bench import seed
from bench.cases import Bench, CheckFailed
from bench.counting import CommandCounter
from bench.report import Table, num
from billing import Billing

HEADERS = ["conversations", "chunk", "seconds", "transactions", "commands",
           "commands/transaction", "retries", "conversations/s", "total as expected"]


def run(bench: Bench) -> Table:
    n, chunk = bench.sizes.bounded_conversations, bench.sizes.bounded_chunk
    table = Table(5, f"Bounded billing of one org, chunks of {chunk:,}", HEADERS)
    counter = CommandCounter()
    with bench.database("bounded") as db_name, bench.engine.client(counter) as client:
        b = Billing(client, database=db_name, max_docs_per_transaction=chunk)
        b.setup()
        probe, _ = seed.org_with_conversations(b, chunk, bench.period, name="Probe")
        started = time.perf_counter()
        b.invoices.create_for_period(probe, bench.period.start, bench.period.end)
        per_chunk = time.perf_counter() - started
        if (projected := per_chunk * n / chunk) > bench.sizes.budget_s:
            cut = max(chunk, int(bench.sizes.budget_s / per_chunk) * chunk)
            table.notes.append(f"cut from {n:,} to {cut:,} conversations: {n:,} were projected "
                               f"to take {projected:.0f} s (budget {bench.sizes.budget_s:.0f} s)")
            n = cut
        bench.log(f"case 5: seeding {n:,} conversations")
        seeded = time.perf_counter()
        org_id, expected = seed.org_with_conversations(b, n, bench.period)
        table.notes.append(f"seeding {n:,} conversations with insert_many took "
                           f"{time.perf_counter() - seeded:.1f} s (not counted)")
        bench.log(f"case 5: billing {n:,} conversations")
        with counter.counting() as tally:
            started = time.perf_counter()
            invoice = b.invoices.create_for_period(org_id, bench.period.start, bench.period.end)
            seconds = time.perf_counter() - started
        billed = b.database.conversations.count_documents(
            {"org_id": ObjectId(org_id), "line_item_id": {"$ne": None}})
    if seconds > 1.5 * (projected := per_chunk * n / chunk):
        table.notes.append(f"took {seconds:.0f} s where the probe chunk (billed while the "
                           f"collection held {chunk:,} conversations) projected {projected:.0f} s"
                           ": the cost of a chunk grew with the conversations collection")
    ok = invoice.total == expected and invoice.conversations == n == billed
    table.rows.append([num(n), num(chunk), num(seconds, 1), str(tally.transactions),
                       str(tally.total), num(tally.total / tally.transactions, 2),
                       str(tally.retries), num(n / seconds, 0), "yes" if ok else "NO"])
    table.notes.append(f"commands: {tally.describe()}")
    if not ok:
        raise CheckFailed(f"case 5: invoiced {invoice.total} for {invoice.conversations} "
                           f"conversations ({billed} billed), expected {expected} for {n}")
    return table
