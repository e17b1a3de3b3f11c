"""Links between conversations, line items and invoices: what dangles, what is restored, what
is released. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bson import ObjectId

from billing.adapters import documents, schema
from billing.adapters.writes import Write, insert
from billing.domain.models import (
    Invoice,
    InvoiceStatus,
    LineItem,
    LineItemKind,
)
from billing.errors import StateConflict
from billing.plans.reconciliation.repairs import (
    DeleteOrphanItem,
    ReleaseLinks,
)
from billing.reconcile_findings import Check, Finding

Doc = dict[str, Any]


def missing_items(linked: Mapping[ObjectId, int], items: Iterable[Doc]) -> list[ObjectId]:
    """The line items conversations point to that the org does not have."""
    known = {i["_id"] for i in items}
    return [item_id for item_id in linked if item_id not in known]


def dangling(oid: ObjectId, linked: Mapping[ObjectId, int], items: Sequence[Doc],
             elsewhere: Mapping[ObjectId, Any], broken: Mapping[ObjectId, int],
             invoice_ids: set[Any]) -> list[Finding]:
    """Findings of links to missing line items and of line items whose invoice is missing.

    `linked`: the org's billed conversations per line item; `items`: its line items
    (`_id`, `invoice_id`, `kind`); `elsewhere`: missing items found in another org (id to org id);
    `broken`: malformed conversations per missing item; `invoice_ids`: the org's invoices."""
    out: list[Finding] = []
    for item_id in missing_items(linked, items):
        n = linked[item_id]
        if item_id in elsewhere:
            out.append(Finding(
                Check.DANGLING_LINK, str(oid), f"{n} conversations of org {oid} are billed on "
                f"line item {item_id} of org {elsewhere[item_id]}", n, [str(item_id)],
                "report: their org_id was changed after billing or is not one id; a person "
                "must decide which org they belong to (they stay billed)", repairable=False))
        elif broken.get(item_id):
            out.append(Finding(
                Check.DANGLING_LINK, str(oid), f"{n} conversations point to missing line "
                f"item {item_id}, {broken[item_id]} of them malformed", n, [str(item_id)],
                "report: the host must fix them before they can be released",
                repairable=False))
        else:
            out.append(Finding(
                Check.DANGLING_LINK, str(oid), f"{n} conversations point to missing line "
                f"item {item_id}", n, [str(item_id)],
                "restore the line item from its invoice, or release them to be billed again",
                repair=ReleaseLinks(item_id)))
    for item in items:
        n = linked.get(item["_id"], 0)
        if n and item.get("kind", LineItemKind.CONVERSATIONS.value) != \
                LineItemKind.CONVERSATIONS.value:
            out.append(Finding(
                Check.DANGLING_LINK, str(oid), f"{n} conversations are linked to line item "
                f"{item['_id']} of invoice {item['invoice_id']}, a {item.get('kind')} item "
                "(billing links conversations only to conversations items)", n,
                [str(item["_id"])], "report: line_item_id was written by someone else than "
                "billing; a person must decide whether they were billed (the usage_quantity "
                "check compares the invoice's items with its conversations)",
                repairable=False))
        if item["invoice_id"] not in invoice_ids:
            n = linked.get(item["_id"], 0)
            out.append(Finding(
                Check.DANGLING_LINK, str(oid), f"line item {item['_id']} belongs to missing "
                f"invoice {item['invoice_id']} ({n} conversations)", max(n, 1),
                [str(item["_id"])], "delete the line item; release its conversations",
                repair=DeleteOrphanItem(item["_id"])))
    return out


def restored_item(invoice: Invoice, item_id: str, linked: int) -> LineItem | None:
    """The conversations line item a broken writer deleted, rebuilt from what its invoice still
    records (conversation count, stored subtotal); None when the invoice cannot tell."""
    if (linked <= 0 or invoice.status is InvoiceStatus.VOID or invoice.conversations != linked
            or invoice.item(LineItemKind.CONVERSATIONS) is not None):
        return None
    missing = invoice.subtotal - sum(li.amount for li in invoice.line_items)
    if missing < 0 or missing % linked:
        return None
    return LineItem(id=item_id, org_id=invoice.org_id, invoice_id=invoice.id,
                    kind=LineItemKind.CONVERSATIONS, description="Conversations", quantity=linked,
                    unit_amount=missing // linked, amount=missing, currency=invoice.currency)


def owned_elsewhere(item: Doc | None, oid: ObjectId, item_id: ObjectId, n: int) -> bool:
    """Whether the missing item turned up in this org after all (nothing to do); a conflict for
    a person if it belongs to another org; False if it is still missing."""
    if item is None:
        return False
    if item["org_id"] == oid:
        return True
    raise StateConflict(
        f"{n} conversations of org {oid} point to line item {item_id} of org "
        f"{item['org_id']}: a person must decide which org they belong to")


def lacking_item(invoice: Invoice) -> bool:
    """An invoice that counts conversations but has no conversations line item."""
    return invoice.item(LineItemKind.CONVERSATIONS) is None and bool(invoice.conversations)


def restoration(candidates: Sequence[Invoice], item_id: ObjectId, n: int) -> LineItem | None:
    """The one line item to restore among invoices lacking theirs; None to release instead
    (no invoice records them); StateConflict when invoices lack it but cannot tell its amount."""
    restored = [r for r in (restored_item(c, str(item_id), n) for c in candidates) if r]
    if len(restored) == 1:
        return restored[0]
    if candidates:
        raise StateConflict(
            f"{n} conversations point to missing line item {item_id}, and invoice(s) "
            f"{', '.join(c.id for c in candidates)} lack their conversations item but "
            "cannot tell its amount: a person must decide what was charged")
    return None


def restore(item: LineItem) -> list[Write]:
    return [insert(schema.LINE_ITEMS, documents.line_item_doc(item))]


def release(oid: ObjectId, item_id: ObjectId, n: int, *, orphan_count: int | None = None
            ) -> list[Write]:
    """Links set back to null (exactly the `n` read); with `orphan_count`, the orphan line
    item deleted too (guarded by whether it was still there)."""
    hold = {"org_id": oid, "line_item_id": item_id}
    writes: list[Write] = []
    if n:
        writes.append(Write(schema.CONVERSATIONS, "update_many", hold,
                            {"$set": {"line_item_id": None}}, expect=n))
    if orphan_count is not None:
        writes.append(Write(schema.LINE_ITEMS, "delete_one", {"_id": item_id, "org_id": oid}, {},
                            expect=orphan_count))
    return writes
