"""Case 1: one invoice for one org with N conversations, ours against the naive baseline and
against the engine's floor (`bench/floor.py`: the same writes in one raw bulkWrite).

All run on the same engine, on the raw connection and through the delay proxy; each time is the
median of the repetitions, the order of the contenders rotating, and ours over the floor the
median of the ratios of the repetitions (ours and the floor alone repeat more: `floor_extra`).
Only the invoice creation is counted and timed, never the seeding. The totals of ours and naive
must equal the expected one, and the floor must mark every conversation.
"""

from __future__ import annotations

import statistics
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from bson import ObjectId
from pymongo import MongoClient

from bench import floor, naive, seed
from bench.cases import MAX_DOCS_PER_TRANSACTION, Bench, CheckFailed
from bench.counting import CommandCounter, Tally
from bench.report import Table, num
from billing import Billing
from billing.adapters import queries


@dataclass
class Measured:
    ours: Tally
    naive: Tally
    ours_s: float
    naive_s: float
    floor_s: float | None = None  # None: the engine has no client-level bulkWrite
    reads_s: float | None = None  # ours' read of conversations alone, on an org of their own
    # Past max_docs_per_transaction (raw connection only): the floor's writes split into the
    # transactions of ours' bounded run, and ours allowed one transaction like the floor.
    chunked_floor_s: float | None = None
    whole_s: float | None = None
    reps: int = 1  # of ours and the floors (naive may have run fewer)
    # Ours' time over a floor's ("floor", "chunked_floor") in each repetition, where the two
    # ran back to back (none where that floor did not run).
    ours_over_by_run: dict[str, list[float]] = field(default_factory=dict)
    whole_over_floor: float | None = None

    @property
    def ours_over(self) -> dict[str, float]:
        """Ours over each floor that ran: the median of the ratios of the repetitions, rather
        than a ratio of medians taken across the run."""
        return {over: statistics.median(r) for over, r in self.ours_over_by_run.items() if r}

    @property
    def speed_up(self) -> float:
        return self.naive_s / self.ours_s

    @property
    def over_floor(self) -> float | None:
        return self.ours_over.get("floor")


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
    floor_db: str  # conversations indexed as billing's: the floor's writes and the reads alone
    whole: Billing | None = None  # ours with no bound on a transaction's conversations

    def measure(self, n: int, reps: int, extra: int = 0) -> Measured:
        """`reps` repetitions of every contender, then `extra` of all but naive; in each, the
        contenders run back to back on fresh orgs, their order rotating."""
        period = self.bench.period
        everyone = ["ours", "naive"] + (["floor"] if self.bench.engine.client_bulk_write else [])
        if n > MAX_DOCS_PER_TRANSACTION and self.whole is not None:
            everyone += ["whole"] + (["chunked_floor"] if "floor" in everyone else [])
        tallies: dict[str, list[Tally]] = {who: [] for who in everyone}
        seconds: dict[str, list[float]] = {who: [] for who in everyone}
        reads: list[float] = []
        for rep in range(reps + extra):
            who_runs = everyone if rep < reps else [w for w in everyone if w != "naive"]
            org_id, expected = seed.org_with_conversations(self.seeding, n, period)
            floor_org, reads_org = ObjectId(), ObjectId()
            for other in (floor_org, reads_org):
                seed.insert(self.seeder[self.floor_db].conversations,
                            seed.conversations(other, n, period))
            calls = {"ours": partial(self._ours, self.ours, org_id),
                     "floor": partial(self._floor, floor_org, n, expected)}
            if "naive" in who_runs:
                naive_org = ObjectId()
                seed.insert(self.seeder[self.naive_db].conversations,
                            seed.conversations(naive_org, n, period))
                calls["naive"] = partial(self._naive, naive_org)
            if "whole" in who_runs:
                assert self.whole is not None
                whole_org, _ = seed.org_with_conversations(self.seeding, n, period)
                calls["whole"] = partial(self._ours, self.whole, whole_org)
            if "chunked_floor" in who_runs:
                chunked_org, docs = ObjectId(), seed.conversations(ObjectId(), n, period)
                for doc in docs:
                    doc["org_id"] = chunked_org
                seed.insert(self.seeder[self.floor_db].conversations, docs)
                calls["chunked_floor"] = partial(
                    self._floor, chunked_org, n, expected,
                    floor.cuts_every(docs, MAX_DOCS_PER_TRANSACTION))
            if "floor" in who_runs:
                started = time.perf_counter()
                self._reads(reads_org)
                reads.append(time.perf_counter() - started)
            order = who_runs[rep % len(who_runs):] + who_runs[:rep % len(who_runs)]
            for who in order:
                with self.counter.counting() as tally:
                    started = time.perf_counter()
                    total = calls[who]()
                    seconds[who].append(time.perf_counter() - started)
                if total != expected:
                    raise CheckFailed(f"{who} invoiced {total} for {n} conversations, "
                                       f"expected {expected}: the comparison is void")
                tallies[who].append(tally)

        def median(who: str) -> float | None:
            return statistics.median(seconds[who]) if seconds.get(who) else None

        def by_run(who: str, over: str) -> list[float]:
            """`who`'s time over `over`'s in each repetition (none if either did not run)."""
            if not seconds.get(who) or not seconds.get(over):
                return []
            return [a / b for a, b in zip(seconds[who], seconds[over], strict=True)]

        def paired(who: str, over: str) -> float | None:
            """The median over repetitions of `who`'s time over `over`'s in the same one."""
            ratios = by_run(who, over)
            return statistics.median(ratios) if ratios else None

        return Measured(max(tallies["ours"], key=lambda t: t.total),
                        max(tallies["naive"], key=lambda t: t.total),
                        statistics.median(seconds["ours"]), statistics.median(seconds["naive"]),
                        median("floor"),
                        statistics.median(reads) if reads else None,
                        median("chunked_floor"), median("whole"),
                        reps=reps + extra,
                        ours_over_by_run={over: by_run("ours", over)
                                          for over in ("floor", "chunked_floor")},
                        whole_over_floor=paired("whole", "floor"))

    def _ours(self, billing: Billing, org_id: str) -> int:
        period = self.bench.period
        return billing.invoices.create_for_period(org_id, period.start, period.end).total

    def _reads(self, org_id: ObjectId) -> None:
        """The read of conversations a one-chunk invoice makes (the chunk, which pricing needs,
        with the malformed ones), on its own."""
        period, db = self.bench.period, self.client[self.floor_db]
        db.conversations.aggregate(queries.chunk_facet(
            org_id, period, queries.Window.of(period, None), limit=MAX_DOCS_PER_TRANSACTION,
            bound=True)).to_list()

    def _floor(self, org_id: ObjectId, n: int, expected: int,
               cuts: list[Any] | None = None) -> int:
        """The floor prices nothing: it stands for the expected total when it marked all n."""
        marked = floor.write_invoice(self.client, self.floor_db, org_id, self.bench.period, cuts)
        return expected if marked == n else -marked

    def _naive(self, org_id: ObjectId) -> int:
        return naive.create_invoice(self.client, self.naive_db, org_id, self.bench.period,
                                    per_conversation=seed.PER_CONVERSATION,
                                    per_started_minute=seed.PER_STARTED_MINUTE)


