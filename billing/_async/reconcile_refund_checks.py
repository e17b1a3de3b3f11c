"""Reconciliation of credit notes and refunds (findings of the `payment` check).

A refund still `pending` after `stale_after` was left by a process that died (before Stripe,
or between Stripe and the record) or lost its webhook: `--apply` finishes it
(`credit_notes.finish_refund`), which looks for the refund Stripe made for the credit note
before making one. Recorded refunds changed in the last `RECHECK` are compared with Stripe's
refunds of their PaymentIntent: one Stripe failed after it succeeded (its webhook lost) is
recorded so (`finish_refund`: the credit note voided), and a second refund naming a credit note
that records another (money given back twice) is reported for a person. An invoice whose
credited amount is not the sum of its issued credit notes is reported for a person, once
confirmed on one snapshot (a credit note may commit between the first reads).
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

from bson import ObjectId

from billing._async.credit_notes import AsyncCreditNotes
from billing._async.repositories.credit_notes import (
    credit_notes_of_invoice,
    credit_notes_of_org,
    credited_invoice_in,
    credited_invoices,
)
from billing._async.service_context import AsyncContext
from billing._async.unit_of_work import AsyncTransaction
from billing.domain.models import RefundStatus
from billing.errors import BillingError, PaymentInProgress, RefundFailed
from billing.plans import reconciliation as plan
from billing.reconcile_findings import Finding


class AsyncRefundChecks:
    def __init__(self, ctx: AsyncContext, credit_notes: AsyncCreditNotes) -> None:
        self._ctx = ctx
        self._credit_notes = credit_notes

    async def scan(self, oid: ObjectId, stale_before: datetime) -> list[Finding]:
        direct = self._ctx.uow.direct
        notes = await credit_notes_of_org(direct, oid)
        if not notes:
            return []
        invoices = await credited_invoices(direct, oid,
                                           sorted({ObjectId(n.invoice_id) for n in notes}))
        can_ask = self._ctx.gateway_or_none is not None
        out = plan.stuck_refunds(oid, notes, stale_before, can_ask=can_ask)
        for suspect in plan.credits_off(oid, notes, invoices):
            confirmed = await self._ctx.uow.run(partial(
                self._credits_of, oid=oid, iid=ObjectId(suspect.ids[0])))
            out += confirmed
        if can_ask:
            asked = plan.refunds_to_ask(notes, self._ctx.now() - plan.RECHECK)
            listed = {}
            for intent, of_intent in asked.items():
                try:
                    listed[intent] = await self._ctx.gateway.list_refunds(intent)
                except BillingError as exc:  # one intent unlisted: the others still compared
                    out.append(plan.refunds_unlisted(oid, intent, of_intent,
                                                     f"{type(exc).__name__}: {exc.message}"))
            out += plan.refunds_in_stripe(oid, {i: n for i, n in asked.items() if i in listed},
                                          listed)
        return out

    @staticmethod
    async def _credits_of(txn: AsyncTransaction, *, oid: ObjectId, iid: ObjectId
                          ) -> list[Finding]:
        """The credited-amount check of one invoice, its credit notes and itself read on one
        snapshot."""
        notes = await credit_notes_of_invoice(txn, oid, iid)
        invoice = await credited_invoice_in(txn, oid, iid)
        return plan.credits_off(oid, notes, [] if invoice is None else [invoice])

    async def repair(self, repair: plan.FinishRefund, org_id: str) -> str:
        try:
            note = await self._credit_notes.finish_refund(org_id, repair.credit_note_id)
        except RefundFailed:  # recorded: the credit note is void, its credit taken off
            return f"credit note {repair.credit_note_id}: refund failed in Stripe, credit note void"
        refund = note.refund
        if refund is not None and refund.status is RefundStatus.PENDING:
            raise PaymentInProgress(  # Stripe is still processing it: waiting, not repaired
                f"refund {refund.stripe_id} of credit note {note.id} is still pending at "
                "Stripe; it settles by webhook or a later run")
        return f"credit note {note.id}: refund {refund.status.value if refund else 'none'}"
