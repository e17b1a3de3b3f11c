# Generated from billing/_async by tools/synchro.py: do not edit.
"""Conversations: written by the host backend, or through `record`; billing owns `line_item_id`."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing._sync.context import Context
from billing._sync.unit_of_work import Transaction
from billing.adapters import documents, ids, schema
from billing.adapters.mongo_errors import translated
from billing.domain.inputs import NewConversation
from billing.domain.models import Conversation
from billing.errors import NotFound
from billing.plans.conversations import conversation_plan


class Conversations:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def record(
        self, org_id: Any, *, started_at: Any, ended_at: Any, external_id: Any = None
    ) -> Conversation:
        """Record a finished conversation, unbilled. Idempotent per `external_id`: recording the
        same external_id again returns the first document and writes nothing."""
        oid = ids.object_id(org_id, name="org_id")
        data = NewConversation.parse(started_at=started_at, ended_at=ended_at,
                                     external_id=external_id)

        def work(txn: Transaction) -> dict[str, Any]:
            org = txn.find_one(schema.ORGS, {"_id": oid})
            existing = None
            if data.external_id is not None:
                existing = txn.find_one(
                    schema.CONVERSATIONS, {"org_id": oid, "external_id": data.external_id})
            plan = conversation_plan(
                org, existing, org_id=oid, started_at=data.started_at, ended_at=data.ended_at,
                external_id=data.external_id, now=self._ctx.now(), make_id=ObjectId,
            )
            txn.write(plan.writes)
            return plan.result

        return documents.conversation(self._ctx.uow.run(work))

    def get(self, org_id: Any, conversation_id: Any) -> Conversation:
        oid = ids.object_id(org_id, name="org_id")
        cid = ids.object_id(conversation_id, name="conversation_id")
        self._ctx.uow.check_server()
        with translated():
            doc = self._ctx.uow.db[schema.CONVERSATIONS].find_one(
                {"_id": cid, "org_id": oid})
        if doc is None:
            raise NotFound(f"no conversation {cid} in org {oid}")
        return documents.conversation(doc)
