"""The org's Stripe customer: created once, recorded once."""

from __future__ import annotations

from bson import ObjectId

from billing import faults
from billing._async.context import AsyncContext
from billing._async.unit_of_work import AsyncTransaction
from billing.adapters import schema
from billing.adapters.mongo_errors import translated
from billing.adapters.writes import Write
from billing.plans import require_org


async def ensure_customer(ctx: AsyncContext, org_id: ObjectId) -> str:
    """The org's Stripe customer id, creating the customer if it has none.

    The create call carries the key `cus-create:{org_id}` (Stripe answers a repeat with the same
    customer); the id is recorded only where none is yet, so concurrent callers agree on one.
    """
    await ctx.uow.check_server()
    with translated():
        doc = await ctx.uow.db[schema.ORGS].find_one({"_id": org_id})
    org = require_org(doc, org_id)
    if org.stripe_customer_id:
        return org.stripe_customer_id
    created = await ctx.gateway.create_customer(
        org_id=str(org_id), name=org.name, idempotency_key=f"cus-create:{org_id}")
    faults.hit("customer.after_create")

    async def record(txn: AsyncTransaction) -> str:
        current = require_org(await txn.find_one(schema.ORGS, {"_id": org_id}), org_id)
        if current.stripe_customer_id:
            return current.stripe_customer_id  # a concurrent caller won
        await txn.write([Write(schema.ORGS, "update_one",
                               {"_id": org_id, "stripe_customer_id": None},
                               {"$set": {"stripe_customer_id": created}})])
        return created

    return await ctx.uow.run(record)
