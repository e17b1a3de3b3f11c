"""Credit notes: correcting a finalised invoice, and refunding a paid one through Stripe.

The decisions are in `billing.plans.credit_notes`; the refund is made outside any transaction,
between the transaction that stores the credit note (refund `pending`, leased to this call) and
the one that records Stripe's answer.
"""

from __future__ import annotations

import secrets
from typing import Any, NamedTuple

from bson import ObjectId

from billing import faults
from billing._async.repositories.credit_notes import (
    credit_note_in,
    credit_note_of_request,
    credit_notes_listed,
    credit_notes_of_invoice,
)
from billing._async.repositories.invoices import read_invoice
from billing._async.repositories.orgs import org_doc_in
from billing._async.repositories.payments import payment_docs_of_invoice
from billing._async.service_context import AsyncContext
from billing._async.unit_of_work import AsyncTransaction
from billing.adapters import documents, ids
from billing.domain.models import (
    CreditNote,
    CreditNoteStatus,
    Invoice,
    Org,
    Payment,
    RefundStatus,
)
from billing.domain.payments import StripeRefund
from billing.errors import BillingError, NotFound, PaymentProviderUnavailable
from billing.plans import Plan, require_org
from billing.plans import credit_notes as plans


class AsyncCreditNotes:
    def __init__(self, ctx: AsyncContext) -> None:
        self._ctx = ctx

    async def create(
        self, org_id: Any, invoice_id: Any, *, reason: Any, request_id: Any,
        amount: Any = None, lines: Any = None, memo: Any = None, refund: Any = None,
    ) -> CreditNote:
        """Issue a credit note on an open, uncollectible or paid invoice, numbered per org.

        Exactly one of `amount` (a lump sum, int minor units) and `lines` (line item ids with
        amounts, each at most what is left to credit on that item). `reason` is Stripe's
        (duplicate, fraudulent, order_change, product_unsatisfactory), `memo` optional text.
        The invoice's line items and total never change. Unpaid: the amount due goes down (an
        invoice credited in full is paid, without a charge); refused with PaymentInProgress
        (retryable) while a payment may be charging it. Paid: the amount is refunded through
        Stripe (`refund` unset or True; at most what was paid and not refunded), or with
        `refund=False` recorded as settled outside Stripe. Idempotent per `request_id`: a
        repeat returns the same credit note and finishes a refund left unfinished.

        Raises InvalidInput / InvalidMoney, OrgNotFound, InvoiceNotFound, LineItemNotFound,
        InvoiceNotCreditable (draft, void), CreditExceedsTotal, RefundExceedsPaid,
        RefundFailed (Stripe refused: the credit note is void), PaymentProviderUnavailable
        (retryable: the refund stays pending; repeat the call), ConfigurationError (a refund
        without a gateway; nothing written)."""
        oid = ids.object_id(org_id, name="org_id")
        iid = ids.object_id(invoice_id, name="invoice_id")
        req = plans.request(request_id=request_id, reason=reason, amount=amount, lines=lines,
                            memo=memo, refund=refund)
        token = secrets.token_hex(8)

        async def work(txn: AsyncTransaction) -> CreditNote:
            plan = self._plan(await self._read(txn, oid, iid, req), req, token)
            await txn.write(plan.writes)
            return plan.result

        note = await self._ctx.uow.run(work)
        if note.status is CreditNoteStatus.VOID:
            raise plans.failed_error(note)
        if note.refund is None or note.refund.status is not RefundStatus.PENDING:
            return note
        fresh = note.refund.lease is not None and note.refund.lease.token == token
        return await self._finish(oid, note, token if fresh else None)

    async def preview(
        self, org_id: Any, invoice_id: Any, *, reason: Any, request_id: Any,
        amount: Any = None, lines: Any = None, memo: Any = None, refund: Any = None,
    ) -> plans.CreditNotePreview:
        """The credit note `create` with these arguments would issue now (its number, amount,
        settlement and refund), decided by the same rule from the same reads, with nothing
        written and nothing sent to Stripe; the one already issued for `request_id`, if any
        (`existing_id` then names it). With the invoice as read, before this credit note.
        Raises what `create` raises before it writes. What a dry run shows."""
        oid = ids.object_id(org_id, name="org_id")
        iid = ids.object_id(invoice_id, name="invoice_id")
        req = plans.request(request_id=request_id, reason=reason, amount=amount, lines=lines,
                            memo=memo, refund=refund)

        async def read(txn: AsyncTransaction) -> plans.CreditNotePreview:
            reads = await self._read(txn, oid, iid, req)
            note = self._plan(reads, req, "").result
            return plans.CreditNotePreview(
                note, reads.invoice, None if reads.existing is None else reads.existing.id)

        return await self._ctx.uow.run(read)

    async def _read(self, txn: AsyncTransaction, oid: ObjectId, iid: ObjectId,
                    req: plans.CreditRequest) -> _Reads:
        org_doc = await org_doc_in(txn, oid)
        org = require_org(org_doc, oid)  # OrgNotFound before InvoiceNotFound
        invoice = await read_invoice(txn, oid, iid)
        existing = await credit_note_of_request(txn, oid, req.request_id)
        notes = await credit_notes_of_invoice(txn, oid, iid)
        payments = [documents.payment(d) for d in await payment_docs_of_invoice(txn, oid, iid)]
        return _Reads(org_doc, org, invoice, existing, notes, payments)

    def _plan(self, reads: _Reads, req: plans.CreditRequest, token: str) -> Plan[CreditNote]:
        return plans.create(reads.org, reads.invoice, reads.existing, reads.notes,
                            reads.payments, req, now=self._ctx.now(),
                            lease_seconds=self._ctx.payment_lease_seconds, token=token,
                            box=self._ctx.outbox(reads.org_doc),
                            can_refund=self._ctx.gateway_or_none is not None)

    async def finish_refund(self, org_id: Any, credit_note_id: Any) -> CreditNote:
        """Finish a credit note's refund left pending (a crash, a lost answer, a refund Stripe
        is still processing): made once, whatever happened before. A refund recorded
        `succeeded` is asked again (with a gateway): a card refund the bank returned later is
        `failed` in Stripe, and recorded so. Returns the credit note as now recorded;
        RefundFailed if Stripe refused or failed it; PaymentInProgress while another call makes
        it; PaymentProviderUnavailable when Stripe cannot be asked; RefundDuplicated when
        Stripe holds a second refund for it."""
        oid = ids.object_id(org_id, name="org_id")
        nid = ids.object_id(credit_note_id, name="credit_note_id")
        note = await self.get(oid, nid)
        refund = note.refund
        if refund is not None and refund.status is RefundStatus.SUCCEEDED \
                and refund.stripe_id is not None and self._ctx.gateway_or_none is not None:
            return await self._recheck(oid, note, refund.stripe_id)
        if refund is None or refund.status is not RefundStatus.PENDING:
            return note
        return await self._finish(oid, note, None)

    async def get(self, org_id: Any, credit_note_id: Any) -> CreditNote:
        """The org's credit note; NotFound otherwise."""
        oid = ids.object_id(org_id, name="org_id")
        nid = ids.object_id(credit_note_id, name="credit_note_id")

        async def read(txn: AsyncTransaction) -> CreditNote | None:
            return await credit_note_in(txn, oid, nid)

        note = await self._ctx.uow.run(read)
        if note is None:
            raise NotFound(f"no credit note {nid} in org {oid}")
        return note

    async def list(self, org_id: Any, invoice_id: Any = None) -> list[CreditNote]:
        """The org's credit notes (of one invoice, when given), by number."""
        oid = ids.object_id(org_id, name="org_id")
        iid = None if invoice_id is None else ids.object_id(invoice_id, name="invoice_id")
        return await credit_notes_listed(self._ctx.uow.direct, oid, iid)

    # ---- the refund bracket ------------------------------------------------------------------

    async def _finish(self, oid: ObjectId, note: CreditNote, token: str | None) -> CreditNote:
        """Make or settle the refund, holding its lease (`token`: this call took it when it
        stored the credit note; None: take it now). A refund with no Stripe id recorded may
        still exist in Stripe (a crash, a lost answer): it is looked for first."""
        if token is None:
            token = secrets.token_hex(8)
            taken = await self._take(oid, note, token)
            if taken is None:
                return await self._settled(oid, note)
            note = taken
        refund = note.refund
        assert refund is not None
        gateway = self._ctx.gateway
        found: StripeRefund | None = None
        extra: StripeRefund | None = None
        try:
            if refund.stripe_id is not None:
                found = await gateway.retrieve_refund(refund.stripe_id)
            else:
                made = [r for r in await gateway.list_refunds(refund.intent_id)
                        if r.metadata.get("credit_note_id") == note.id]
                found = made[0] if made else None
                extra = made[1] if len(made) > 1 else None  # made twice already: said below
        except BillingError as exc:
            await self._record(oid, note, None, release=token)
            raise _unknown(note) from exc
        if found is None:
            try:
                found = await gateway.refund(
                    intent_id=refund.intent_id, amount=refund.amount,
                    idempotency_key=refund.idempotency_key,
                    metadata={"org_id": str(oid), "invoice_id": note.invoice_id,
                              "credit_note_id": note.id})
            except BillingError as exc:
                if exc.retryable:  # it may exist in Stripe: the next call looks for it
                    await self._record(oid, note, None, release=token)
                    raise
                recorded = await self._record(oid, note, None, failure=(
                    getattr(exc, "code", None), exc.message))
                raise plans.failed_error(recorded) from exc
            faults.hit("credit_notes.after_refund")
        recorded = await self._record(oid, note, found, release=token)
        if extra is not None:
            raise plans.duplicated_error(recorded, extra)
        if recorded.status is CreditNoteStatus.VOID:
            raise plans.failed_error(recorded)
        return recorded

    async def _recheck(self, oid: ObjectId, note: CreditNote, stripe_id: str) -> CreditNote:
        """A refund recorded `succeeded`, as Stripe has it now (failed: the credit note is
        voided; RefundFailed)."""
        try:
            found = await self._ctx.gateway.retrieve_refund(stripe_id)
        except BillingError as exc:
            raise PaymentProviderUnavailable(
                f"Stripe could not be asked about refund {stripe_id} of credit note {note.id}: "
                "it stays recorded as succeeded; repeat the call or run reconciliation "
                "later") from exc
        recorded = await self._record(oid, note, found)
        if recorded.status is CreditNoteStatus.VOID:
            raise plans.failed_error(recorded)
        return recorded

    async def _take(self, oid: ObjectId, note: CreditNote, token: str) -> CreditNote | None:
        async def work(txn: AsyncTransaction) -> CreditNote | None:
            current = await credit_note_in(txn, oid, ObjectId(note.id))
            if current is None:
                return None
            plan = plans.take_refund(current, now=self._ctx.now(),
                                     lease_seconds=self._ctx.payment_lease_seconds, token=token)
            await txn.write(plan.writes)
            return plan.result

        return await self._ctx.uow.run(work)

    async def _settled(self, oid: ObjectId, note: CreditNote) -> CreditNote:
        current = await self.get(oid, note.id)
        if current.status is CreditNoteStatus.VOID:
            raise plans.failed_error(current)
        return current

    async def _record(self, oid: ObjectId, note: CreditNote, found: StripeRefund | None, *,
                      failure: tuple[str | None, str] | None = None,
                      release: str | None = None) -> CreditNote:
        async def work(txn: AsyncTransaction) -> CreditNote:
            org_doc = await org_doc_in(txn, oid)
            current = await credit_note_in(txn, oid, ObjectId(note.id))
            assert current is not None
            invoice = await read_invoice(txn, oid, ObjectId(note.invoice_id))
            plan = plans.record_refund(current, invoice, found, now=self._ctx.now(),
                                       failure=failure, release=release,
                                       box=self._ctx.outbox(org_doc))
            await txn.write(plan.writes)
            return plan.result

        return await self._ctx.uow.run(work)


class _Reads(NamedTuple):
    """What deciding a credit note reads, in one transaction."""

    org_doc: documents.Doc | None
    org: Org
    invoice: Invoice
    existing: CreditNote | None  # made by the request id
    notes: list[CreditNote]  # of the invoice
    payments: list[Payment]  # of the invoice


def _unknown(note: CreditNote) -> PaymentProviderUnavailable:
    return PaymentProviderUnavailable(
        f"Stripe could not be asked about the refund of credit note {note.id}: it stays "
        "pending and is never made twice; repeat the call (same request id) or run "
        "reconciliation later")
