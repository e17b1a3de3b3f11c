"""Invoices: wrong totals, interrupted drafts, and where late conversations are billed. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId

from billing.adapters.writes import invoice_changes
from billing.domain import invoicing
from billing.domain.models import (
    Invoice,
    InvoiceStatus,
    LateUsage,
    Payment,
)
from billing.domain.periods import Period, next_month
from billing.errors import StateConflict
from billing.plans import Plan
from billing.plans.invoices import may_move_money
from billing.plans.reconciliation.repairs import (
    BillLate,
    ResumeDraft,
    Retotal,
)
from billing.reconcile_findings import Check, Finding

Doc = dict[str, Any]


def wrong_totals(oid: ObjectId, invoices: Sequence[Doc], items: Iterable[Doc]) -> list[Finding]:
    """Invoices (`status`, `subtotal`, `total`, `amount_paid`, `amount_credited`) whose totals
    differ from the sum of their line items (`invoice_id`, `amount`); paid and void ones, and
    those the sum would put below what was paid and credited, are only reported."""
    sums: dict[Any, int] = {}
    for item in items:
        sums[item["invoice_id"]] = sums.get(item["invoice_id"], 0) + item["amount"]
    out = []
    for r in invoices:
        total = sums.get(r["_id"], 0)
        if r["subtotal"] != total or r["total"] != total:
            closed = r["status"] in (InvoiceStatus.PAID.value, InvoiceStatus.VOID.value)
            settled = (r.get("amount_paid") or 0) + (r.get("amount_credited") or 0)
            if closed:
                advice = _closed_advice(r["status"], r["total"] > total)
            elif total < settled:
                advice = (f"report: {settled} of it was already paid or credited, more than "
                          "its line items sum to; recomputing would leave more credited than "
                          "the total: a person must decide (restore the missing line item, or "
                          "void the invoice)")
            else:
                advice = "recompute totals from line items"
            keep = closed or total < settled
            out.append(Finding(
                Check.WRONG_TOTALS, str(oid), f"invoice {r['_id']} ({r['status']}) totals "
                f"{r['subtotal']}/{r['total']} but its line items sum to {total}", 1,
                [str(r["_id"])], advice, repairable=not keep,
                repair=None if keep else Retotal(r["_id"])))
    return out


def _closed_advice(status: str, overcharged: bool) -> str:
    if status == InvoiceStatus.PAID.value and overcharged:
        return ("report: money has moved; a credit note (credit_notes.create) gives back what "
                "it charged beyond its line items")
    return "report: money has moved or the invoice is closed"


def totals_differ(invoice: Invoice) -> bool:
    fixed = invoicing.with_items(invoice, invoice.line_items)
    return (fixed.subtotal, fixed.total) != (invoice.subtotal, invoice.total)


def retotal(invoice: Invoice, latest: Payment | None) -> Plan[int]:
    """The invoice's totals set from its line items (the new total as result); StateConflict
    while a payment is in flight, created for the stored total: changing it now would let that
    payment take more (or less) than the invoice says. The next run, after it settles."""
    if invoice.payment_lease is not None or (latest is not None and may_move_money(latest)):
        raise StateConflict(
            f"invoice {invoice.id} has a payment in flight "
            f"({latest.id if latest else 'leased'}): its totals are recomputed once that "
            "payment has settled; run again later")
    fixed = invoicing.with_items(invoice, invoice.line_items)
    settled = invoice.amount_paid + invoice.amount_credited
    if fixed.total < settled:  # read again since detection: a credit note came in between
        raise StateConflict(
            f"invoice {invoice.id}'s line items sum to {fixed.total}, below the {settled} "
            "already paid or credited: recomputing would leave more credited than the total; "
            "a person must decide (restore the missing line item, or void the invoice)")
    return Plan(fixed.total, invoice_changes(invoice, fixed))


def stale_drafts(oid: ObjectId, drafts: Iterable[Doc], before: datetime) -> list[Finding]:
    """Incomplete drafts created before `before`: left part-billed by an interrupted run."""
    return [Finding(
        Check.STALE_DRAFT, str(oid), f"draft {d['_id']} for {_period(d).label} was left "
        "part-billed by an interrupted run", 1, [str(d["_id"])], "resume and finalise",
        repair=ResumeDraft(_period(d), d["supplement"]))
        for d in drafts if d["created_at"] < before]


def unbilled(oid: ObjectId, months: Iterable[Doc]) -> list[Finding]:
    """One finding per month of unbilled conversations (`_id` {y, m}, `n`, sample `ids`)."""
    out = []
    for r in months:
        start = datetime(r["_id"]["y"], r["_id"]["m"], 1, tzinfo=UTC)
        period = Period(start, next_month(start))
        noun = "conversation" if r["n"] == 1 else "conversations"
        out.append(Finding(
            Check.UNBILLED, str(oid), f"{r['n']} unbilled {noun} ended in {period.label}",
            r["n"], [str(i) for i in r["ids"]], "invoices.bill_late_usage: onto the month's "
            "draft, or a supplementary invoice if it is final", repair=BillLate(period)))
    return out


@dataclass(frozen=True)
class LateTarget:
    """Where a month's late conversations go: which invoice of the period, and whether it is
    left a draft."""

    supplement: int
    keep_open: bool


def late_target(existing: Sequence[Doc]) -> LateTarget:
    """From the period's invoices (`supplement`, `status`, `complete`, `keep_draft`, by
    supplement): its draft if it has one, else the period's invoice if there is none yet, else
    the next supplement. A complete draft, or one whose run asked to keep it a draft
    (create_for_period(finalize=False), still collecting), was kept open on purpose: the late
    conversations join it and it stays a draft for whoever is editing it."""
    draft = next((d for d in existing if d["status"] == "draft"), None)
    if draft is not None:
        return LateTarget(draft["supplement"],
                          keep_open=bool(draft["complete"] or draft.get("keep_draft")))
    return LateTarget(existing[-1]["supplement"] + 1 if existing else 0, keep_open=False)


def late_usage(oid: ObjectId, period: Period, existing: Sequence[Doc], late: int) -> LateUsage:
    """Where `late` unbilled conversations of the period would go (`existing`: the period's
    invoices, as for late_target), with the draft's id when they would join one."""
    target = late_target(existing)
    draft = next((d["_id"] for d in existing
                  if d["supplement"] == target.supplement and d["status"] == "draft"), None)
    return LateUsage(org_id=str(oid), period_start=period.start, period_end=period.end,
                     conversations=late, supplement=target.supplement,
                     invoice_id=None if draft is None else str(draft),
                     stays_draft=target.keep_open)


def _period(doc: Doc) -> Period:
    return Period(doc["period_start"], doc["period_end"])
