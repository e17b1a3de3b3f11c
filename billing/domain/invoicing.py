"""Invoice rules as pure functions: old state in, new state out (transitions, line items,
usage, totals). They depend on nothing and never see MongoDB.

The decisions that use them live in billing/plans (billing/plans/invoices.py): a plan reads the
old and new invoice and writes the difference, guarded by the invoice's `version`; the unit of
work only applies those writes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from billing.domain import money
from billing.domain.models import Invoice, InvoiceStatus, LineItem, LineItemKind, Org
from billing.domain.periods import Period
from billing.domain.pricing import Usage
from billing.errors import CurrencyMismatch, InvalidTransition, InvoiceNotEditable

S = InvoiceStatus
TRANSITIONS: dict[InvoiceStatus, frozenset[InvoiceStatus]] = {
    S.DRAFT: frozenset({S.OPEN, S.VOID}),
    S.OPEN: frozenset({S.PAID, S.VOID, S.UNCOLLECTIBLE}),
    S.UNCOLLECTIBLE: frozenset({S.PAID, S.VOID}),
    S.PAID: frozenset(),
    S.VOID: frozenset(),
}


def transition(invoice: Invoice, to: InvoiceStatus) -> Invoice:
    if to not in TRANSITIONS[invoice.status]:
        raise InvalidTransition(
            f"invoice {invoice.id} is {invoice.status.value} and cannot become {to.value}"
        )
    return invoice.model_copy(update={"status": to})


def with_items(invoice: Invoice, items: tuple[LineItem, ...]) -> Invoice:
    """The invoice holding `items`, its totals derived from them (the only place totals are set)."""
    subtotal = money.total(li.amount for li in items)
    return invoice.model_copy(update={"line_items": items, "subtotal": subtotal, "total": subtotal})


def new_invoice(org: Org, period: Period, *, supplement: int, now: datetime, id: str) -> Invoice:
    return Invoice(
        id=id, org_id=org.id, status=S.DRAFT, complete=False, period_start=period.start,
        period_end=period.end, supplement=supplement, currency=org.currency, subtotal=0, total=0,
        created_at=now,
    )


def require_draft(invoice: Invoice) -> None:
    if invoice.status is not S.DRAFT:
        if invoice.status is S.VOID:
            advice = "a void invoice stays as it is"
        else:  # finalised: its number and totals are issued
            advice = "its line items are final: conversations recorded late go on a " \
                     "supplementary invoice (invoices.bill_late_usage), and a credit note " \
                     "(credit_notes.create) lowers what it charges" + (
                         "" if invoice.status is S.PAID  # a paid invoice cannot be voided
                         else "; voiding it writes its conversations off")
        raise InvoiceNotEditable(
            f"invoice {invoice.id} is {invoice.status.value}: only draft invoices can be edited; "
            f"{advice}"
        )


def add_usage(invoice: Invoice, org: Org, used: Usage, *, new_id: Callable[[], str]) -> Invoice:
    """Add conversations and their started minutes to a draft's usage line items.

    Unit prices are frozen on the invoice's line items when they are first created, so a chunk
    billed after a price change still uses the invoice's prices.
    """
    require_draft(invoice)
    if invoice.currency != org.currency:
        raise CurrencyMismatch(
            f"org {org.id} now bills in {org.currency} but its draft invoice {invoice.id} is in "
            f"{invoice.currency}: set the org's currency back to {invoice.currency} to finish the "
            "draft, or void it (the conversations already on it are then written off; "
            "invoices.bill_late_usage, or reconciliation, bills the rest on a supplementary "
            "invoice)"
        )
    items = list(invoice.line_items)
    for kind, qty, unit, text in (
        (LineItemKind.CONVERSATIONS, used.conversations, org.prices.per_conversation,
         "Conversations"),
        (LineItemKind.MINUTES, used.minutes, org.prices.per_started_minute, "Started minutes"),
    ):
        current = invoice.item(kind)
        if current is None:
            items.append(LineItem(
                id=new_id(), org_id=invoice.org_id, invoice_id=invoice.id, kind=kind,
                description=text, quantity=qty, unit_amount=unit,
                amount=money.multiply(unit, qty), currency=invoice.currency,
            ))
        else:
            quantity = current.quantity + qty
            items[items.index(current)] = current.model_copy(update={
                "quantity": quantity, "amount": money.multiply(current.unit_amount, quantity)})
    billed = with_items(invoice, tuple(items))
    return billed.model_copy(update={"conversations": invoice.conversations + used.conversations})


def finalize(invoice: Invoice, *, number: int, now: datetime) -> Invoice:
    """draft -> open with the org's next gapless number."""
    opened = transition(invoice, S.OPEN)
    return opened.model_copy(update={"number": number, "finalized_at": now, "complete": True})


def add_line_item(invoice: Invoice, item: LineItem) -> Invoice:
    require_draft(invoice)
    if item.currency != invoice.currency:
        raise CurrencyMismatch(
            f"line item in {item.currency} cannot go on invoice {invoice.id} in {invoice.currency}"
        )
    return with_items(invoice, (*invoice.line_items, item))


def remove_line_item(invoice: Invoice, item: LineItem) -> Invoice:
    """Remove a manual line item; usage lines are tied to billed conversations and stay."""
    require_draft(invoice)
    if item.kind is not LineItemKind.MANUAL:
        raise InvoiceNotEditable(
            f"line item {item.id} bills conversations ({item.kind.value}) and cannot be removed: "
            "void the invoice instead"
        )
    return with_items(invoice, tuple(li for li in invoice.line_items if li.id != item.id))
