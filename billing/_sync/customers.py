# Generated from billing/_async by tools/synchro.py: do not edit.
"""The org's Stripe customer: created once, recorded once."""

from __future__ import annotations

from bson import ObjectId

from billing import faults
from billing._sync.context import Context
from billing._sync.unit_of_work import Transaction
from billing.adapters import schema
from billing.adapters.mongo_errors import translated
from billing.adapters.writes import Write
from billing.plans import require_org


def ensure_customer(ctx: Context, org_id: ObjectId) -> str:
    """The org's Stripe customer id, creating the customer if it has none.

    The create call carries the key `cus-create:{org_id}` (Stripe answers a repeat with the same
    customer); the id is recorded only where none is yet, so concurrent callers agree on one.
    """
    ctx.uow.check_server()
    with translated():
        doc = ctx.uow.db[schema.ORGS].find_one({"_id": org_id})
    org = require_org(doc, org_id)
    if org.stripe_customer_id:
        return org.stripe_customer_id
    created = ctx.gateway.create_customer(
        org_id=str(org_id), name=org.name, idempotency_key=f"cus-create:{org_id}")
    faults.hit("customer.after_create")

    def record(txn: Transaction) -> str:
        current = require_org(txn.find_one(schema.ORGS, {"_id": org_id}), org_id)
        if current.stripe_customer_id:
            return current.stripe_customer_id  # a concurrent caller won
        txn.write([Write(schema.ORGS, "update_one",
                               {"_id": org_id, "stripe_customer_id": None},
                               {"$set": {"stripe_customer_id": created}})])
        return created

    return ctx.uow.run(record)
