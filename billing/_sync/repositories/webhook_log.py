# Generated from billing/_async by tools/synchro.py: do not edit.
"""Stripe webhook deliveries: the events applied (read in the effect's transaction) and the
failed deliveries (audited outside any transaction, so they survive its rollback)."""

from __future__ import annotations

from datetime import datetime

from billing._sync.unit_of_work import Direct, Transaction
from billing.adapters import schema


def event_was_processed(txn: Transaction, event_id: str) -> bool:
    """Whether a delivery of this Stripe event was applied already (events hold no org:
    Stripe's event id is the key)."""
    return txn.find_one(schema.WEBHOOK_EVENTS, {"_id": event_id}) is not None


def log_failed_delivery(direct: Direct, *, event_id: str, event_type: str,
                              at: datetime, error: str, retryable: bool) -> None:
    direct.insert_one(schema.WEBHOOK_LOG, {
        "event_id": event_id, "type": event_type, "at": at, "error": error,
        "retryable": retryable})
