"""Case 2: invoice run throughput over many orgs, sync and async.

Sync is the invoice run operators use (`invoices.run_period`, one org at a time); async is
`AsyncBilling` with a pool of concurrent tasks over the same orgs. Each runs on its own freshly
seeded database; listing the orgs is counted as part of the run in both. A run that outlasts the
budget is cut after the org in progress, and the row says how many were invoiced.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bench import seed
from bench.cases import MAX_DOCS_PER_TRANSACTION, Bench, CheckFailed
from bench.counting import CommandCounter, Tally
from bench.report import Table, num
from billing import AsyncBilling, Billing
from billing.invoice_runs import OrgResult, Outcome

HEADERS = ["run", "orgs", "conversations/org", "invoices", "seconds", "invoices/s",
           "commands/invoice", "retries", "write conflicts"]


@dataclass
class RunOutcome:
    invoices: int = 0
    total: int = 0
    seconds: float = 0.0
    cut: bool = False


class _Cut(Exception):
    """Stops a sync run that outlasted the budget (raised from its progress callback)."""


def run(bench: Bench) -> Table:
    table = Table(2, "Invoice run throughput", HEADERS)
    for label, runner in [("sync, run_period", _sync),
                          (f"async, {bench.sizes.concurrency} tasks", _async)]:
        with bench.database("runs") as db_name:
            seeder = bench.engine.client()
            with seeder:
                seeding = Billing(seeder, database=db_name)
                seeding.setup()
                bench.log(f"case 2: seeding {bench.sizes.run_orgs:,} orgs for {label}")
                expected = seed.orgs_with_conversations(
                    seeding, bench.sizes.run_orgs, bench.sizes.run_conversations, bench.period)
            bench.log(f"case 2: {label}")
            outcome, tally = runner(bench, db_name)
        if not outcome.cut and outcome.total != expected:
            raise CheckFailed(f"{label}: invoiced {outcome.total}, expected {expected}")
        table.rows.append(_row(bench, label, outcome, tally))
        if outcome.cut:
            table.notes.append(f"{label}: cut after {outcome.invoices:,} of "
                               f"{bench.sizes.run_orgs:,} orgs "
                               f"(budget {bench.sizes.budget_s:.0f} s)")
        table.notes.append(f"{label}: {tally.describe()}")
    rates = [float(r[HEADERS.index("invoices/s")].replace(",", "")) for r in table.rows]
    if len(rates) == 2:
        table.notes.append(f"Goal, async at least matches sync: "
                           f"{'met' if rates[1] >= rates[0] else 'NOT met'} ({rates[1]:.1f} "
                           f"against {rates[0]:.1f} invoices/s, on {bench.engine.name}).")
    if bench.engine.name.startswith("SecantusDB"):
        table.notes.append(
            "On SecantusDB concurrent transactions queue rather than overlap: before each "
            "transaction statement and commit its registry takes every open transaction's lock "
            "in turn, so a statement waits for the one any other transaction is running, and "
            "many at once run slower than one after another. So billing admits one transaction "
            "at a time per instance there (max_concurrent_transactions, detected from the "
            "server): the tasks take turns in the client, and async can at best match sync.")
    return table


def _row(bench: Bench, label: str, o: RunOutcome, tally: Tally) -> list[str]:
    per_invoice = tally.total / o.invoices if o.invoices else float("nan")
    return [label, num(bench.sizes.run_orgs), num(bench.sizes.run_conversations),
            num(o.invoices), num(o.seconds, 1), num(o.invoices / o.seconds, 1),
            num(per_invoice, 2), str(tally.retries), str(tally.write_conflicts)]


def _sync(bench: Bench, db_name: str) -> tuple[RunOutcome, Tally]:
    out, counter = RunOutcome(), CommandCounter()
    deadline = time.monotonic() + bench.sizes.budget_s

    def progress(done: int, total: int, result: OrgResult) -> None:
        if result.outcome is not Outcome.INVOICED or result.invoice is None:
            raise CheckFailed(f"org {result.org_id}: {result.outcome.value} {result.error}")
        out.invoices, out.total = done, out.total + result.invoice.total
        if done < total and time.monotonic() > deadline:
            raise _Cut

    with bench.engine.client(counter) as client:
        b = Billing(client, database=db_name, max_docs_per_transaction=MAX_DOCS_PER_TRANSACTION)
        b.setup()  # idempotent; checks the server once, as a long-lived process has
        with counter.counting() as tally:
            started = time.perf_counter()
            try:
                b.invoices.run_period(bench.period, progress=progress)
            except _Cut:
                out.cut = True
            out.seconds = time.perf_counter() - started
    return out, tally


def _async(bench: Bench, db_name: str) -> tuple[RunOutcome, Tally]:
    return asyncio.run(_async_run(bench, db_name))


async def _async_run(bench: Bench, db_name: str) -> tuple[RunOutcome, Tally]:
    out, counter = RunOutcome(), CommandCounter()
    deadline = time.monotonic() + bench.sizes.budget_s
    client = bench.engine.async_client(counter)
    try:
        b = AsyncBilling(client, database=db_name,
                         max_docs_per_transaction=MAX_DOCS_PER_TRANSACTION)
        await b.setup()
        with counter.counting() as tally:
            started = time.perf_counter()
            await _pool(bench, b, out, deadline)
            out.seconds = time.perf_counter() - started
    finally:
        await client.close()
    return out, tally


async def _pool(bench: Bench, b: AsyncBilling, out: RunOutcome, deadline: float) -> None:
    """`concurrency` tasks taking the orgs one by one until none are left (or the budget is)."""
    period = bench.period
    orgs = [doc["_id"] async for doc in b.database.orgs.find({}, {"_id": 1}).sort("_id", 1)]

    async def worker() -> None:
        while orgs:
            if time.monotonic() > deadline:
                out.cut = True
                return
            invoice = await b.invoices.create_for_period(orgs.pop(), period.start, period.end)
            out.invoices, out.total = out.invoices + 1, out.total + invoice.total

    await asyncio.gather(*(worker() for _ in range(bench.sizes.concurrency)))
