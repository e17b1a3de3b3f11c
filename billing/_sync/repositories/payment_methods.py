# Generated from billing/_async by tools/synchro.py: do not edit.
"""Payment methods of an org."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing._sync.unit_of_work import Direct, Transaction
from billing.adapters import schema
from billing.domain.models import PaymentMethodStatus

Doc = dict[str, Any]


def method_doc_in(txn: Transaction, org_id: ObjectId,
                        method_id: ObjectId) -> Doc | None:
    return txn.find_one(schema.PAYMENT_METHODS, {"_id": method_id, "org_id": org_id})


def method_doc_of_request(txn: Transaction, org_id: ObjectId,
                                request_id: str) -> Doc | None:
    """The record an attach request made (unique per org and request id), or None."""
    return txn.find_one(schema.PAYMENT_METHODS, {"org_id": org_id,
                                                       "request_id": request_id})


def method_doc_holding(txn: Transaction, org_id: ObjectId,
                             stripe_id: str) -> Doc | None:
    """The live record holding the Stripe method, if any (at most one: unique index)."""
    return txn.find_one(schema.PAYMENT_METHODS, {
        "org_id": org_id, "stripe_id": stripe_id, "status": {"$in": schema.LIVE_HOLDING}})


def live_method_docs(txn: Transaction, org_id: ObjectId, *,
                           stripe_id: str | None = None) -> list[Doc]:
    """The org's methods attached or being detached (only those of `stripe_id`, if given)."""
    where: Doc = {"org_id": org_id, "status": {"$in": schema.LIVE_HOLDING}}
    if stripe_id is not None:
        where["stripe_id"] = stripe_id
    return txn.find(schema.PAYMENT_METHODS, where)


def active_method_docs_now(direct: Direct, org_id: ObjectId) -> list[Doc]:
    """The org's active methods as committed now, oldest first."""
    return direct.find(schema.PAYMENT_METHODS, {
        "org_id": org_id, "status": PaymentMethodStatus.ACTIVE.value})
