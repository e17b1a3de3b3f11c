"""Case 3: concurrent callers invoicing the same org and period at the same moment.

Threads (sync `Billing`, one shared client) and asyncio tasks (`AsyncBilling`) each start together,
once with the instance's default cap on transactions at once (one at a time on SecantusDB: the
callers take turns in the client) and once with none (`no cap`: their transactions meet in the
engine, as on MongoDB or from separate processes); the race is settled by the unique index on (org,
period) and the guarded writes, the losers retry with a fresh snapshot and get the winner's
invoice. Proof, read back from the database: exactly one invoice for the org and period, every
conversation linked exactly once, the expected total, and every caller handed the same invoice id.
"""

from __future__ import annotations

import asyncio
import threading
import time

from bson import ObjectId

from bench import seed
from bench.cases import MAX_DOCS_PER_TRANSACTION, Bench, CheckFailed
from bench.counting import CommandCounter, Tally
from bench.report import Table, num
from billing import AsyncBilling, Billing, Invoice

HEADERS = ["callers", "conversations", "first caller s", "last caller s", "retries",
           "write conflicts", "duplicate keys", "invoices in db", "distinct ids returned",
           "conversations billed", "total as expected"]
Finished = list[tuple[float, Invoice]]  # (seconds after the common start, what it returned)


def run(bench: Bench) -> Table:
    table = Table(3, "Contention: concurrent callers on the same org and period",
                  ["mode", *HEADERS])
    n, callers = bench.sizes.contention_conversations, bench.sizes.contention_callers
    with bench.database("contention") as db_name, bench.engine.client() as seeder:
        seeding = Billing(seeder, database=db_name)
        seeding.setup()
        for mode, race, cap in [("threads", _threads, None), ("asyncio tasks", _tasks, None),
                                ("threads, no cap", _threads, 0),
                                ("asyncio tasks, no cap", _tasks, 0)]:
            org_id, expected = seed.org_with_conversations(seeding, n, bench.period)
            bench.log(f"case 3: {callers} {mode}")
            finished, tally = race(bench, db_name, org_id, cap)
            db = seeding.database
            key = {"org_id": ObjectId(org_id), "period_start": bench.period.start,
                   "period_end": bench.period.end}
            invoices = db.invoices.count_documents(key)
            billed = db.conversations.count_documents(
                {"org_id": key["org_id"], "line_item_id": {"$ne": None}})
            ids = {inv.id for _, inv in finished}
            ok = all(inv.total == expected for _, inv in finished)
            times = [t for t, _ in finished]
            table.rows.append([mode, str(callers), num(n), num(min(times), 2), num(max(times), 2),
                               str(tally.retries), str(tally.write_conflicts),
                               str(tally.duplicate_keys), str(invoices), str(len(ids)),
                               num(billed), "yes" if ok else "NO"])
            if invoices != 1 or len(ids) != 1 or billed != n or not ok or len(finished) != callers:
                raise CheckFailed(f"case 3 ({mode}): the race was not settled to one invoice")
            table.notes.append(f"{mode}: {tally.describe()}")
    return table


def _threads(bench: Bench, db_name: str, org_id: str, cap: int | None
             ) -> tuple[Finished, Tally]:
    period, callers = bench.period, bench.sizes.contention_callers
    counter = CommandCounter()
    finished: Finished = []
    start: list[float] = []
    gate = threading.Barrier(callers, action=lambda: start.append(time.perf_counter()))
    with bench.engine.client(counter) as client:
        b = Billing(client, database=db_name, max_docs_per_transaction=MAX_DOCS_PER_TRANSACTION,
                    max_concurrent_transactions=cap)
        b.setup()  # idempotent; checks the server once, as a running service already has

        def call() -> None:
            gate.wait()
            invoice = b.invoices.create_for_period(org_id, period.start, period.end)
            finished.append((time.perf_counter() - start[0], invoice))

        threads = [threading.Thread(target=call, daemon=True) for _ in range(callers)]
        with counter.counting() as tally:
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=300)
    return finished, tally


def _tasks(bench: Bench, db_name: str, org_id: str, cap: int | None
           ) -> tuple[Finished, Tally]:
    async def race() -> tuple[Finished, Tally]:
        period, counter = bench.period, CommandCounter()
        client = bench.engine.async_client(counter)
        try:
            b = AsyncBilling(client, database=db_name,
                             max_docs_per_transaction=MAX_DOCS_PER_TRANSACTION,
                             max_concurrent_transactions=cap)
            await b.setup()

            async def call() -> tuple[float, Invoice]:
                invoice = await b.invoices.create_for_period(org_id, period.start, period.end)
                return time.perf_counter() - start, invoice

            with counter.counting() as tally:
                start = time.perf_counter()
                calls = [call() for _ in range(bench.sizes.contention_callers)]
                done = await asyncio.wait_for(asyncio.gather(*calls), timeout=300)
            return list(done), tally
        finally:
            await client.close()

    return asyncio.run(race())
