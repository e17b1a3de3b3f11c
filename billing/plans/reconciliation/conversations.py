"""Conversations: usage quantities that disagree, and conversations billing cannot price. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bson import ObjectId

from billing.domain.models import InvoiceStatus, LineItemKind
from billing.reconcile_findings import Check, Finding

Doc = dict[str, Any]
# Invoices credit notes can be issued on (billing.plans.credit_notes).
CREDITABLE = frozenset(s.value for s in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE,
                                         InvoiceStatus.PAID))


def usage_suspects(linked: Mapping[ObjectId, int], items: Iterable[Doc]) -> list[Doc]:
    """Conversations line items whose quantity is not the number of conversations linked to
    them, in what detection read (a chunk may commit between its reads: to be confirmed)."""
    return [i for i in items if i.get("kind") == LineItemKind.CONVERSATIONS.value
            and i.get("quantity") != linked.get(i["_id"], 0)]


def usage_mismatch(oid: ObjectId, item: Doc | None, n: int, status: str | None
                   ) -> Finding | None:
    """The finding for a line item read with the count of its conversations on one snapshot,
    with its invoice's status. Items of void invoices are none: voiding writes their
    conversations off by design."""
    if item is None or item.get("quantity") == n or status == InvoiceStatus.VOID.value:
        return None
    quantity = item.get("quantity")
    # Charged too much: a credit note lowers it, where credit notes can be issued.
    over = isinstance(quantity, int) and quantity > n and status in CREDITABLE
    return Finding(
        Check.USAGE_QUANTITY, str(oid), f"line item {item['_id']} of invoice "
        f"{item.get('invoice_id')} bills {quantity} conversations but {n} are linked to it",
        1, [str(item["_id"])], "report: a person must decide what was charged"
        + ("; a credit note (credit_notes.create) lowers it" if over else ""),
        repairable=False)


MALFORMED_TEXTS = {
    "times": "cannot be priced (started_at or ended_at not one date, or it ends before "
             "it starts)",
    "contract": "break the data contract (line_item_id neither null nor an ObjectId, "
                "or org_id not one ObjectId): billing skips them",
}


def malformed(oid: ObjectId, groups: Iterable[Doc]) -> list[Finding]:
    """Groups (`_id` "contract" or "times", `n`, sample `ids`) of the org's malformed
    conversations: reported, never changed."""
    return [Finding(Check.MALFORMED, str(oid),
                    f"{r['n']} conversations {MALFORMED_TEXTS[r['_id']]}", r["n"],
                    [str(i) for i in r["ids"]], "report: the host must fix them",
                    repairable=False) for r in groups]


def orgless(only: ObjectId | None, kind: str, group: Doc | None) -> list[Finding]:
    """Conversations whose `org_id` is `kind` (a string, a number, null): no org's scan sees
    them. `group`: `n`, sample `ids`, a few of the `orgs` values."""
    if group is None:
        return []
    seen = ", ".join(repr(o) for o in group["orgs"] if o is not None)
    return [Finding(
        Check.MALFORMED, str(only) if only else "-", f"{group['n']} conversations have "
        f"an org_id that is {kind}{f' ({seen})' if seen else ''}, not an org's "
        "ObjectId: billing skips them", group["n"], [str(i) for i in group["ids"]],
        "report: the host must fix them", repairable=False)]
