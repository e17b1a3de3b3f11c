"""Case 1: one invoice for one org with N conversations, ours against the naive baseline.

Both run on the same engine, on the raw connection and through the delay proxy; each time is the
median of the repetitions, ours and naive taking turns to go first. Only the invoice creation is
counted and timed, never the seeding. The totals of both must equal the expected one.
"""

from __future__ import annotations

import statistics
import time
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any

from bson import ObjectId
from pymongo import MongoClient

from bench import naive, seed
from bench.cases import MAX_DOCS_PER_TRANSACTION, Bench, CheckFailed
from bench.counting import CommandCounter, Tally
from bench.report import Table, num
from billing import Billing


@dataclass
class Measured:
    ours: Tally
    naive: Tally
    ours_s: float
    naive_s: float

    @property
    def speed_up(self) -> float:
        return self.naive_s / self.ours_s


@dataclass
class Subject:
    """Ours and the naive flow on one connection (raw or delayed), sharing one counter."""
    bench: Bench
    counter: CommandCounter
    seeder: MongoClient[dict[str, Any]]
    seeding: Billing
    client: MongoClient[dict[str, Any]]
    ours: Billing
    naive_db: str

    def measure(self, n: int, reps: int) -> Measured:
        period = self.bench.period
        tallies: dict[str, list[Tally]] = {"ours": [], "naive": []}
        seconds: dict[str, list[float]] = {"ours": [], "naive": []}
        for rep in range(reps):
            org_id, expected = seed.org_with_conversations(self.seeding, n, period)
            naive_org = ObjectId()
            seed.insert(self.seeder[self.naive_db].conversations,
                        seed.conversations(naive_org, n, period))
            calls = {"ours": partial(self._ours, org_id), "naive": partial(self._naive, naive_org)}
            for who in (["ours", "naive"] if rep % 2 == 0 else ["naive", "ours"]):
                with self.counter.counting() as tally:
                    started = time.perf_counter()
                    total = calls[who]()
                    seconds[who].append(time.perf_counter() - started)
                if total != expected:
                    raise CheckFailed(f"{who} invoiced {total} for {n} conversations, "
                                       f"expected {expected}: the comparison is void")
                tallies[who].append(tally)
        return Measured(max(tallies["ours"], key=lambda t: t.total),
                        max(tallies["naive"], key=lambda t: t.total),
                        statistics.median(seconds["ours"]), statistics.median(seconds["naive"]))

    def _ours(self, org_id: str) -> int:
        period = self.bench.period
        return self.ours.invoices.create_for_period(org_id, period.start, period.end).total

    def _naive(self, org_id: ObjectId) -> int:
        return naive.create_invoice(self.client, self.naive_db, org_id, self.bench.period,
                                    per_conversation=seed.PER_CONVERSATION,
                                    per_started_minute=seed.PER_STARTED_MINUTE)


def run(bench: Bench) -> Table:
    delayed = [False, True] if bench.engine.proxy_port else [False]
    rtt = f"{bench.delay_ms:g} ms RTT"
    headers = ["conversations", "ours: commands/invoice", "ours: transactions",
               "ours: commands/transaction", "naive: commands/invoice",
               "raw: ours ms", "raw: naive ms", "raw: speed-up"]
    if len(delayed) == 2:
        headers += [f"{rtt}: ours ms", f"{rtt}: naive ms", f"{rtt}: speed-up"]
    table = Table(1, "Invoice creation for one org: ours against the naive flow", headers)
    counter = CommandCounter()
    with ExitStack() as stack:
        ours_db = stack.enter_context(bench.database("creation"))
        naive_db = stack.enter_context(bench.database("creation_naive"))
        seeder = stack.enter_context(bench.engine.client())
        seeding = Billing(seeder, database=ours_db)
        seeding.setup()
        naive.setup(seeder[naive_db])
        subjects = []
        for is_delayed in delayed:
            client = stack.enter_context(bench.engine.client(counter, delayed=is_delayed))
            ours = Billing(client, database=ours_db,
                           max_docs_per_transaction=MAX_DOCS_PER_TRANSACTION)
            ours.setup()  # checks the server once per instance: that `hello` is not counted
            subjects.append(Subject(bench, counter, seeder, seeding, client, ours, naive_db))
            subjects[-1].measure(10, 1)  # warm-up (connections, caches): discarded
        _goals(bench, _sizes(bench, subjects, table), table)
    return table


