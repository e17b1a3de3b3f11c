"""Plans for taking payment of an invoice.

Money moves only when the one PaymentIntent recorded on a payment is confirmed, so a repeat or
a crash cannot charge twice whatever Stripe does with idempotency keys. A lease on the invoice
(an expiring claim written in a transaction: MongoDB's lock-for-update) lets one attempt at a
time talk to Stripe; a crashed attempt is taken over when its lease expires.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bson import ObjectId

from billing.adapters import documents, schema
from billing.adapters.writes import Write, insert, invoice_changes
from billing.domain.models import (
    Invoice,
    InvoiceStatus,
    Org,
    Payment,
    PaymentLease,
    PaymentMethod,
    PaymentMethodStatus,
    PaymentStatus,
)
from billing.domain.payments import Intent, IntentStatus
from billing.errors import InvoiceNotPayable, NoDefaultPaymentMethod, PaymentInProgress
from billing.plans import Doc, Plan

PAYABLE = (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)
FINAL = (PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CANCELED)


def claim(
    org: Org, invoice: Invoice, method: PaymentMethod | None, leased: Doc | None,
    previous: Doc | None, *, now: datetime, lease_seconds: float,
) -> Plan[tuple[Payment, Payment | None]]:
    """Take the invoice's payment lease: resume the attempt whose lease expired, or start the
    next attempt. Returns (this attempt, the previous one if it may still move money)."""
    if invoice.status is InvoiceStatus.PAID:
        raise InvoiceNotPayable(f"invoice {invoice.id} is already paid")
    if invoice.status not in PAYABLE:
        raise InvoiceNotPayable(
            f"invoice {invoice.id} is {invoice.status.value}: only open or uncollectible "
            "invoices can be paid (finalise a draft first)")
    lease = invoice.payment_lease
    if lease is not None and lease.expires_at > now:
        raise PaymentInProgress(
            f"payment {lease.payment_id} of invoice {invoice.id} is in progress until "
            f"{lease.expires_at.isoformat()}: retry after that")
    expires = now + timedelta(seconds=lease_seconds)
    if lease is not None and leased is not None:  # take over a crashed attempt
        payment = documents.payment(leased)
        new = invoice.model_copy(update={"payment_lease": PaymentLease(
            payment_id=payment.id, expires_at=expires)})
        return Plan((payment, None), invoice_changes(invoice, new))
    if method is None or method.status is not PaymentMethodStatus.ACTIVE or not method.stripe_id:
        raise NoDefaultPaymentMethod(
            f"org {org.id} has no active default payment method: attach one first")
    attempt = invoice.payment_attempts + 1
    doc: Doc = {
        "_id": ObjectId(), "org_id": ObjectId(org.id), "invoice_id": ObjectId(invoice.id),
        "attempt": attempt, "status": PaymentStatus.PENDING.value, "amount": invoice.total,
        "currency": invoice.currency, "idempotency_key": f"pay:{invoice.id}:{attempt}",
        "payment_method_id": ObjectId(method.id), "stripe_payment_method": method.stripe_id,
        "customer_id": org.stripe_customer_id, "intent_id": None, "created_at": now,
        "updated_at": now,
    }
    payment = documents.payment(doc)
    new = invoice.model_copy(update={"payment_attempts": attempt, "payment_lease": PaymentLease(
        payment_id=payment.id, expires_at=expires)})
    prior = documents.payment(previous) if previous is not None else None
    live = prior if prior is not None and prior.status not in FINAL and prior.intent_id else None
    return Plan((payment, live), [insert(schema.PAYMENTS, doc), *invoice_changes(invoice, new)])


def record_intent(payment: Payment, intent_id: str) -> Plan[Payment]:
    """Remember the attempt's intent, once: a second intent for it is to be cancelled."""
    if payment.intent_id is not None:
        return Plan(payment)
    return Plan(payment.model_copy(update={"intent_id": intent_id}), [Write(
        schema.PAYMENTS, "update_one",
        {"_id": ObjectId(payment.id), "org_id": ObjectId(payment.org_id), "intent_id": None},
        {"$set": {"intent_id": intent_id}})])


def settle(
    invoice: Invoice, payment: Payment, intent: Intent | None, *, now: datetime,
    failure: tuple[str | None, str] | None = None,
) -> Plan[tuple[Invoice, Payment]]:
    """Apply what Stripe said about the attempt: paid, declined, needs the customer, or still
    processing. Never moves an invoice backwards: a paid invoice stays paid, and a success
    reported late still pays an open invoice. Releases the lease if this attempt holds it."""
    fields: Doc = {}
    status = payment.status
    if payment.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.CANCELED):
        # Not final yet; succeeded and canceled never move back on a late or reordered report.
        status = _status(intent, failure)
        fields = {"status": status.value, "updated_at": now}
        if failure is not None:
            fields.update(failure_code=failure[0], failure_message=failure[1][:300])
        elif intent is not None and intent.failure_code:
            fields.update(failure_code=intent.failure_code,
                          failure_message=intent.failure_message)
    new_payment = payment.model_copy(update={**fields, "status": status})
    updates: dict[str, object] = {}
    lease = invoice.payment_lease
    if lease is not None and lease.payment_id == payment.id:
        updates["payment_lease"] = None
    if status is PaymentStatus.SUCCEEDED and invoice.status in PAYABLE:
        updates.update(status=InvoiceStatus.PAID, amount_paid=payment.amount, paid_at=now)
    new_invoice = invoice.model_copy(update=updates)
    writes: list[Write] = []
    if fields and new_payment != payment:
        writes.append(Write(schema.PAYMENTS, "update_one",
                            {"_id": ObjectId(payment.id), "org_id": ObjectId(payment.org_id)},
                            {"$set": fields}))
    if new_invoice != invoice:
        writes += invoice_changes(invoice, new_invoice)
        new_invoice = new_invoice.model_copy(update={"version": invoice.version + 1})
    return Plan((new_invoice, new_payment), writes)


def _status(intent: Intent | None, failure: tuple[str | None, str] | None) -> PaymentStatus:
    if failure is not None or intent is None:
        return PaymentStatus.FAILED
    return {
        IntentStatus.SUCCEEDED: PaymentStatus.SUCCEEDED,
        IntentStatus.REQUIRES_ACTION: PaymentStatus.REQUIRES_ACTION,
        IntentStatus.PROCESSING: PaymentStatus.PROCESSING,
        IntentStatus.REQUIRES_CAPTURE: PaymentStatus.PROCESSING,
        IntentStatus.CANCELED: PaymentStatus.CANCELED,
        IntentStatus.REQUIRES_PAYMENT_METHOD: PaymentStatus.FAILED,
        IntentStatus.REQUIRES_CONFIRMATION: PaymentStatus.PENDING,
    }[intent.status]
