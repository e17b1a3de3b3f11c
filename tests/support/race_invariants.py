"""Invariants the concurrency and state-machine tests check on the whole database (sync pymongo).

    check_all(db)                 everything below, for `Billing.database` (timezone-aware)
    check_numbers_gapless(db)     finalised invoices of each org are numbered 1..n, n = invoice_seq
    check_defaults(db)            an org's default is an active method of that org
    check_paid(db)                paid: amount_paid == total, exactly one succeeded payment
    unbilled_closed(db, boundary) well-formed conversations that ended before `boundary`, unbilled

`check_invariants` (tests/support/billing_data.py) covers totals and conversation links.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from tests.support.billing_data import check_invariants


def check_all(db: Database[Any]) -> None:
    check_invariants(db)
    check_billed_once(db)
    check_numbers_gapless(db)
    check_defaults(db)
    check_paid(db)


def check_billed_once(db: Database[Any]) -> None:
    """No conversation is counted by two invoices: the conversations line items together claim
    exactly the billed conversations."""
    claimed = sum(li["quantity"] for li in db.line_items.find({"kind": "conversations"}))
    billed = db.conversations.count_documents({"line_item_id": {"$ne": None}})
    assert claimed == billed, (claimed, billed)
    per_item = Counter(c["line_item_id"] for c in db.conversations.find(
        {"line_item_id": {"$ne": None}}, {"line_item_id": 1}))
    items = {li["_id"]: li for li in db.line_items.find({"kind": "conversations"})}
    for item_id, n in per_item.items():
        assert item_id in items and items[item_id]["quantity"] == n, (item_id, n)


def check_numbers_gapless(db: Database[Any]) -> None:
    numbers: dict[Any, list[int]] = defaultdict(list)
    for inv in db.invoices.find({"number": {"$ne": None}}, {"org_id": 1, "number": 1}):
        numbers[inv["org_id"]].append(inv["number"])
    for org in db.orgs.find({}, {"invoice_seq": 1}):
        mine = sorted(numbers.pop(org["_id"], []))
        assert mine == list(range(1, len(mine) + 1)), (org["_id"], mine)
        assert org.get("invoice_seq", 0) == len(mine), (org, mine)
    assert not numbers, f"numbered invoices of missing orgs: {dict(numbers)}"
    for inv in db.invoices.find({"status": "draft"}):
        assert inv.get("number") is None, inv
    for inv in db.invoices.find({"status": {"$in": ["open", "paid", "uncollectible"]}}):
        assert inv.get("number") is not None, inv


def check_defaults(db: Database[Any]) -> None:
    for org in db.orgs.find({}):
        default = org.get("default_payment_method_id")
        if default is None:
            continue
        method = db.payment_methods.find_one({"_id": _oid(default), "org_id": org["_id"]})
        assert method is not None and method["status"] == "active", (org, method)


def check_paid(db: Database[Any]) -> None:
    succeeded = Counter(p["invoice_id"] for p in db.payments.find({"status": "succeeded"}))
    for inv in db.invoices.find({"status": "paid"}):
        assert inv["amount_paid"] == inv["total"], inv
        assert succeeded[inv["_id"]] == 1, (inv, succeeded[inv["_id"]])
        assert inv.get("payment_lease") is None, inv
    for inv in db.invoices.find({"status": {"$in": ["open", "draft", "uncollectible"]}}):
        assert succeeded[inv["_id"]] == 0, (inv, "a succeeded payment on an unpaid invoice")


def unbilled_closed(db: Database[Any], boundary: datetime) -> list[dict[str, Any]]:
    """Well-formed (dates, started <= ended) conversations that ended before `boundary` and are
    still unbilled."""
    found = db.conversations.find({"line_item_id": None, "ended_at": {"$lt": boundary}})
    return [c for c in found if isinstance(c.get("started_at"), datetime)
            and c["started_at"] <= c["ended_at"]]


def _oid(value: Any) -> ObjectId:
    return value if isinstance(value, ObjectId) else ObjectId(str(value))
