# Generated from billing/_async by tools/synchro.py: do not edit.
"""Reconciliation of payments: attempts left unsettled, webhooks that disagreed with our records.

An attempt that is still `pending`, `confirming`, `requires_action` or `processing` after
`stale_after` either lost its webhook or was left by a process that died: `--apply` settles it
from Stripe's state (`invoices.settle_payment`), which also abandons an attempt whose intent was
never recorded and cancels a confirmation that never reached Stripe. A webhook whose amount,
currency or customer disagreed with the attempt it names changed nothing; it is reported for a
person for `MISMATCH_DAYS` days.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from billing._sync.payments import Payments
from billing._sync.service_context import Context
from billing.adapters import schema
from billing.plans.invoices import UNSETTLED
from billing.plans.payments import blocked
from billing.reconcile_findings import Check, Finding

MISMATCH_DAYS = 7


class PaymentChecks:
    def __init__(self, ctx: Context, payments: Payments) -> None:
        self._ctx = ctx
        self._payments = payments

    def scan(self, oid: ObjectId, stale_before: datetime) -> list[Finding]:
        db = self._ctx.uow.db
        docs = db[schema.PAYMENTS].find(
            {"org_id": oid, "status": {"$in": [s.value for s in UNSETTLED]}},
            {"invoice_id": 1, "attempt": 1, "status": 1, "updated_at": 1, "created_at": 1},
        ).to_list()
        can_ask = self._ctx.gateway_or_none is not None
        out = [Finding(
            Check.PAYMENT, str(oid), f"payment {d['_id']} (attempt {d['attempt']}) of invoice "
            f"{d['invoice_id']} is {d['status']} since {_since(d).isoformat()}", 1,
            [str(d["_id"])], "settle it from Stripe's state" if can_ask else
            "report: settling needs Stripe (set STRIPE_API_KEY)", repairable=can_ask,
            params={"invoice_id": d["invoice_id"], "payment_id": d["_id"]})
            # Age checked here: SecantusDB scans for an unindexed predicate (reconcile_billing).
            for d in docs if _since(d) < stale_before]
        since = self._ctx.now() - timedelta(days=MISMATCH_DAYS)
        events = db[schema.WEBHOOK_EVENTS].find(
            {"org_id": oid, "outcome": "mismatch"}, {"detail": 1, "processed_at": 1}).to_list()
        out += [Finding(
            Check.PAYMENT, str(oid), f"webhook {e['_id']} disagreed with our records: "
            f"{e.get('detail', '')}", 1, [str(e["_id"])],
            "report: check the payment in Stripe's dashboard", repairable=False)
            for e in events if e["processed_at"] >= since]
        return out

    def repair(self, finding: Finding) -> str:
        payment = self._payments.settle(finding.org_id, finding.params["invoice_id"],
                                              payment_id=finding.params["payment_id"])
        if payment is None:
            return "no attempt left to settle"
        if payment.status in UNSETTLED:  # Stripe still holds it open: waiting, not repaired
            raise blocked(payment, str(finding.params["invoice_id"]))
        return f"payment {payment.id} is {payment.status.value}"


def _since(doc: dict[str, Any]) -> datetime:
    when: datetime = doc.get("updated_at") or doc["created_at"]
    return when
