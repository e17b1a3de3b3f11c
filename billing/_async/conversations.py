"""Conversations: written by the host backend, or through `record`; billing owns `line_item_id`."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing._async.context import AsyncContext
from billing._async.unit_of_work import AsyncTransaction
from billing.adapters import documents, ids, schema
from billing.adapters.mongo_errors import translated
from billing.domain.inputs import NewConversation
from billing.domain.models import Conversation
from billing.errors import NotFound
from billing.plans.conversations import conversation_plan


class AsyncConversations:
    def __init__(self, ctx: AsyncContext) -> None:
        self._ctx = ctx

    async def record(
        self, org_id: Any, *, started_at: Any, ended_at: Any, external_id: Any = None
    ) -> Conversation:
        """Record a finished conversation, unbilled. Idempotent per `external_id`: recording the
        same external_id again returns the first document and writes nothing."""
        oid = ids.object_id(org_id, name="org_id")
        data = NewConversation.parse(started_at=started_at, ended_at=ended_at,
                                     external_id=external_id)

        async def work(txn: AsyncTransaction) -> dict[str, Any]:
            org = await txn.find_one(schema.ORGS, {"_id": oid})
            existing = None
            if data.external_id is not None:
                existing = await txn.find_one(
                    schema.CONVERSATIONS, {"org_id": oid, "external_id": data.external_id})
            plan = conversation_plan(
                org, existing, org_id=oid, started_at=data.started_at, ended_at=data.ended_at,
                external_id=data.external_id, now=self._ctx.now(), make_id=ObjectId,
            )
            await txn.write(plan.writes)
            return plan.result

        return documents.conversation(await self._ctx.uow.run(work))

    async def get(self, org_id: Any, conversation_id: Any) -> Conversation:
        oid = ids.object_id(org_id, name="org_id")
        cid = ids.object_id(conversation_id, name="conversation_id")
        await self._ctx.uow.check_server()
        with translated():
            doc = await self._ctx.uow.db[schema.CONVERSATIONS].find_one(
                {"_id": cid, "org_id": oid})
        if doc is None:
            raise NotFound(f"no conversation {cid} in org {oid}")
        return documents.conversation(doc)
