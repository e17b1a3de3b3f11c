# Generated from billing/_async by tools/synchro.py: do not edit.
"""Payment attempts of an org's invoices."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing._sync.unit_of_work import Direct, Transaction
from billing.adapters import documents, schema
from billing.domain.models import Payment, PaymentStatus
from billing.plans.invoices import UNSETTLED

Doc = dict[str, Any]


def payment_doc_in(txn: Transaction, org_id: ObjectId, payment_id: ObjectId, *,
                         invoice_id: ObjectId | None = None) -> Doc | None:
    """The org's payment (of `invoice_id` only, when given), or None."""
    where: Doc = {"_id": payment_id, "org_id": org_id}
    if invoice_id is not None:
        where["invoice_id"] = invoice_id
    return txn.find_one(schema.PAYMENTS, where)


def payment_doc_of_attempt(txn: Transaction, org_id: ObjectId, invoice_id: ObjectId,
                                 attempt: int) -> Doc | None:
    """The invoice's attempt numbered `attempt` (1, 2...), or None."""
    return txn.find_one(schema.PAYMENTS, {"org_id": org_id, "invoice_id": invoice_id,
                                                "attempt": attempt})


def payment_docs_of_invoice(txn: Transaction, org_id: ObjectId,
                                  invoice_id: ObjectId) -> list[Doc]:
    """Every attempt of the invoice, oldest first."""
    return txn.find(schema.PAYMENTS, {"org_id": org_id, "invoice_id": invoice_id})


def payment_doc_of_intent(txn: Transaction, org_id: ObjectId,
                                intent_id: str) -> Doc | None:
    """The org's payment recorded with this Stripe intent, or None."""
    return txn.find_one(schema.PAYMENTS, {"org_id": org_id, "intent_id": intent_id})


def unsettled_payments_of_org(direct: Direct, org_id: ObjectId
                                    ) -> list[dict[str, Any]]:
    """The org's attempts not settled yet and its failed ones, whatever their age: the caller
    keeps those whose intent may still move money (age and the failed ones' intent fields are
    unindexed predicates: SecantusDB would scan for them)."""
    return direct.find(
        schema.PAYMENTS, {"org_id": org_id, "status": {"$in": [
            *(s.value for s in UNSETTLED), PaymentStatus.FAILED.value]}},
        sort=(), projection={"invoice_id": 1, "attempt": 1, "status": 1, "updated_at": 1,
                             "created_at": 1, "intent_id": 1, "intent_canceled": 1})


def attempts_per_invoice(direct: Direct, org_id: ObjectId, invoice_ids: list[str]
                               ) -> dict[str, list[Payment]]:
    """The org's attempts on these invoices, per invoice id."""
    attempts: dict[str, list[Payment]] = {}
    for p in direct.find(schema.PAYMENTS, {
            "org_id": org_id, "invoice_id": {"$in": [ObjectId(i) for i in invoice_ids]}},
            sort=()):
        attempts.setdefault(str(p["invoice_id"]), []).append(documents.payment(p))
    return attempts
