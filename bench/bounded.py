"""Case 5: bounded billing of one large org, `max_docs_per_transaction` conversations at a time.

A probe org of one chunk is billed first (also a warm-up); if the full size is projected to
outlast the budget it is cut to what fits, and the notes say so. Each chunk is timed from the
end of the previous transaction's commit to the end of its own (the driver's events), so the
figures say whether a chunk costs the same at the end of the period as at its start.
"""

from __future__ import annotations

import statistics
import threading
import time

from bson import ObjectId
from pymongo import monitoring

from bench import seed
from bench.cases import Bench, CheckFailed
from bench.counting import CommandCounter
from bench.report import Table, num
from billing import Billing

HEADERS = ["conversations", "chunk", "seconds", "transactions", "commands",
           "commands/transaction", "retries", "conversations/s", "first chunk s",
           "median chunk s", "last chunk s", "total / (chunks x median)", "total as expected"]
GOAL = 1.3


class ChunkClock(CommandCounter):
    """Counts commands and notes when each commit succeeded."""

    def __init__(self) -> None:
        super().__init__()
        self.commits: list[float] = []
        self._times = threading.Lock()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        super().succeeded(event)
        if event.command_name == "commitTransaction":
            with self._times:
                self.commits.append(time.perf_counter())


def run(bench: Bench) -> Table:
    n, chunk = bench.sizes.bounded_conversations, bench.sizes.bounded_chunk
    table = Table(5, f"Bounded billing of one org, chunks of {chunk:,}", HEADERS)
    clock = ChunkClock()
    with bench.database("bounded") as db_name, bench.engine.client(clock) as client:
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
        clock.commits.clear()
        with clock.counting() as tally:
            started = time.perf_counter()
            invoice = b.invoices.create_for_period(org_id, bench.period.start, bench.period.end)
            seconds = time.perf_counter() - started
        billed = b.database.conversations.count_documents(
            {"org_id": ObjectId(org_id), "line_item_id": {"$ne": None}})
    ends = [t for t in clock.commits if t >= started]
    chunks = [b - a for a, b in zip([started, *ends], ends, strict=False)]
    median = statistics.median(chunks)
    ok = invoice.total == expected and invoice.conversations == n == billed
    table.rows.append([num(n), num(chunk), num(seconds, 1), str(tally.transactions),
                       str(tally.total), num(tally.total / tally.transactions, 2),
                       str(tally.retries), num(n / seconds, 0), num(chunks[0], 2),
                       num(median, 2), num(chunks[-1], 2),
                       f"{seconds / (len(chunks) * median):.2f}", "yes" if ok else "NO"])
    table.notes.append(f"commands: {tally.describe()}")
    _goals(table, chunks, median, seconds)
    if not ok:
        raise CheckFailed(f"case 5: invoiced {invoice.total} for {invoice.conversations} "
                           f"conversations ({billed} billed), expected {expected} for {n}")
    return table


def _goals(table: Table, chunks: list[float], median: float, seconds: float) -> None:
    linear = seconds / (len(chunks) * median)
    table.notes.append(
        f"Goal, the whole run within {GOAL}x of {len(chunks)} chunks at the median chunk's time:"
        f" {'met' if linear <= GOAL else 'NOT met'} ({linear:.2f}x).")
    steady = chunks[-1] / chunks[0]
    table.notes.append(
        f"Goal, the last chunk within {GOAL}x of the first: "
        f"{'met' if steady <= GOAL else 'NOT met'} ({chunks[-1]:.2f} s against {chunks[0]:.2f} s"
        f", {steady:.2f}x). The first transaction reads the whole period, in one pass: its chunk "
        "(no draft yet says how densely the conversations lie), the malformed ones and a bound "
        "of the period's usage (count, earliest start, latest end: an overflow is refused "
        "before anything commits); later chunks read a stretch of end times sized from the "
        "chunks before.")
    if len(chunks) > 2:
        second = chunks[-1] / chunks[1]
        table.notes.append(f"The last chunk against the second (the first that reads a stretch):"
                           f" {second:.2f}x; slowest chunk {max(chunks[1:]):.2f} s, fastest "
                           f"{min(chunks[1:]):.2f} s.")
