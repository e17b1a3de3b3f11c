# Generated from billing/_async by tools/synchro.py: do not edit.
"""Orgs (tenants): their currency, prices and invoice counter."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing._sync.repositories.orgs import (
    insert_org,
    org_doc_in,
    org_doc_now,
    set_org_schedule,
)
from billing._sync.service_context import Context
from billing._sync.unit_of_work import Transaction
from billing.adapters import ids
from billing.domain.inputs import NewOrg
from billing.domain.models import Org, Prices
from billing.plans import collections, require_org


class Orgs:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def create(
        self, *, name: Any, currency: Any, per_conversation: Any, per_started_minute: Any
    ) -> Org:
        """Create an org billed in `currency` at the given prices (integer minor units)."""
        data = NewOrg.parse(name=name, currency=currency, per_conversation=per_conversation,
                            per_started_minute=per_started_minute)
        org = Org(
            id=str(ObjectId()), name=data.name, currency=data.currency,
            prices=Prices(per_conversation=data.per_conversation,
                          per_started_minute=data.per_started_minute),
            created_at=self._ctx.now(),
        )

        def work(txn: Transaction) -> None:
            txn.write([insert_org(org)])

        self._ctx.uow.run(work)
        return org

    def get(self, org_id: Any) -> Org:
        """The org, or OrgNotFound."""
        oid = ids.object_id(org_id, name="org_id")
        return require_org(org_doc_now(self._ctx.uow.direct, oid), oid)

    def set_collection_schedule(self, org_id: Any, days: Any) -> Org:
        """Override the deployment's retry schedule for this org: the days after finalisation
        on which `collect` attempts payment (e.g. [0, 2, 4]); None returns to the default.
        InvalidInput for a bad schedule, OrgNotFound; nothing is written then."""
        oid = ids.object_id(org_id, name="org_id")
        value = None if days is None else list(collections.schedule(days, name="days"))

        def work(txn: Transaction) -> Org:
            org = require_org(org_doc_in(txn, oid), oid)
            txn.write([set_org_schedule(oid, value)])
            return org.model_copy(update={"collection_schedule": value})

        return self._ctx.uow.run(work)
