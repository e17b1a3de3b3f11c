# Generated from billing/_async by tools/synchro.py: do not edit.
"""Line items, as reconciliation reads them."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing._sync.unit_of_work import Direct, Transaction
from billing.adapters import queries, schema

Doc = dict[str, Any]


def line_item_invoices_of_org(direct: Direct, org_id: ObjectId) -> list[Doc]:
    """The org's line items: `_id`, `invoice_id` and `kind`."""
    return direct.find(schema.LINE_ITEMS, {"org_id": org_id}, sort=(),
                             projection={"invoice_id": 1, "kind": 1})


def line_item_amounts_of_org(direct: Direct, org_id: ObjectId) -> list[Doc]:
    """The org's line items: `invoice_id` and `amount`."""
    return direct.find(schema.LINE_ITEMS, {"org_id": org_id}, sort=(),
                             projection={"invoice_id": 1, "amount": 1})


def line_item_quantities_of_org(direct: Direct, org_id: ObjectId) -> list[Doc]:
    """The org's line items: `kind`, `quantity` and `invoice_id`."""
    return direct.find(schema.LINE_ITEMS, {"org_id": org_id}, sort=(),
                             projection={"kind": 1, "quantity": 1, "invoice_id": 1})


def line_item_owners(direct: Direct, line_item_ids: list[ObjectId]
                           ) -> dict[ObjectId, Any]:
    """The org of each of these line items found in any org (see
    queries.line_items_in_any_org: the one read of tenant data not scoped to an org)."""
    if not line_item_ids:
        return {}
    return {d["_id"]: d["org_id"] for d in direct.find(
        schema.LINE_ITEMS, queries.line_items_in_any_org(line_item_ids), sort=(),
        hint="_id_", projection={"org_id": 1})}


def line_item_in_any_org(txn: Transaction, line_item_id: ObjectId) -> Doc | None:
    return txn.find_one(schema.LINE_ITEMS, queries.line_items_in_any_org([line_item_id]))


def line_item_of_org(txn: Transaction, org_id: ObjectId, line_item_id: ObjectId
                           ) -> Doc | None:
    return txn.find_one(schema.LINE_ITEMS, {"_id": line_item_id, "org_id": org_id})


def count_line_item_of_org(txn: Transaction, org_id: ObjectId,
                                 line_item_id: ObjectId) -> int:
    """1 if the org still has the line item, else 0."""
    return txn.count(schema.LINE_ITEMS, {"_id": line_item_id, "org_id": org_id})
