# Generated from billing/_async by tools/synchro.py: do not edit.
"""Payment attempts of an org's invoices."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing._sync.unit_of_work import Transaction
from billing.adapters import schema

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
