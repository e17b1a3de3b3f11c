"""Credit notes and refunds: refunds left pending, refunds Stripe failed after they succeeded,
credit notes Stripe refunded twice, credited amounts that disagree. Pure.

They are findings of the `payment` check: money moving between the org and Stripe, whichever
way it goes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from billing.domain.models import CreditNote, CreditNoteStatus, RefundStatus
from billing.domain.payments import StripeRefund
from billing.plans.reconciliation.repairs import FinishRefund
from billing.reconcile_findings import Check, Finding

Doc = dict[str, Any]
# How long after its last change a recorded refund is compared with Stripe's: a card refund
# the bank returns turns `failed` days or weeks after it succeeded.
RECHECK = timedelta(days=90)


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


def refunds_to_ask(notes: Iterable[CreditNote], since: datetime) -> dict[str, list[CreditNote]]:
    """The credit notes whose recorded refund (Stripe's id known, changed since `since`) is
    compared with Stripe's refunds of its PaymentIntent, by intent id."""
    out: dict[str, list[CreditNote]] = {}
    for note in notes:
        refund = note.refund
        if refund is None or refund.stripe_id is None:
            continue
        if (refund.updated_at or note.created_at) < since:
            continue
        out.setdefault(refund.intent_id, []).append(note)
    return out


def refunds_unlisted(oid: ObjectId, intent_id: str, notes: Sequence[CreditNote], error: str
                     ) -> Finding:
    """Stripe could not list one intent's refunds: that comparison failed this run (the org's
    other findings stand)."""
    return Finding(
        Check.PAYMENT, str(oid), f"Stripe's refunds of payment intent {intent_id} could not be "
        f"listed, so {len(notes)} credit note(s) were not compared with them", len(notes),
        [n.id for n in notes], "run again once Stripe answers", repairable=False,
        result="failed", error=error)


def refunds_in_stripe(oid: ObjectId, asked: Mapping[str, Sequence[CreditNote]],
                      listed: Mapping[str, Sequence[StripeRefund]]) -> list[Finding]:
    """Each credit note against its intent's refunds in Stripe: a refund recorded `succeeded`
    that Stripe now says `failed` (the bank returned it; its webhook lost) is recorded from
    Stripe's state (the credit note voided); a refund of Stripe's that names the credit note in
    our metadata but is not the one it records (pending or succeeded: money given back twice)
    is reported for a person: billing cannot take a refund back."""
    out = []
    for intent_id, notes in asked.items():
        refunds = listed.get(intent_id, ())
        for note in notes:
            ours = note.refund
            assert ours is not None
            for r in refunds:
                if r.id == ours.stripe_id:
                    if ours.status is RefundStatus.SUCCEEDED and r.status is RefundStatus.FAILED:
                        out.append(Finding(
                            Check.PAYMENT, str(oid), f"refund {r.id} of credit note {note.id} "
                            f"(invoice {note.invoice_id}, {ours.amount} {note.currency}) is "
                            f"recorded succeeded, but Stripe failed it since "
                            f"({r.failure_reason or 'no reason'})", 1, [note.id],
                            "record Stripe's state: the credit note is voided and its credit "
                            "taken off the invoice", repair=FinishRefund(ObjectId(note.id))))
                elif r.metadata.get("credit_note_id") == note.id and r.status in (
                        RefundStatus.PENDING, RefundStatus.SUCCEEDED):
                    out.append(Finding(
                        Check.PAYMENT, str(oid), f"credit note {note.id} (invoice "
                        f"{note.invoice_id}) was refunded twice in Stripe: {r.id} ({r.amount} "
                        f"{note.currency}, {r.status.value}) besides {ours.stripe_id}, the one "
                        "it records", 1, [note.id],
                        "report: the customer got that amount back twice; billing cannot take "
                        "a refund back: settle it with the customer", repairable=False))
    return out
