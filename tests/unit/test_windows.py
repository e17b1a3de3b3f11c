"""Bounded billing's stretches of end times, run against an in-memory collection.

The reads are done here as the service does them (`queries.Window`: the chunk after the draft's
resume key in its stretch, then the malformed ones in `malformed_range`); each plan is
committed into the next snapshot, its conversations marked. Whatever the density of the
conversations, each well-formed one is billed once and the finished invoice counts every
malformed one of the period.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.adapters import queries
from billing.domain.models import Invoice, InvoiceStatus, Org, ResumeKey
from billing.plans import invoices as invoice_plans
from tests.unit.factories import NOW, OCT, Doc, org, snapshot


def key(doc: Doc) -> tuple[Any, ObjectId]:
    return doc["ended_at"], doc["_id"]


def read(store: list[Doc], inv: Invoice | None, limit: int) -> tuple[queries.Window, Doc]:
    """What the invoices repository's `_read_chunk` reads, from `store`."""
    window = queries.Window.of(OCT, inv.resume_after if inv is not None else None)
    unbilled = sorted((d for d in store if d["line_item_id"] is None), key=key)
    chunk = [d for d in unbilled if window.start <= d["ended_at"] < window.end
             and queries.well_formed(d)
             and (window.after is None or key(d) > window.after)][:limit + 1]
    start, end = window.malformed_range(OCT, chunk, limit)
    bad = [d for d in unbilled if not queries.well_formed(d) and start <= d["ended_at"] < end]
    malformed = [{"_id": None, "n": len(bad),
                  "keys": [{"i": d["_id"], "e": d["ended_at"]} for d in bad]}] if bad else []
    return window, {"chunk": chunk, "malformed": malformed, "window": window,
                    "malformed_range": (start, end)}


def bill_all(owner: Org, store: list[Doc], limit: int) -> tuple[Invoice, int]:
    inv: Invoice | None = None
    steps = 0
    while True:
        steps += 1
        assert steps < 10_000
        window, reads = read(store, inv, limit)
        snap = {**snapshot(owner, inv=inv), **reads}
        plan = invoice_plans.bill_chunk(snap, org_id=ObjectId(owner.id), period=OCT,
                                        supplement=0, limit=limit, finalize=True, now=NOW)
        for doc in reads["chunk"][:limit]:  # the plan's marks: its well-formed ones
            if queries.well_formed(doc):
                doc["line_item_id"] = "billed"
        if inv is not None and plan.result.resume_after is not None:
            assert plan.result.resume_after.ended_at >= window.start  # it only moves on
        inv = plan.result
        if plan.done:
            return inv, steps
        assert inv.status is InvoiceStatus.DRAFT and inv.resume_after is not None


@settings(max_examples=60, deadline=None)
@given(limit=st.integers(1, 6), bursts=st.lists(
    st.tuples(st.integers(0, 30 * 24 * 60 - 1), st.integers(1, 15), st.integers(0, 3)),
    min_size=1, max_size=6))
def test_every_well_formed_conversation_is_billed_once_whatever_the_density(
    limit: int, bursts: list[tuple[int, int, int]]
) -> None:
    owner = org()
    store: list[Doc] = []
    for minute, good, bad in bursts:
        end = OCT.start + timedelta(minutes=minute)
        for i in range(good):
            store.append({"_id": ObjectId(), "started_at": end - timedelta(seconds=i * 7),
                          "ended_at": end + timedelta(seconds=i % 3), "line_item_id": None})
        for _ in range(bad):  # starts after it ends: malformed
            store.append({"_id": ObjectId(), "started_at": end + timedelta(minutes=1),
                          "ended_at": end, "line_item_id": None})
    wanted = [d for d in store if queries.well_formed(d)]

    inv, steps = bill_all(owner, store, limit)

    assert inv.status is InvoiceStatus.OPEN and inv.resume_after is None
    assert inv.conversations == len(wanted)
    assert all(d["line_item_id"] is not None for d in wanted)
    assert inv.skipped_malformed == len(store) - len(wanted)
    # Stretches that hold none grow 16-fold (16^8 ms is more than a month), so a gap, however
    # long, takes a bounded number of steps: after each burst, and after each chunk (whose
    # stretch may shrink to a millisecond when its conversations share their end times).
    chunks = -(-len(wanted) // limit)
    assert steps <= len(wanted) + 9 * (chunks + len(bursts) + 1)


def test_a_stretch_within_a_quarter_stretch_of_the_period_end_reads_to_the_end() -> None:
    """Rather than leave a sliver for a transaction of its own; a stretch that ends further
    from the end leaves at least a quarter of one, most of a chunk."""
    def end_after(left: timedelta) -> datetime:
        return queries.Window.of(OCT, ResumeKey(
            ended_at=OCT.end - left, id=str(ObjectId()), span_ms=4 * 3_600_000)).end

    assert end_after(timedelta(hours=5)) == OCT.end  # a stretch of 4 h leaves 1 h: read it
    beyond = timedelta(hours=5, milliseconds=1)
    assert end_after(beyond) == OCT.end - beyond + timedelta(hours=4)
    assert end_after(timedelta(hours=9)) == OCT.end - timedelta(hours=5)
    assert queries.Window.of(OCT, ResumeKey(
        ended_at=OCT.start, id=str(ObjectId()), span_ms=3_600_000)).end == \
        OCT.start + timedelta(hours=1)


def test_an_empty_stretch_before_the_end_moves_the_key_to_its_end_and_grows_16_fold() -> None:
    owner = org()
    first = bill_all_first_chunk(owner)
    window = queries.Window.of(OCT, first.resume_after)
    reads: Doc = {"chunk": [], "malformed": []}
    snap = {**snapshot(owner, inv=first), **reads, "window": window,
            "malformed_range": window.malformed_range(OCT, [], 2)}

    plan = invoice_plans.bill_chunk(snap, org_id=ObjectId(owner.id), period=OCT, supplement=0,
                                    limit=2, finalize=True, now=NOW)

    assert not plan.done and plan.result.resume_after is not None
    assert first.resume_after is not None
    assert plan.result.resume_after.ended_at == window.end - queries.MS
    assert plan.result.resume_after.id == str(queries.MAX_ID)
    assert plan.result.resume_after.span_ms == 16 * ((window.end - window.start) // queries.MS)
    assert plan.result.skipped_malformed == first.skipped_malformed


def bill_all_first_chunk(owner: Org) -> Invoice:
    store = [{"_id": ObjectId(), "started_at": OCT.start + timedelta(minutes=i),
              "ended_at": OCT.start + timedelta(minutes=i, seconds=5), "line_item_id": None}
             for i in range(3)]
    _, reads = read(store, None, 2)
    plan = invoice_plans.bill_chunk({**snapshot(owner), **reads}, org_id=ObjectId(owner.id),
                                    period=OCT, supplement=0, limit=2, finalize=True, now=NOW)
    assert not plan.done
    return plan.result
