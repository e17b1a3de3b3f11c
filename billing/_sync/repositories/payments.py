# Generated from billing/_async by tools/synchro.py: do not edit.
"""Payment attempts, as reconciliation and collection read them."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing._sync.unit_of_work import Direct
from billing.adapters import documents, schema
from billing.domain.models import Payment
from billing.plans.invoices import UNSETTLED


def unsettled_payments_of_org(direct: Direct, org_id: ObjectId
                                    ) -> list[dict[str, Any]]:
    """The org's attempts not settled yet, whatever their age (age is an unindexed predicate:
    SecantusDB would scan for it)."""
    return direct.find(
        schema.PAYMENTS, {"org_id": org_id, "status": {"$in": [s.value for s in UNSETTLED]}},
        sort=(), projection={"invoice_id": 1, "attempt": 1, "status": 1, "updated_at": 1,
                             "created_at": 1})


def attempts_per_invoice(direct: Direct, org_id: ObjectId, invoice_ids: list[str]
                               ) -> dict[str, list[Payment]]:
    """The org's attempts on these invoices, per invoice id."""
    attempts: dict[str, list[Payment]] = {}
    for p in direct.find(schema.PAYMENTS, {
            "org_id": org_id, "invoice_id": {"$in": [ObjectId(i) for i in invoice_ids]}},
            sort=()):
        attempts.setdefault(str(p["invoice_id"]), []).append(documents.payment(p))
    return attempts
