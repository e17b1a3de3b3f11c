"""Line items, as reconciliation reads them."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing._async.unit_of_work import AsyncDirect, AsyncTransaction
from billing.adapters import queries, schema

Doc = dict[str, Any]


async def line_item_invoices_of_org(direct: AsyncDirect, org_id: ObjectId) -> list[Doc]:
    """The org's line items: `_id`, `invoice_id` and `kind`."""
    return await direct.find(schema.LINE_ITEMS, {"org_id": org_id}, sort=(),
                             projection={"invoice_id": 1, "kind": 1})


async def line_item_amounts_of_org(direct: AsyncDirect, org_id: ObjectId) -> list[Doc]:
    """The org's line items: `invoice_id` and `amount`."""
    return await direct.find(schema.LINE_ITEMS, {"org_id": org_id}, sort=(),
                             projection={"invoice_id": 1, "amount": 1})


async def line_item_quantities_of_org(direct: AsyncDirect, org_id: ObjectId) -> list[Doc]:
    """The org's line items: `kind`, `quantity` and `invoice_id`."""
    return await direct.find(schema.LINE_ITEMS, {"org_id": org_id}, sort=(),
                             projection={"kind": 1, "quantity": 1, "invoice_id": 1})


async def line_item_owners(direct: AsyncDirect, line_item_ids: list[ObjectId]
                           ) -> dict[ObjectId, Any]:
    """The org of each of these line items found in any org (see
    queries.line_items_in_any_org: the one read of tenant data not scoped to an org)."""
    if not line_item_ids:
        return {}
    return {d["_id"]: d["org_id"] for d in await direct.find(
        schema.LINE_ITEMS, queries.line_items_in_any_org(line_item_ids), sort=(),
        hint="_id_", projection={"org_id": 1})}


async def line_item_in_any_org(txn: AsyncTransaction, line_item_id: ObjectId) -> Doc | None:
    return await txn.find_one(schema.LINE_ITEMS, queries.line_items_in_any_org([line_item_id]))


async def line_item_of_org(txn: AsyncTransaction, org_id: ObjectId, line_item_id: ObjectId
                           ) -> Doc | None:
    return await txn.find_one(schema.LINE_ITEMS, {"_id": line_item_id, "org_id": org_id})


async def count_line_item_of_org(txn: AsyncTransaction, org_id: ObjectId,
                                 line_item_id: ObjectId) -> int:
    """1 if the org still has the line item, else 0."""
    return await txn.count(schema.LINE_ITEMS, {"_id": line_item_id, "org_id": org_id})