def _sizes(bench: Bench, subjects: list[Subject], table: Table) -> dict[int, list[Measured]]:
    measured: dict[int, list[Measured]] = {}
    per_conversation = 0.0  # seconds per conversation of one repetition, from the last size
    for n, reps in bench.sizes.creation.items():
        if (projected := per_conversation * n * reps) > bench.sizes.budget_s:
            table.notes.append(f"{n:,} conversations: not run, projected {projected:.0f} s "
                               f"(budget {bench.sizes.budget_s:.0f} s per size)")
            break
        bench.log(f"case 1: {n:,} conversations x {reps}")
        started = time.monotonic()
        results = measured[n] = [subject.measure(n, reps) for subject in subjects]
        per_conversation = (time.monotonic() - started) / reps / n
        raw = results[0]
        row = [num(n), str(raw.ours.total), str(raw.ours.transactions),
               num(raw.ours.total / raw.ours.transactions, 1), str(raw.naive.total)]
        for m in results:
            row += [num(m.ours_s * 1000, 1), num(m.naive_s * 1000, 1), f"{m.speed_up:.1f}x"]
        table.rows.append(row)
        table.notes.append(f"{n:,} conversations, {reps} run(s): ours sent "
                           f"{raw.ours.describe()}; naive sent {raw.naive.describe()}")
        if any(m.ours.commands != raw.ours.commands for m in results):
            table.notes.append(f"{n:,}: ours sent different commands through the proxy")
    return measured


def _goals(bench: Bench, measured: dict[int, list[Measured]], table: Table) -> None:
    """The issue's goals, checked against what was measured."""
    per_txn = {round(m[0].ours.total / m[0].ours.transactions, 2) for m in measured.values()}
    floor = 3 if bench.engine.client_bulk_write else 5
    n, largest = max(measured.items())
    table.notes.append(
        f"Goal, ours flat at {floor} or fewer commands per transaction: "
        f"{'met' if max(per_txn) <= floor else 'NOT met'} ({sorted(per_txn)}).")
    if n > MAX_DOCS_PER_TRANSACTION:
        table.notes.append(
            f"Past {MAX_DOCS_PER_TRANSACTION:,} conversations an invoice takes one transaction "
            f"per {MAX_DOCS_PER_TRANSACTION:,} (max_docs_per_transaction: bounded transactions, "
            f"by design), so {n:,} conversations took {largest[0].ours.transactions} "
            f"transactions, {largest[0].ours.total} commands.")
    naive_ok = all(m[0].naive.total == n + 5 for n, m in measured.items())
    table.notes.append(f"Naive at N + 5 commands: {'yes' if naive_ok else 'NO'} at every size.")
    if bench.added_rtt_ms is None or not (at := measured.get(1_000)) or len(at) < 2:
        return
    raw, slow = at
    table.notes.append(
        f"With the {bench.delay_ms:g} ms round trip (measured +{bench.added_rtt_ms:.2f} ms per "
        f"command) at 1,000 conversations, naive took {(slow.naive_s - raw.naive_s) * 1000:,.0f}"
        f" ms longer ({slow.naive.total:,} commands), ours "
        f"{(slow.ours_s - raw.ours_s) * 1000:,.0f} ms ({slow.ours.total} commands). Goal 10x "
        f"at 1,000 with the delay: {'met' if slow.speed_up >= 10 else 'not met'} "
        f"({slow.speed_up:.1f}x).")
