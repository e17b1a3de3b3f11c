"""Payment methods of an org."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing._async.unit_of_work import AsyncDirect, AsyncTransaction
from billing.adapters import schema
from billing.domain.models import PaymentMethodStatus

Doc = dict[str, Any]


async def method_doc_in(txn: AsyncTransaction, org_id: ObjectId,
                        method_id: ObjectId) -> Doc | None:
    return await txn.find_one(schema.PAYMENT_METHODS, {"_id": method_id, "org_id": org_id})


async def method_doc_of_request(txn: AsyncTransaction, org_id: ObjectId,
                                request_id: str) -> Doc | None:
    """The record an attach request made (unique per org and request id), or None."""
    return await txn.find_one(schema.PAYMENT_METHODS, {"org_id": org_id,
                                                       "request_id": request_id})


async def method_doc_holding(txn: AsyncTransaction, org_id: ObjectId,
                             stripe_id: str) -> Doc | None:
    """The live record holding the Stripe method, if any (at most one: unique index)."""
    return await txn.find_one(schema.PAYMENT_METHODS, {
        "org_id": org_id, "stripe_id": stripe_id, "status": {"$in": schema.LIVE_HOLDING}})


async def live_method_docs(txn: AsyncTransaction, org_id: ObjectId, *,
                           stripe_id: str | None = None) -> list[Doc]:
    """The org's methods attached or being detached (only those of `stripe_id`, if given)."""
    where: Doc = {"org_id": org_id, "status": {"$in": schema.LIVE_HOLDING}}
    if stripe_id is not None:
        where["stripe_id"] = stripe_id
    return await txn.find(schema.PAYMENT_METHODS, where)


async def active_method_docs_now(direct: AsyncDirect, org_id: ObjectId) -> list[Doc]:
    """The org's active methods as committed now, oldest first."""
    return await direct.find(schema.PAYMENT_METHODS, {
        "org_id": org_id, "status": PaymentMethodStatus.ACTIVE.value})
