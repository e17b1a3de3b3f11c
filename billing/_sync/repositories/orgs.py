# Generated from billing/_async by tools/synchro.py: do not edit.
"""Orgs (tenants): read by id, by their Stripe customer, or a page of ids at a time."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing._sync.unit_of_work import Direct, Transaction
from billing.adapters import documents, schema
from billing.adapters.writes import Write, insert
from billing.domain.models import Org

Doc = dict[str, Any]


def org_doc_in(txn: Transaction, org_id: ObjectId) -> Doc | None:
    """The org's document in the transaction's snapshot, or None."""
    return txn.find_one(schema.ORGS, {"_id": org_id})


def org_doc_now(direct: Direct, org_id: ObjectId) -> Doc | None:
    """The org's document as committed now (outside any transaction), or None."""
    return direct.find_one(schema.ORGS, {"_id": org_id})


def org_doc_of_customer(txn: Transaction, customer_id: str) -> Doc | None:
    """The org whose Stripe customer this is: the customer id is the tenant key here (a Stripe
    event names no org we can trust), and one org holds a customer."""
    return txn.find_one(schema.ORGS, {"stripe_customer_id": customer_id})


def _scope(org_id: ObjectId | None) -> Doc:
    return {} if org_id is None else {"_id": org_id}


def count_orgs(direct: Direct, org_id: ObjectId | None = None) -> int:
    """How many orgs there are (0 or 1 with `org_id`)."""
    return direct.count(schema.ORGS, _scope(org_id))


def org_ids_page(direct: Direct, *, org_id: ObjectId | None = None,
                       after: ObjectId | None = None, limit: int) -> list[ObjectId]:
    """Up to `limit` org ids after `after`, in `_id` order (only `org_id` with one)."""
    scope = _scope(org_id)
    page_filter = scope if after is None else {**scope, "_id": {"$gt": after}}
    docs = direct.find(schema.ORGS, page_filter, projection={"_id": 1}, limit=limit)
    return [doc["_id"] for doc in docs]


def insert_org(org: Org) -> Write:
    """The write creating the org (its id is unique: a second insert is a stale read)."""
    return insert(schema.ORGS, documents.org_doc(org))


def set_org_schedule(org_id: ObjectId, days: list[int] | None) -> Write:
    """The write setting the org's own retry schedule (None: the deployment's)."""
    return Write(schema.ORGS, "update_one", {"_id": org_id},
                 {"$set": {"collection_schedule": days}})


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
