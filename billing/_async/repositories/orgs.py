"""Orgs, as the long runs read them."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing._async.unit_of_work import AsyncDirect, AsyncTransaction
from billing.adapters import schema

Doc = dict[str, Any]


async def org_exists(direct: AsyncDirect, org_id: ObjectId) -> bool:
    return bool(await direct.find(schema.ORGS, {"_id": org_id}, sort=(), limit=1,
                                  projection={"_id": 1}))


async def org_document(direct: AsyncDirect, org_id: ObjectId) -> Doc | None:
    found = await direct.find(schema.ORGS, {"_id": org_id}, sort=(), limit=1, hint="_id_")
    return found[0] if found else None


async def existing_org_ids(direct: AsyncDirect, org_ids: list[Any]) -> set[Any]:
    """Which of these ids are orgs'."""
    return {d["_id"] for d in await direct.find(schema.ORGS, {"_id": {"$in": org_ids}},
                                                sort=(), hint="_id_", projection={"_id": 1})}


async def org_in_txn(txn: AsyncTransaction, org_id: ObjectId) -> Doc | None:
    return await txn.find_one(schema.ORGS, {"_id": org_id})
