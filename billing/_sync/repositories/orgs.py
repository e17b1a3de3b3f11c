# Generated from billing/_async by tools/synchro.py: do not edit.
"""Orgs, as the long runs read them."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing._sync.unit_of_work import Direct, Transaction
from billing.adapters import schema

Doc = dict[str, Any]


def org_exists(direct: Direct, org_id: ObjectId) -> bool:
    return bool(direct.find(schema.ORGS, {"_id": org_id}, sort=(), limit=1,
                                  projection={"_id": 1}))


def org_document(direct: Direct, org_id: ObjectId) -> Doc | None:
    found = direct.find(schema.ORGS, {"_id": org_id}, sort=(), limit=1, hint="_id_")
    return found[0] if found else None


def existing_org_ids(direct: Direct, org_ids: list[Any]) -> set[Any]:
    """Which of these ids are orgs'."""
    return {d["_id"] for d in direct.find(schema.ORGS, {"_id": {"$in": org_ids}},
                                                sort=(), hint="_id_", projection={"_id": 1})}


def org_in_txn(txn: Transaction, org_id: ObjectId) -> Doc | None:
    return txn.find_one(schema.ORGS, {"_id": org_id})