UNBOUNDED = 100_000  # ours' largest `max_docs_per_transaction`: one transaction per invoice here


def run(bench: Bench) -> Table:
    delayed = [False, True] if bench.engine.proxy_port else [False]
    rtt = f"{bench.delay_ms:g} ms RTT"
    with_floor = bench.engine.client_bulk_write
    headers = ["conversations", "ours: commands/invoice", "ours: transactions",
               "ours: commands/transaction", "naive: commands/invoice"]
    for label in ["raw", *([rtt] if len(delayed) == 2 else [])]:
        headers += [f"{label}: ours ms", f"{label}: naive ms", f"{label}: speed-up"]
        headers += [f"{label}: floor ms", f"{label}: ours / floor"] if with_floor else []
    table = Table(1, "Invoice creation for one org: ours against the naive flow and the "
                  "engine's floor", headers)
    counter = CommandCounter()
    with ExitStack() as stack:
        ours_db = stack.enter_context(bench.database("creation"))
        naive_db = stack.enter_context(bench.database("creation_naive"))
        floor_db = stack.enter_context(bench.database("creation_floor"))
        seeder = stack.enter_context(bench.engine.client())
        seeding = Billing(seeder, database=ours_db)
        seeding.setup()
        naive.setup(seeder[naive_db])
        floor.setup(seeder[floor_db])
        subjects = []
        for is_delayed in delayed:
            client = stack.enter_context(bench.engine.client(counter, delayed=is_delayed))
            ours = Billing(client, database=ours_db,
                           max_docs_per_transaction=MAX_DOCS_PER_TRANSACTION)
            ours.setup()  # checks the server once per instance: that `hello` is not counted
            whole = None
            if not is_delayed:
                whole = Billing(client, database=ours_db, max_docs_per_transaction=UNBOUNDED)
                whole.setup()
            subjects.append(Subject(bench, counter, seeder, seeding, client, ours, naive_db,
                                    floor_db, whole))
            subjects[-1].measure(10, 1)  # warm-up (connections, caches): discarded
        _goals(bench, _sizes(bench, subjects, table), table)
    return table


