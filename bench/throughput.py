"""Case 2: invoice run throughput over many orgs, sync and async.

Sync is the invoice run operators use (`invoices.run_period`, one org at a time); async is
`AsyncBilling` with a pool of concurrent tasks over the same orgs. They take turns in four
rounds, sync, async, async, sync, each on its own freshly seeded database of half the orgs: an
engine that slows down over a run (its files grow, it writes back what the seeding wrote)
weighs on both alike, where one run of each would charge the drift to the second. Listing the
orgs is counted as part of a round in both. A round that outlasts its budget is cut after the
org in progress, and the notes say how many were invoiced.

Then, per invoice: sync and async take one org each in turn on one database, one call at a
time, so the difference in wall and client CPU time is the async client's own cost.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

from bench import seed
from bench.cases import MAX_DOCS_PER_TRANSACTION, Bench, CheckFailed
from bench.counting import CommandCounter, Tally
from bench.report import Table, num
from billing import AsyncBilling, Billing
from billing.invoice_runs import OrgResult, Outcome

HEADERS = ["run", "rounds", "orgs/round", "conversations/org", "invoices", "seconds", "invoices/s",
           "commands/invoice", "retries", "write conflicts"]
ROUNDS = ("sync", "async", "async", "sync")
PAIRED_ORGS = 200  # orgs of the per-invoice comparison, at most


@dataclass
class RunOutcome:
    invoices: int = 0
    total: int = 0
    seconds: float = 0.0
    cut: bool = False
    done_at: list[float] = field(default_factory=list)  # seconds into the round, per invoice

    @property
    def rate(self) -> float:
        return _rate(self.invoices, self.seconds)

    def fifths(self) -> tuple[float, float] | None:
        """Invoices/s in the round's first and last fifth of its invoices (None: too few)."""
        k = len(self.done_at) // 5
        if k < 2:
            return None
        first, last = self.done_at[k - 1], self.done_at[-1] - self.done_at[-k - 1]
        return _rate(k, first), _rate(k, last)


@dataclass
class Mode:
    """The rounds of one mode, added up."""
    label: str
    outcomes: list[RunOutcome] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)

    @property
    def invoices(self) -> int:
        return sum(o.invoices for o in self.outcomes)

    @property
    def seconds(self) -> float:
        return sum(o.seconds for o in self.outcomes)

    @property
    def rate(self) -> float:
        return _rate(self.invoices, self.seconds)

    def add(self, outcome: RunOutcome, tally: Tally) -> None:
        self.outcomes.append(outcome)
        self.tally.add(tally)


def _rate(invoices: int, seconds: float) -> float:
    return invoices / seconds if seconds else float("nan")


class _Cut(Exception):
    """Stops a sync run that outlasted the budget (raised from its progress callback)."""


