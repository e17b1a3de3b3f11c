"""Billing events (a transactional outbox): what the host is told, written with the change. Pure.

An event is inserted in the same transaction as the state change it reports, so it exists if
and only if that change committed. Events of one org are numbered 1, 2, 3... in commit order:
the org's `event_seq` moves in the same transaction, guarded by the value read (two transactions
emitting for one org conflict, and the loser retries with the next number). An event holds ids,
amounts and codes, never a secret (no card numbers, keys or URIs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from billing.adapters import schema
from billing.adapters.writes import Write, insert

TYPES = frozenset({
    "invoice.finalized", "invoice.paid", "invoice.voided", "invoice.uncollectible",
    "payment.failed", "payment.requires_action", "payment_method.attached",
    "payment_method.detached", "reconciliation.finding", "credit_note.created",
    "refund.succeeded", "refund.failed",
})
DEFAULT_RETENTION = timedelta(days=90)


@dataclass(frozen=True)
class Outbox:
    """What a transaction needs to emit events for one org: the sequence number it read."""

    org_id: ObjectId
    seq: int  # the org's event_seq as read in this transaction
    now: datetime
    retention: timedelta = DEFAULT_RETENTION


def outbox(org_doc: Mapping[str, Any], *, now: datetime,
           retention: timedelta = DEFAULT_RETENTION) -> Outbox:
    return Outbox(org_doc["_id"], int(org_doc.get("event_seq") or 0), now, retention)


def emit(box: Outbox | None, events: Sequence[tuple[str, dict[str, Any]]]) -> list[Write]:
    """The writes that record `events` (type, data) for the org, numbered after what was read.
    None (no outbox given) emits nothing: for callers outside the event contract."""
    if box is None or not events:
        return []
    for kind, _ in events:
        if kind not in TYPES:
            raise ValueError(f"unknown event type {kind!r}")
    read = box.seq
    guard: Any = read if read else {"$in": [None, 0]}  # orgs made before events had none
    writes = [Write(schema.ORGS, "update_one", {"_id": box.org_id, "event_seq": guard},
                    {"$set": {"event_seq": read + len(events)}})]
    for offset, (kind, data) in enumerate(events, start=1):
        writes.append(insert(schema.EVENTS, {
            "_id": ObjectId(), "org_id": box.org_id, "seq": read + offset, "type": kind,
            "data": data, "created_at": box.now, "expires_at": box.now + box.retention}))
    return writes
