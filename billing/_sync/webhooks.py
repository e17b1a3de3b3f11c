# Generated from billing/_async by tools/synchro.py: do not edit.
"""Stripe webhooks: verified, applied once, never moving an invoice backwards."""

from __future__ import annotations

from bson import ObjectId

from billing import faults
from billing._sync.payments import dunning
from billing._sync.repositories.credit_notes import credit_note_in, credit_note_of_refund
from billing._sync.repositories.invoices import read_invoice
from billing._sync.repositories.orgs import org_doc_in, org_doc_of_customer
from billing._sync.repositories.payment_methods import live_method_docs, pending_attach_of
from billing._sync.repositories.payments import payment_doc_of_intent
from billing._sync.repositories.webhook_log import event_was_processed, log_failed_delivery
from billing._sync.service_context import Context
from billing._sync.unit_of_work import Transaction
from billing.adapters import documents
from billing.adapters.stripe_webhooks import StripeEvent, verify
from billing.errors import (
    BillingError,
    ConfigurationError,
    UnreadableDocument,
    WebhookRejected,
)
from billing.plans import require_org
from billing.plans import webhooks as plans
from billing.plans.webhooks import Decision, WebhookOutcome, WebhookResult


class Webhooks:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def handle(self, payload: bytes, signature_header: str | None) -> WebhookResult:
        """Verify and apply one Stripe event; map `result.http_status` to the HTTP answer.

        The signature is checked on the raw bytes (with a timestamp tolerance) before anything
        is read or written. The effect and the record of the event id commit in one transaction,
        so a repeated or concurrent delivery has one effect. Failures are audited in
        `webhook_log`, outside that transaction, so they survive its rollback.
        """
        if not self._ctx.webhook_secret:
            raise ConfigurationError("no webhook secret: pass webhook_secret=... to Billing(...)")
        try:
            event = verify(payload, signature_header, secret=self._ctx.webhook_secret)
        except WebhookRejected as exc:
            return WebhookResult(WebhookOutcome.REJECTED, detail=exc.message)
        try:
            outcome, detail = self._ctx.uow.run(lambda txn: self._apply(txn, event))
        except BillingError as exc:
            self._audit(event, f"{type(exc).__name__}: {exc.message}", exc.retryable)
            # A setting or a stored document a person can fix: Stripe delivers it again after.
            retry = exc.retryable or isinstance(exc, ConfigurationError | UnreadableDocument)
            return WebhookResult(WebhookOutcome.RETRY if retry else WebhookOutcome.IGNORED,
                                 event.id, event.type, f"{type(exc).__name__}: {exc.message}")
        if outcome is WebhookOutcome.MISMATCH:
            self._audit(event, detail, False)
        return WebhookResult(outcome, event.id, event.type, detail)

    def _apply(self, txn: Transaction, event: StripeEvent
                     ) -> tuple[WebhookOutcome, str]:
        """Read what the event needs, let the plan decide, write its effect and the record."""
        step = plans.lookup(event, already_processed=event_was_processed(txn, event.id))
        if isinstance(step, Decision) and step.outcome is WebhookOutcome.DUPLICATE:
            return step.outcome, step.detail
        if isinstance(step, plans.ReadPayment):
            decision = self._on_payment(txn, event, step)
        elif isinstance(step, plans.ReadCustomer):
            decision = self._on_customer(txn, step)
        elif isinstance(step, plans.ReadRefunds):
            decision = self._on_refunds(txn, step)
        else:
            decision = step
        txn.write(decision.writes)
        if decision.outcome is not WebhookOutcome.RETRY:  # else Stripe delivers it again
            txn.write([plans.processed(event, decision, self._ctx.now())])
        faults.hit("webhooks.after_write")
        return decision.outcome, decision.detail

    def _on_payment(self, txn: Transaction, event: StripeEvent,
                          read: plans.ReadPayment) -> Decision:
        oid = read.org_id
        doc = payment_doc_of_intent(txn, oid, read.intent_id)
        payment = documents.payment(doc) if doc is not None else None
        invoice = failures = payer = None
        days: tuple[int, ...] = ()
        if payment is not None:
            iid = ObjectId(payment.invoice_id)
            invoice = read_invoice(txn, oid, iid)
            failures, days, payer = dunning(txn, oid, iid, payment.id,
                                                  self._ctx.collection_schedule)
        return plans.on_intent(event.type, event.data_object, payment, invoice, org_id=oid,
                               now=self._ctx.now(), failures=failures or 0, days=days,
                               box=self._ctx.outbox(payer))

    def _on_refunds(self, txn: Transaction, read: plans.ReadRefunds) -> Decision:
        """Each of our refunds in the event, applied in turn (each write seen by the next)."""
        oid = read.org_id
        decisions = []
        for obj in read.refunds:
            note = credit_note_of_refund(txn, oid, obj["id"])
            if note is None:  # its id never recorded: the credit note our metadata names
                meta = obj.get("metadata")
                named = meta.get("credit_note_id") if isinstance(meta, dict) else None
                if isinstance(named, str) and ObjectId.is_valid(named):
                    note = credit_note_in(txn, oid, ObjectId(named))
            invoice = None if note is None else read_invoice(
                txn, oid, ObjectId(note.invoice_id))
            org_doc = org_doc_in(txn, oid)
            decision = plans.on_refund(obj, note, invoice, org_id=oid, now=self._ctx.now(),
                                       box=self._ctx.outbox(org_doc))
            txn.write(decision.writes)
            decisions.append(decision)
        return plans.combined(decisions, org_id=oid)

    def _on_customer(self, txn: Transaction, read: plans.ReadCustomer) -> Decision:
        org_doc = org_doc_of_customer(txn, read.customer_id)
        if org_doc is None:
            return plans.on_customer(None, [], deleted=read.method_id is None,
                                     now=self._ctx.now())
        oid = org_doc["_id"]
        docs = live_method_docs(txn, oid, stripe_id=read.method_id)
        attaching = read.method_id is not None and not docs and pending_attach_of(
            txn, oid, read.method_id)
        return plans.on_customer(require_org(org_doc, oid),
                                 [documents.payment_method(d) for d in docs],
                                 deleted=read.method_id is None, now=self._ctx.now(),
                                 box=self._ctx.outbox(org_doc), attaching=attaching)

    def _audit(self, event: StripeEvent, error: str, retryable: bool) -> None:
        try:
            log_failed_delivery(self._ctx.uow.direct, event_id=event.id,
                                      event_type=event.type, at=self._ctx.now(), error=error,
                                      retryable=retryable)
        except Exception:  # noqa: BLE001 - the audit must never hide the answer to Stripe
            pass
