"""Run leases (`reconciliation_leases`): one document per (kind, shard), written outside any
transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billing._async.unit_of_work import AsyncDirect
from billing.adapters import schema

Doc = dict[str, Any]


async def claim_run_lease(direct: AsyncDirect, key: str, holder: str, fields: Doc,
                          now: datetime) -> Doc | None:
    """Take the lease if it is free, expired or already ours; the document as it was before
    (None if there was none). Duplicate when another holder's lease has not expired."""
    return await direct.find_one_and_update(
        schema.RECONCILIATION_LEASES,
        {"_id": key, "$or": [{"expires_at": {"$lte": now}}, {"holder": holder}]},
        {"$set": fields}, upsert=True, before=True)


async def run_lease_of(direct: AsyncDirect, key: str) -> Doc | None:
    return await direct.find_one(schema.RECONCILIATION_LEASES, {"_id": key})


async def renew_run_lease(direct: AsyncDirect, key: str, holder: str, fields: Doc) -> bool:
    """Whether the holder still held the lease (and now holds it longer)."""
    return await direct.find_one_and_update(
        schema.RECONCILIATION_LEASES, {"_id": key, "holder": holder},
        {"$set": fields}) is not None


async def release_run_lease(direct: AsyncDirect, key: str, holder: str) -> None:
    await direct.delete_one(schema.RECONCILIATION_LEASES, {"_id": key, "holder": holder})
