"""Conversations of an org: by id, by the host's external id."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing._async.unit_of_work import AsyncDirect, AsyncTransaction
from billing.adapters import schema

Doc = dict[str, Any]


async def conversation_of_external_id(txn: AsyncTransaction, org_id: ObjectId,
                                      external_id: str) -> Doc | None:
    return await txn.find_one(schema.CONVERSATIONS, {"org_id": org_id,
                                                     "external_id": external_id})


async def conversations_of_external_ids(txn: AsyncTransaction, org_id: ObjectId,
                                        external_ids: list[str], *, limit: int) -> list[Doc]:
    """The org's conversations recorded with any of `external_ids` (none read for none)."""
    if not external_ids:
        return []
    return await txn.find(schema.CONVERSATIONS, {
        "org_id": org_id, "external_id": {"$in": external_ids}}, limit=limit)


async def conversation_doc_now(direct: AsyncDirect, org_id: ObjectId,
                               conversation_id: ObjectId) -> Doc | None:
    return await direct.find_one(schema.CONVERSATIONS, {"_id": conversation_id,
                                                        "org_id": org_id})
