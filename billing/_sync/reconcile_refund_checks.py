# Generated from billing/_async by tools/synchro.py: do not edit.
"""Reconciliation of credit notes and refunds (findings of the `payment` check).

A refund still `pending` after `stale_after` was left by a process that died (before Stripe,
or between Stripe and the record) or lost its webhook: `--apply` finishes it
(`credit_notes.finish_refund`), which looks for the refund Stripe made for the credit note
before making one, so a credit note is never refunded twice. An invoice whose credited amount
is not the sum of its issued credit notes is reported for a person.
"""

from __future__ import annotations

from datetime import datetime

from bson import ObjectId

from billing._sync.credit_notes import CreditNotes
from billing._sync.repositories.credit_notes import credit_notes_of_org, credited_invoices
from billing._sync.service_context import Context
from billing.domain.models import RefundStatus
from billing.errors import PaymentInProgress
from billing.plans import reconciliation as plan
from billing.reconcile_findings import Finding


class RefundChecks:
    def __init__(self, ctx: Context, credit_notes: CreditNotes) -> None:
        self._ctx = ctx
        self._credit_notes = credit_notes

    def scan(self, oid: ObjectId, stale_before: datetime) -> list[Finding]:
        direct = self._ctx.uow.direct
        notes = credit_notes_of_org(direct, oid)
        if not notes:
            return []
        invoices = credited_invoices(direct, oid,
                                           sorted({ObjectId(n.invoice_id) for n in notes}))
        return plan.stuck_refunds(oid, notes, stale_before,
                                  can_ask=self._ctx.gateway_or_none is not None) + \
            plan.credits_off(oid, notes, invoices)

    def repair(self, repair: plan.FinishRefund, org_id: str) -> str:
        note = self._credit_notes.finish_refund(org_id, repair.credit_note_id)
        refund = note.refund
        if refund is not None and refund.status is RefundStatus.PENDING:
            raise PaymentInProgress(  # Stripe is still processing it: waiting, not repaired
                f"refund {refund.stripe_id} of credit note {note.id} is still pending at "
                "Stripe; it settles by webhook or a later run")
        return f"credit note {note.id}: refund {refund.status.value if refund else 'none'}"
