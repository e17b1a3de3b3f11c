"""Seeding and dumps shared by the integration tests (sync pymongo, any engine); the invariants
are in tests/support/invariants.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo.database import Database

from billing.domain.periods import last_closed_month, next_month
from billing.domain.pricing import started_minutes

OCT = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
NOV = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


# The month the suite runs in, still open by the real clock (a fixed month closes one day).
_THIS_MONTH = last_closed_month().end
OPEN = (_THIS_MONTH, next_month(_THIS_MONTH))


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


def closed_month_invoice(b: Any, *, name: str = "Acme", conversations: int = 2,
                         token: str | None = None, request_id: str = "r-1") -> tuple[Any, Any]:
    """A new org (50 per conversation, 10 per started minute) with `conversations` in the last
    closed month, invoiced (open), and with `token` attached as its default card when given:
    an invoice a collection run is due to charge. `b` is a sync Billing."""
    org = b.orgs.create(name=name, currency="usd", per_conversation=50, per_started_minute=10)
    period = last_closed_month()
    seed_conversations(b.database, org.id, conversations, start=period.start)
    inv = b.invoices.create_for_period(org.id, period.start, period.end)
    if token is not None:
        b.payment_methods.attach(org.id, token, request_id=request_id)
    return org, inv


def expected_total(docs: list[dict[str, Any]], per_conversation: int, per_minute: int) -> int:
    minutes = sum(started_minutes(d["started_at"], d["ended_at"]) for d in docs)
    return per_conversation * len(docs) + per_minute * minutes


def dump(db: Database[Any]) -> dict[str, list[dict[str, Any]]]:
    """Every document of every collection, ordered: for 'nothing was written' checks."""
    return {
        name: list(db[name].find({}).sort("_id", 1)) for name in sorted(db.list_collection_names())
    }


def untold(dumped: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """A dump without what telling the host adds: `reconciliation.finding` events (and the
    orgs' event counters they move). For "left alone" checks of reconciliation."""
    out = dict(dumped)
    out["billing_events"] = [e for e in dumped.get("billing_events", [])
                             if e.get("type") != "reconciliation.finding"]
    out["orgs"] = [{k: v for k, v in o.items() if k != "event_seq"}
                   for o in dumped.get("orgs", [])]
    return out
