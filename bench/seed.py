"""Seed data: orgs created through billing, conversations inserted in bulk (as the host backend
writes them), and the total each org must be invoiced, computed here independently of billing."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo.collection import Collection

from billing import Billing
from billing.domain.periods import Period

PER_CONVERSATION = 50  # cents
PER_STARTED_MINUTE = 10
MINUTE_MS = 60_000
INSERT_BATCH = 10_000
Doc = dict[str, Any]


def conversations(org_id: ObjectId, n: int, period: Period) -> list[Doc]:
    """n conversations spread over the period, lasting 0 to 300 s (so 0 to 5 started minutes)."""
    span_ms = (period.end - period.start) // timedelta(milliseconds=1) - 10 * MINUTE_MS
    step_ms = span_ms // max(n, 1)
    docs = []
    for i in range(n):
        started = period.start + timedelta(milliseconds=i * step_ms)
        ended = started + timedelta(seconds=(i * 37) % 301)
        docs.append({"_id": ObjectId(), "org_id": org_id, "started_at": started,
                     "ended_at": ended, "line_item_id": None})
    return docs


def insert(collection: Collection[Doc], docs: list[Doc]) -> None:
    """insert_many in batches: single inserts slow down past ~10,000 documents on SecantusDB."""
    for i in range(0, len(docs), INSERT_BATCH):
        collection.insert_many(docs[i:i + INSERT_BATCH], ordered=False)


def expected_total(docs: list[Doc]) -> int:
    minutes = sum(started_minutes(d["started_at"], d["ended_at"]) for d in docs)
    return PER_CONVERSATION * len(docs) + PER_STARTED_MINUTE * minutes


def started_minutes(started_at: datetime, ended_at: datetime) -> int:
    ms = (ended_at - started_at) // timedelta(milliseconds=1)
    return -(-ms // MINUTE_MS)


def org_with_conversations(billing: Billing, n: int, period: Period, *, name: str = "Bench"
                           ) -> tuple[str, int]:
    """A new org with n unbilled conversations in the period: (org id, expected total)."""
    org = billing.orgs.create(name=name, currency="usd", per_conversation=PER_CONVERSATION,
                              per_started_minute=PER_STARTED_MINUTE)
    docs = conversations(ObjectId(org.id), n, period)
    insert(billing.database.conversations, docs)
    return org.id, expected_total(docs)


def orgs_with_conversations(billing: Billing, orgs: int, n: int, period: Period) -> int:
    """`orgs` new orgs with n conversations each; returns the expected sum of their totals."""
    total, batch = 0, []
    for i in range(orgs):
        org = billing.orgs.create(name=f"Bench {i}", currency="usd",
                                  per_conversation=PER_CONVERSATION,
                                  per_started_minute=PER_STARTED_MINUTE)
        docs = conversations(ObjectId(org.id), n, period)
        total += expected_total(docs)
        batch += docs
        if len(batch) >= INSERT_BATCH:
            insert(billing.database.conversations, batch)
            batch = []
    insert(billing.database.conversations, batch)
    return total
