"""Builders for the models and documents the unit tests feed to the pure code.

Snapshots are built the way `queries.billing_snapshot` returns them: the org document plus
`invoice` (0 or 1 invoice documents, each with its `items`), `chunk` (up to limit + 1
`{_id, started_at, ended_at}`) and `malformed` (`[{"_id": None, "n": k}]` or `[]`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from billing.adapters import documents
from billing.domain.models import Invoice, InvoiceStatus, LineItem, LineItemKind, Org, Prices
from billing.domain.periods import Period

Doc = dict[str, Any]

OCT = Period(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
NOW = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)


def oid() -> str:
    return str(ObjectId())


def org(*, id: str | None = None, currency: str = "usd", per_conversation: int = 10,
        per_started_minute: int = 3, invoice_seq: int = 0) -> Org:
    return Org(
        id=id or oid(), name="Acme", currency=currency,
        prices=Prices(per_conversation=per_conversation, per_started_minute=per_started_minute),
        invoice_seq=invoice_seq, created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def invoice(owner: Org, *, status: InvoiceStatus = InvoiceStatus.DRAFT, complete: bool = False,
            currency: str | None = None, items: tuple[LineItem, ...] = (), version: int = 0,
            period: Period = OCT, conversations: int = 0, skipped_malformed: int = 0,
            id: str | None = None) -> Invoice:
    subtotal = sum(li.amount for li in items)
    return Invoice(
        id=id or oid(), org_id=owner.id, status=status, complete=complete,
        period_start=period.start, period_end=period.end, currency=currency or owner.currency,
        subtotal=subtotal, total=subtotal, conversations=conversations,
        skipped_malformed=skipped_malformed, line_items=items, created_at=NOW, version=version,
    )


def line_item(inv: Invoice, *, kind: LineItemKind = LineItemKind.MANUAL, quantity: int = 1,
              unit_amount: int = 500, currency: str | None = None) -> LineItem:
    return LineItem(
        id=oid(), org_id=inv.org_id, invoice_id=inv.id, kind=kind, description="Setup fee",
        quantity=quantity, unit_amount=unit_amount, amount=quantity * unit_amount,
        currency=currency or inv.currency,
    )


def conversations(n: int, *, start: datetime = OCT.start, seconds: int = 90) -> list[Doc]:
    """n conversations ending in order, as the chunk `$project` returns them."""
    out = []
    for i in range(n):
        started_at = start + timedelta(minutes=10 * i)
        out.append({"_id": ObjectId(), "started_at": started_at,
                    "ended_at": started_at + timedelta(seconds=seconds)})
    return out


def snapshot(owner: Org, *, inv: Invoice | None = None, chunk: list[Doc] | None = None,
             malformed: int = 0) -> Doc:
    snap = documents.org_doc(owner)
    snap["invoice"] = [] if inv is None else [
        {**documents.invoice_doc(inv), "items": [documents.line_item_doc(li)
                                                 for li in inv.line_items]}
    ]
    snap["chunk"] = list(chunk or [])
    snap["malformed"] = [{"_id": None, "n": malformed}] if malformed else []
    return snap
