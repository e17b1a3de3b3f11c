"""Credit notes and refunds: refunds left pending, credited amounts that disagree. Pure.

They are findings of the `payment` check: money moving between the org and Stripe, whichever
way it goes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId

from billing.domain.models import CreditNote, CreditNoteStatus, RefundStatus
from billing.plans.reconciliation.repairs import FinishRefund
from billing.reconcile_findings import Check, Finding

Doc = dict[str, Any]


def stuck_refunds(oid: ObjectId, notes: Iterable[CreditNote], stale_before: datetime, *,
                  can_ask: bool) -> list[Finding]:
    """Refunds still `pending` since before `stale_before` (a process that died between the
    credit note and Stripe, or between Stripe and the record; a lost webhook): finished from
    Stripe's state, made only if Stripe has none for the credit note."""
    out = []
    for note in notes:
        refund = note.refund
        if refund is None or refund.status is not RefundStatus.PENDING:
            continue
        since = refund.updated_at or note.created_at
        if since >= stale_before:
            continue
        made = f"refund {refund.stripe_id}" if refund.stripe_id else "a refund not recorded"
        out.append(Finding(
            Check.PAYMENT, str(oid), f"{made} of credit note {note.id} (invoice "
            f"{note.invoice_id}, {refund.amount} {note.currency}) is pending since "
            f"{since.isoformat()}", 1, [note.id],
            "finish it from Stripe's state (made once, never twice)" if can_ask else
            "report: finishing needs Stripe (set STRIPE_API_KEY)", repairable=can_ask,
            repair=FinishRefund(ObjectId(note.id)) if can_ask else None))
    return out


def credits_off(oid: ObjectId, notes: Sequence[CreditNote], invoices: Iterable[Doc]
                ) -> list[Finding]:
    """Invoices whose `amount_credited` is not the sum of their issued credit notes, or exceeds
    their total: reported for a person (money may have been given back)."""
    issued: dict[str, int] = {}
    for note in notes:
        if note.status is CreditNoteStatus.ISSUED:
            issued[note.invoice_id] = issued.get(note.invoice_id, 0) + note.amount
    out = []
    for inv in invoices:
        credited = int(inv.get("amount_credited") or 0)
        expected = issued.get(str(inv["_id"]), 0)
        if credited != expected or credited > int(inv.get("total") or 0):
            out.append(Finding(
                Check.PAYMENT, str(oid), f"invoice {inv['_id']} records {credited} credited, "
                f"its issued credit notes {expected} (total {inv.get('total')})", 1,
                [str(inv["_id"])], "report: compare its credit notes and refunds in Stripe",
                repairable=False))
    return out
