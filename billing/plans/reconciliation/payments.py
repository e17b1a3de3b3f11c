"""Payments: attempts left unsettled, webhooks that disagreed with our records. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from bson import ObjectId

from billing.domain.models import PaymentStatus
from billing.plans.invoices import attempt_may_move_money
from billing.plans.reconciliation.repairs import (
    SettlePayment,
)
from billing.reconcile_findings import Check, Finding

Doc = dict[str, Any]


def unsettled_payments(oid: ObjectId, docs: Iterable[Doc], stale_before: datetime, *,
                       can_ask: bool) -> list[Finding]:
    """Attempts whose intent may still move money since before `stale_before`: unsettled, or
    failed with an intent not canceled in Stripe (it could be confirmed again); settled from
    Stripe (which cancels a failed one's intent) when it `can_ask`."""
    return [Finding(
        Check.PAYMENT, str(oid), f"payment {d['_id']} (attempt {d['attempt']}) of invoice "
        f"{d['invoice_id']} is {_state(d)} since {_since(d).isoformat()}", 1,
        [str(d["_id"])], "settle it from Stripe's state" if can_ask else
        "report: settling needs Stripe (set STRIPE_API_KEY)", repairable=can_ask,
        repair=SettlePayment(d["invoice_id"], d["_id"]) if can_ask else None)
        for d in docs if _open(d) and _since(d) < stale_before]


def _open(doc: Doc) -> bool:
    return attempt_may_move_money(PaymentStatus(doc["status"]), doc.get("intent_id"),
                                  bool(doc.get("intent_canceled")))


def _state(doc: Doc) -> str:
    if doc["status"] == PaymentStatus.FAILED.value:
        return "failed with its intent not canceled in Stripe (it could be confirmed again)"
    return str(doc["status"])


def mismatched_webhooks(oid: ObjectId, events: Iterable[Doc], since: datetime) -> list[Finding]:
    """Webhooks processed since `since` that disagreed with our attempt: for a person."""
    return [Finding(
        Check.PAYMENT, str(oid), f"webhook {e['_id']} disagreed with our records: "
        f"{e.get('detail', '')}", 1, [str(e["_id"])],
        "report: check the payment in Stripe's dashboard", repairable=False)
        for e in events if e["processed_at"] >= since]


def _since(doc: Doc) -> datetime:
    when: datetime = doc.get("updated_at") or doc["created_at"]
    return when