def run(bench: Bench) -> Table:
    table = Table(2, "Invoice run throughput", HEADERS)
    orgs = max(1, bench.sizes.run_orgs // 2)
    modes = {"sync": Mode("sync, run_period"),
             "async": Mode(f"async, {bench.sizes.concurrency} tasks")}
    runners = {"sync": _sync, "async": _async}
    rounds: list[str] = []
    for number, name in enumerate(ROUNDS, 1):
        mode = modes[name]
        with bench.database("runs") as db_name:
            seeder = bench.engine.client()
            with seeder:
                seeding = Billing(seeder, database=db_name)
                seeding.setup()
                bench.log(f"case 2: round {number}, seeding {orgs:,} orgs for {mode.label}")
                expected = seed.orgs_with_conversations(
                    seeding, orgs, bench.sizes.run_conversations, bench.period)
            bench.log(f"case 2: round {number}, {mode.label}")
            outcome, tally = runners[name](bench, db_name)
        if not outcome.cut and outcome.total != expected:
            raise CheckFailed(f"{mode.label}: invoiced {outcome.total}, expected {expected}")
        mode.add(outcome, tally)
        cut = f", cut after {outcome.invoices:,} of {orgs:,} orgs" if outcome.cut else ""
        ends = outcome.fifths()
        drift = f" ({ends[0]:.1f} in its first fifth, {ends[1]:.1f} in its last)" if ends else ""
        rounds.append(f"{number}. {name} {outcome.rate:.1f}{drift}{cut}")
    for mode in modes.values():
        table.rows.append(_row(bench, mode, orgs))
        table.notes.append(f"{mode.label}: {mode.tally.describe()}")
    table.notes.append(f"Invoices/s by round, in order (budget {bench.sizes.budget_s / 2:.0f} s "
                       f"each): {'; '.join(rounds)}. The first and last fifths show whether an "
                       "invoice costs more as the invoices before it pile up (each round starts "
                       "on a database with none).")
    sync, asynchronous = modes["sync"].rate, modes["async"].rate
    table.notes.append(f"Goal, async at least matches sync: "
                       f"{'met' if asynchronous >= sync else 'NOT met'} ({asynchronous:.1f} "
                       f"against {sync:.1f} invoices/s, {asynchronous / sync:.2f}x, on "
                       f"{bench.engine.name}).")
    table.notes.append(_per_invoice(bench))
    if bench.engine.name.startswith("SecantusDB"):
        table.notes.append(
            "On SecantusDB concurrent transactions queue rather than overlap: before each "
            "transaction statement and commit its registry takes every open transaction's lock "
            "in turn, so a statement waits for the one any other transaction is running, and "
            "many at once run slower than one after another. So billing admits one transaction "
            "at a time per instance there (max_concurrent_transactions, detected from the "
            "server): the tasks take turns in the client, and async can at best match sync, "
            "less what its client spends more per invoice (above).")
    return table


def _row(bench: Bench, mode: Mode, orgs: int) -> list[str]:
    per_invoice = mode.tally.total / mode.invoices if mode.invoices else float("nan")
    return [mode.label, str(len(mode.outcomes)), num(orgs),
            num(bench.sizes.run_conversations), num(mode.invoices), num(mode.seconds, 1),
            num(mode.rate, 1), num(per_invoice, 2), str(mode.tally.retries),
            str(mode.tally.write_conflicts)]


def _sync(bench: Bench, db_name: str) -> tuple[RunOutcome, Tally]:
    out, counter = RunOutcome(), CommandCounter()
    deadline = time.monotonic() + bench.sizes.budget_s / 2  # a round's budget

    def progress(done: int, total: int, result: OrgResult) -> None:
        if result.outcome is not Outcome.INVOICED or result.invoice is None:
            raise CheckFailed(f"org {result.org_id}: {result.outcome.value} {result.error}")
        out.invoices, out.total = done, out.total + result.invoice.total
        out.done_at.append(time.perf_counter() - started)
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
    deadline = time.monotonic() + bench.sizes.budget_s / 2  # a round's budget
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
    period, started = bench.period, time.perf_counter()
    orgs = [doc["_id"] async for doc in b.database.orgs.find({}, {"_id": 1}).sort("_id", 1)]

    async def worker() -> None:
        while orgs:
            if time.monotonic() > deadline:
                out.cut = True
                return
            invoice = await b.invoices.create_for_period(orgs.pop(), period.start, period.end)
            out.invoices, out.total = out.invoices + 1, out.total + invoice.total
            out.done_at.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(bench.sizes.concurrency)))


def _per_invoice(bench: Bench) -> str:
    """Sync and async invoicing one org each in turn on one database, one call at a time (no
    concurrency, no drift between them): the medians of wall and client CPU time per invoice."""
    orgs = min(PAIRED_ORGS, bench.sizes.run_orgs)
    with bench.database("paired") as db_name:
        with bench.engine.client() as client:
            b = Billing(client, database=db_name,
                        max_docs_per_transaction=MAX_DOCS_PER_TRANSACTION)
            b.setup()
            bench.log(f"case 2: seeding {orgs:,} orgs for sync and async in turn")
            seed.orgs_with_conversations(b, orgs, bench.sizes.run_conversations, bench.period)
            ids = [d["_id"] for d in b.database.orgs.find({}, {"_id": 1}).sort("_id", 1)]
            bench.log("case 2: sync and async in turn, per invoice")
            wall, cpu = asyncio.run(_in_turn(bench, db_name, b, ids))
    sync_ms, async_ms = statistics.median(wall["sync"]), statistics.median(wall["async"])
    sync_cpu, async_cpu = statistics.median(cpu["sync"]), statistics.median(cpu["async"])
    return (f"Per invoice, sync and async taking one org each in turn ({orgs:,} orgs, one call "
            f"at a time): wall {sync_ms:.1f} ms sync, {async_ms:.1f} ms async "
            f"({async_ms - sync_ms:+.1f} ms); client CPU {sync_cpu:.1f} ms sync, "
            f"{async_cpu:.1f} ms async ({async_cpu - sync_cpu:+.1f} ms).")


async def _in_turn(bench: Bench, db_name: str, b: Billing, ids: list[object]
                   ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    period = bench.period
    wall: dict[str, list[float]] = {"sync": [], "async": []}
    cpu: dict[str, list[float]] = {"sync": [], "async": []}
    client = bench.engine.async_client()
    try:
        ab = AsyncBilling(client, database=db_name,
                          max_docs_per_transaction=MAX_DOCS_PER_TRANSACTION)
        await ab.setup()
        for i, org_id in enumerate(ids):
            mode = "sync" if i % 2 == 0 else "async"
            started, used = time.perf_counter(), time.process_time()
            if mode == "sync":
                b.invoices.create_for_period(org_id, period.start, period.end)
            else:
                await ab.invoices.create_for_period(org_id, period.start, period.end)
            wall[mode].append(1000 * (time.perf_counter() - started))
            cpu[mode].append(1000 * (time.process_time() - used))
    finally:
        await client.close()
    return wall, cpu
