# Generated from billing/_async by tools/synchro.py: do not edit.
"""Run leases (`reconciliation_leases`): one document per (kind, shard), written outside any
transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billing._sync.unit_of_work import Direct
from billing.adapters import schema

Doc = dict[str, Any]


def claim_run_lease(direct: Direct, key: str, holder: str, fields: Doc,
                          now: datetime) -> Doc | None:
    """Take the lease if it is free, expired or already ours; the document as it was before
    (None if there was none). Duplicate when another holder's lease has not expired."""
    return direct.find_one_and_update(
        schema.RECONCILIATION_LEASES,
        {"_id": key, "$or": [{"expires_at": {"$lte": now}}, {"holder": holder}]},
        {"$set": fields}, upsert=True, before=True)


def run_lease_of(direct: Direct, key: str) -> Doc | None:
    return direct.find_one(schema.RECONCILIATION_LEASES, {"_id": key})


def renew_run_lease(direct: Direct, key: str, holder: str, fields: Doc) -> bool:
    """Whether the holder still held the lease (and now holds it longer)."""
    return direct.find_one_and_update(
        schema.RECONCILIATION_LEASES, {"_id": key, "holder": holder},
        {"$set": fields}) is not None


def release_run_lease(direct: Direct, key: str, holder: str) -> None:
    direct.delete_one(schema.RECONCILIATION_LEASES, {"_id": key, "holder": holder})