def _sizes(bench: Bench, subjects: list[Subject], table: Table) -> dict[int, list[Measured]]:
    measured: dict[int, list[Measured]] = {}
    per_conversation = 0.0  # seconds per conversation of one repetition, from the last size
    for n, reps in bench.sizes.creation.items():
        extra = bench.sizes.floor_extra.get(n, 0)
        if (projected := per_conversation * n * (reps + extra)) > bench.sizes.budget_s:
            table.notes.append(f"{n:,} conversations: not run, projected {projected:.0f} s "
                               f"(budget {bench.sizes.budget_s:.0f} s per size)")
            break
        bench.log(f"case 1: {n:,} conversations x {reps}" + (
            f", ours and the floor x {reps + extra} on the raw connection" if extra else ""))
        started = time.monotonic()
        # the extra repetitions on the raw connection only: the floor's goal is judged there
        results = measured[n] = [subject.measure(n, reps, extra if i == 0 else 0)
                                 for i, subject in enumerate(subjects)]
        per_conversation = (time.monotonic() - started) / (reps + extra) / n
        raw = results[0]
        row = [num(n), str(raw.ours.total), str(raw.ours.transactions),
               num(raw.ours.total / raw.ours.transactions, 1), str(raw.naive.total)]
        for m in results:
            row += [num(m.ours_s * 1000, 1), num(m.naive_s * 1000, 1), f"{m.speed_up:.1f}x"]
            if m.floor_s is not None and m.over_floor is not None:
                row += [num(m.floor_s * 1000, 1), f"{m.over_floor:.2f}x"]
        table.rows.append(row)
        table.notes.append(f"{n:,} conversations, {reps} run(s)" + (
                           f" and {extra} more of ours and the floors alone" if extra else "") +
                           ": ours sent "
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
    _floor_goal(measured, table)
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


FLOOR_GOAL = 1.25


def _floor_goal(measured: dict[int, list[Measured]], table: Table) -> None:
    """Ours within FLOOR_GOAL of the floor at 1,000 and 10,000 conversations (raw connection).

    Past max_docs_per_transaction ours bills in bounded transactions by design (a transaction
    holding every conversation of a large org would outlive MongoDB's transaction lifetime
    limit and its cache), so there the floor that does the same work is the same writes in the
    same transactions; ours in one transaction against the one-transaction floor is shown too."""
    sizes = [n for n in (1_000, 10_000) if n in measured and measured[n][0].floor_s is not None]
    if not sizes:
        return
    ratios, runs = {}, {}
    for n in sizes:
        m = measured[n][0]
        over = "chunked_floor" if "chunked_floor" in m.ours_over else "floor"
        ratios[n], runs[n] = m.ours_over[over], m.ours_over_by_run[over]
    shown = ", ".join(f"{r:.2f}x at {n:,} ({measured[n][0].reps} runs)"
                      for n, r in ratios.items())
    met = all(r <= FLOOR_GOAL for r in ratios.values())
    table.notes.append(f"Goal, ours within {FLOOR_GOAL}x of the floor (the same writes in the "
                       f"same transactions, raw client bulkWrites): {'met' if met else 'NOT met'}"
                       f" ({shown}). Each ratio is the median of the ratios of the runs, ours "
                       "and the floor back to back in each (ms are medians of their own); by "
                       "run: " + "; ".join(f"{', '.join(f'{r:.2f}' for r in runs[n])} at {n:,}"
                                          for n in sizes) + ".")
    for n in sizes:
        m = measured[n][0]
        assert m.floor_s is not None
        table.notes.append(
            f"{n:,} conversations: ours {m.ours_s * 1000:,.0f} ms = floor "
            f"{m.floor_s * 1000:,.0f} ms + {(m.ours_s - m.floor_s) * 1000:,.0f} ms for "
            f"{m.ours.total - 2 * m.ours.transactions} reads and "
            f"{m.ours.transactions - 1} more transactions (ours sent {m.ours.describe()}).")
        if m.chunked_floor_s is not None:
            table.notes.append(
                f"{n:,} conversations: the floor in ours' {m.ours.transactions} transactions "
                f"took {m.chunked_floor_s * 1000:,.0f} ms ({m.chunked_floor_s / m.floor_s:.2f}x "
                f"the floor in one); ours {m.ours_over['chunked_floor']:.2f}x that.")
        if m.whole_s is not None:
            table.notes.append(
                f"{n:,} conversations in one transaction (max_docs_per_transaction="
                f"{UNBOUNDED:,}): ours {m.whole_s * 1000:,.0f} ms, {m.whole_over_floor:.2f}x "
                "the one-transaction floor.")
        if m.reads_s is not None and n <= MAX_DOCS_PER_TRANSACTION:
            table.notes.append(
                f"{n:,} conversations: ours' read of conversations alone (the chunk pricing "
                f"needs, the malformed ones and the bound of the usage, in one pass), timed on "
                f"an org of its own, took {m.reads_s * 1000:,.0f} ms "
                f"({m.reads_s / m.floor_s:.2f}x the floor).")
