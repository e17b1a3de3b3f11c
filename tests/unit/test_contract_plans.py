"""Pure decisions about data that breaks the contract: what pricing may see, which conversations a
chunk marks, and the whole-period overflow bound. No database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from bson import ObjectId

from billing.adapters import queries, schema
from billing.domain.models import LineItemKind
from billing.domain.money import MAX_AMOUNT
from billing.errors import InvalidMoney, NothingToBill
from billing.plans import invoices as invoice_plans
from tests.unit.factories import NOW, OCT, conversations, invoice, line_item, org, snapshot


def test_well_formed_wants_one_date_at_each_end_in_order() -> None:
    start = OCT.start
    end = start + timedelta(minutes=1)
    assert queries.well_formed({"started_at": start, "ended_at": end})
    assert queries.well_formed({"started_at": start, "ended_at": start})
    for bad in ({"started_at": [start], "ended_at": end},
                {"started_at": start, "ended_at": [end]},
                {"started_at": end, "ended_at": start},
                {"started_at": "yesterday", "ended_at": end},
                {"ended_at": end}):
        assert not queries.well_formed(bad)


def test_pricing_never_sees_what_python_rejects_and_the_marks_exclude_it() -> None:
    owner = org()
    chunk = conversations(3)
    chunk[1]["started_at"] = [chunk[1]["started_at"]]  # an engine let an array through

    plan = invoice_plans.bill_chunk(snapshot(owner, chunk=chunk), org_id=ObjectId(owner.id),
                                    period=OCT, supplement=0, limit=10, finalize=True, now=NOW)

    assert plan.result.conversations == 2 and plan.result.skipped_malformed == 1
    [marks] = [w for w in plan.writes
               if w.collection == schema.CONVERSATIONS and w.op == "update_many"]
    assert marks.expect == 2
    assert marks.filter["_id"] == {"$nin": [chunk[1]["_id"]]}


def test_a_chunk_of_only_rejected_conversations_bills_nothing() -> None:
    owner = org()
    chunk = conversations(1)
    chunk[0]["ended_at"] = [chunk[0]["ended_at"]]
    with pytest.raises(NothingToBill):
        invoice_plans.bill_chunk(snapshot(owner, chunk=chunk), org_id=ObjectId(owner.id),
                                 period=OCT, supplement=0, limit=10, finalize=True, now=NOW)


def test_chunk_marks_exclude_malformed_ends_that_are_not_one_date() -> None:
    chunk = conversations(2)
    array_end = {"i": ObjectId(), "e": [chunk[0]["ended_at"], OCT.end + timedelta(days=3)]}
    later = {"i": ObjectId(), "e": OCT.end - timedelta(seconds=1)}
    base = queries.unbilled(ObjectId(), OCT)

    marks = queries.chunk_marks(base, chunk[-1], None,
                                {"n": 2, "keys": [array_end, later]})

    assert marks["_id"] == {"$nin": [array_end["i"]]}  # the later one is outside the range
    assert marks["ended_at"]["$lt"] == chunk[-1]["ended_at"] + timedelta(milliseconds=1)


def fits(snap: dict[str, object], n: int, minutes: int) -> None:
    invoice_plans.require_fits(snap, {"_id": None, "n": n, "minutes": float(minutes)},
                               org_id=ObjectId(str(snap["_id"])), period=OCT, supplement=0)


def test_require_fits_bounds_the_whole_period_at_the_org_prices() -> None:
    owner = org(per_conversation=MAX_AMOUNT // 4, per_started_minute=1)
    fits(snapshot(owner), 3, 10)
    fits(snapshot(owner), 4, MAX_AMOUNT - 4 * (MAX_AMOUNT // 4))  # exactly the largest
    with pytest.raises(InvalidMoney, match="nothing was written"):
        fits(snapshot(owner), 4, MAX_AMOUNT - 4 * (MAX_AMOUNT // 4) + 1)


def test_require_fits_uses_the_drafts_frozen_prices_and_names_the_draft() -> None:
    owner = org(per_conversation=1, per_started_minute=1)
    draft = invoice(owner)
    conv = line_item(draft, kind=LineItemKind.CONVERSATIONS, quantity=2,
                     unit_amount=MAX_AMOUNT // 4)
    draft = draft.model_copy(update={"line_items": (conv,), "subtotal": conv.amount,
                                     "total": conv.amount})
    fits(snapshot(owner, inv=draft), 1, 0)  # 3 at the frozen price
    with pytest.raises(InvalidMoney, match=f"draft {draft.id} is unchanged"):
        fits(snapshot(owner, inv=draft), 3, 0)  # 5 at the frozen price
