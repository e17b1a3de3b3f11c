"""Seeding and invariant checks shared by the integration tests (sync pymongo, any engine)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from billing.domain.pricing import started_minutes

OCT = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
NOV = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


def seed_conversations(
    db: Database[Any], org_id: str, n: int, *, start: datetime = OCT[0], seconds: int = 61
) -> list[dict[str, Any]]:
    """n conversations in October with durations cycling through 0..seconds s."""
    docs = [
        {
            "_id": ObjectId(),
            "org_id": ObjectId(org_id),
            "started_at": start + timedelta(minutes=i),
            "ended_at": start + timedelta(minutes=i, seconds=i % (seconds + 1)),
            "line_item_id": None,
        }
        for i in range(n)
    ]
    if docs:
        db.conversations.insert_many(docs)
    return docs


def expected_total(docs: list[dict[str, Any]], per_conversation: int, per_minute: int) -> int:
    minutes = sum(started_minutes(d["started_at"], d["ended_at"]) for d in docs)
    return per_conversation * len(docs) + per_minute * minutes


def dump(db: Database[Any]) -> dict[str, list[dict[str, Any]]]:
    """Every document of every collection, ordered: for 'nothing was written' checks."""
    return {
        name: list(db[name].find({}).sort("_id", 1)) for name in sorted(db.list_collection_names())
    }


def check_invariants(db: Database[Any]) -> None:
    """Totals equal their line items; every billed conversation points at a conversations
    line item of an invoice of its own org whose period contains it. Pass `Billing.database`
    (timezone-aware)."""
    items = {li["_id"]: li for li in db.line_items.find({})}
    invoices = {inv["_id"]: inv for inv in db.invoices.find({})}
    for inv in invoices.values():
        mine = [li for li in items.values() if li["invoice_id"] == inv["_id"]]
        assert inv["subtotal"] == inv["total"] == sum(li["amount"] for li in mine), inv
        for li in mine:
            assert li["amount"] == li["quantity"] * li["unit_amount"]
            assert li["org_id"] == inv["org_id"]
        conv_item = next((li for li in mine if li["kind"] == "conversations"), None)
        if conv_item is not None:
            linked = db.conversations.count_documents({"line_item_id": conv_item["_id"]})
            assert linked == conv_item["quantity"] == inv["conversations"], inv
    for conv in db.conversations.find({"line_item_id": {"$ne": None}}):
        li = items[conv["line_item_id"]]
        inv = invoices[li["invoice_id"]]
        assert li["kind"] == "conversations" and li["org_id"] == conv["org_id"]
        assert inv["period_start"] <= conv["ended_at"] < inv["period_end"]


def untold(dumped: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """A dump without what telling the host adds: `reconciliation.finding` events (and the
    orgs' event counters they move). For "left alone" checks of reconciliation."""
    out = dict(dumped)
    out["billing_events"] = [e for e in dumped.get("billing_events", [])
                             if e.get("type") != "reconciliation.finding"]
    out["orgs"] = [{k: v for k, v in o.items() if k != "event_seq"}
                   for o in dumped.get("orgs", [])]
    return out
