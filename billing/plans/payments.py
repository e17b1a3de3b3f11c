"""Plans for taking payment of an invoice: the one payment rule, decided here for sync and async.

The rule: a new PaymentIntent is created only when no earlier intent of the invoice can still
move money. An attempt whose intent may have been confirmed (`confirming`, `requires_action`,
`processing`) is resolved from Stripe's state before anything else happens, and blocks while
Stripe says it is live. A failed attempt's intent (`requires_payment_method` in Stripe: it can
be confirmed again) is canceled in Stripe before the next one is created (`intent_canceled`).
An attempt with no intent recorded may still have one being created by a slow process: it is
abandoned here, in the database, and since an intent is only ever confirmed after a transaction
has checked that its attempt is still `pending`, still holds the invoice's lease (by token) and
that the invoice is still payable, a late intent is never confirmed: its process cancels it.
Lease expiry lets another call look; it never overrides Stripe's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

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
from billing.domain.payments import Intent, IntentStatus, below_minimum
from billing.errors import (
    AmountBelowMinimum,
    InvoiceNotPayable,
    NoDefaultPaymentMethod,
    PaymentInProgress,
    PaymentRequiresAction,
)
from billing.plans import Doc, Plan, collections, events
from billing.plans.invoices import event_data, may_move_money

PAYABLE = (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)
FINAL = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CANCELED})
# Attempts whose intent may have been confirmed: only Stripe can say how they end.
SENT = frozenset({PaymentStatus.CONFIRMING, PaymentStatus.REQUIRES_ACTION,
                  PaymentStatus.PROCESSING})
ABANDONED = "abandoned"  # failure code of an attempt given up before its intent was recorded


class Next(StrEnum):
    CHARGE = "charge"  # this call owns a pending attempt: create and confirm its intent
    RESOLVE = "resolve"  # an earlier attempt's intent exists: ask Stripe before anything else
    DONE = "done"  # nothing to charge: the invoice is settled


@dataclass(frozen=True)
class Claim:
    next: Next
    payment: Payment
    token: str


def claim(
    org: Org, invoice: Invoice, method: PaymentMethod | None, latest: Payment | None, *,
    now: datetime, lease_seconds: float, token: str, box: events.Outbox | None = None,
) -> Plan[Claim]:
    """Take the invoice's payment lease for this call and say what it must do next."""
    _require_payable(invoice)
    _require_free_lease(invoice, now)
    expires = now + timedelta(seconds=lease_seconds)
    writes: list[Write] = []
    if latest is not None and may_move_money(latest):
        if latest.intent_id is not None:
            return Plan(Claim(Next.RESOLVE, latest, token),
                        _leased(invoice, latest.id, token, expires))
        # Its intent may still be being created: abandon it, so that one is never confirmed.
        writes.append(_set(latest, {"status": PaymentStatus.CANCELED.value,
                                    "failure_code": ABANDONED, "updated_at": now,
                                    "failure_message": ABANDON_NOTE},
                           status=latest.status, intent_id=None))
    if invoice.amount_due == 0:
        return _free(invoice, now, token, writes, box)
    if least := below_minimum(invoice.amount_due, invoice.currency):
        raise AmountBelowMinimum(
            f"invoice {invoice.id} is due {invoice.amount_due} {invoice.currency} (minor units), "
            f"below Stripe's minimum charge of {least}: nothing was sent to Stripe and the "
            "invoice stays open; void it to write it off")
    if method is None or method.status is not PaymentMethodStatus.ACTIVE or not method.stripe_id:
        raise NoDefaultPaymentMethod(
            f"org {org.id} has no active default payment method: attach one first")
    if not org.stripe_customer_id or method.customer_id not in (None, org.stripe_customer_id):
        raise NoDefaultPaymentMethod(
            f"org {org.id}'s default payment method is not attached to its current Stripe "
            "customer: attach a payment method again")
    attempt = invoice.payment_attempts + 1
    doc: Doc = {
        "_id": ObjectId(), "org_id": ObjectId(org.id), "invoice_id": ObjectId(invoice.id),
        "attempt": attempt, "status": PaymentStatus.PENDING.value,
        "amount": invoice.amount_due,
        "currency": invoice.currency, "idempotency_key": f"pay:{invoice.id}:{attempt}",
        "payment_method_id": ObjectId(method.id), "stripe_payment_method": method.stripe_id,
        "customer_id": org.stripe_customer_id, "intent_id": None, "created_at": now,
        "updated_at": now,
    }
    payment = documents.payment(doc)
    new = invoice.model_copy(update={"payment_attempts": attempt, "payment_lease": PaymentLease(
        payment_id=payment.id, expires_at=expires, token=token)})
    return Plan(Claim(Next.CHARGE, payment, token),
                [*writes, insert(schema.PAYMENTS, doc), *invoice_changes(invoice, new)])


def take(invoice: Invoice, latest: Payment | None, *, now: datetime, lease_seconds: float,
         token: str) -> Plan[Claim | None]:
    """Take the lease to resolve or stop an attempt (the latest, or one reconciliation names;
    void, cancel, settle): None when there is nothing that could still move money."""
    if latest is None or not may_move_money(latest):
        return Plan(None)
    _require_free_lease(invoice, now)
    expires = now + timedelta(seconds=lease_seconds)
    return Plan(Claim(Next.RESOLVE, latest, token), _leased(invoice, latest.id, token, expires))


def record_intent(invoice: Invoice, payment: Payment, intent_id: str, token: str
                  ) -> Plan[Payment | None]:
    """Remember the attempt's intent, once. None: the attempt is no longer this call's (taken
    over, abandoned, or another intent recorded first): the caller cancels its intent."""
    if payment.intent_id == intent_id:
        return Plan(payment)
    if payment.intent_id is not None or payment.status is not PaymentStatus.PENDING or \
            not _holds(invoice, payment, token):
        return Plan(None)
    return Plan(payment.model_copy(update={"intent_id": intent_id}), [_set(
        payment, {"intent_id": intent_id}, status=PaymentStatus.PENDING, intent_id=None)])


def start_confirm(invoice: Invoice, payment: Payment, token: str, *, now: datetime
                  ) -> Plan[Payment]:
    """The decision to confirm, taken in a transaction: only while the invoice is payable, the
    attempt pending with its intent recorded, and this call holds the lease."""
    if invoice.status not in PAYABLE:
        raise InvoiceNotPayable(f"invoice {invoice.id} became {invoice.status.value} while "
                                "being paid: nothing was charged")
    if payment.status is not PaymentStatus.PENDING or payment.intent_id is None or \
            not _holds(invoice, payment, token):
        raise PaymentInProgress(
            f"payment {payment.id} of invoice {invoice.id} was taken over by another call "
            "(this one was too slow): nothing was charged by this call; check the invoice",
            payment_id=payment.id)
    return Plan(payment.model_copy(update={"status": PaymentStatus.CONFIRMING,
                                           "updated_at": now}),
                [_set(payment, {"status": PaymentStatus.CONFIRMING.value, "updated_at": now},
                      status=PaymentStatus.PENDING)])


def release(invoice: Invoice, token: str) -> Plan[Invoice]:
    """Give the lease back (when this call still holds it) without settling anything."""
    lease = invoice.payment_lease
    if lease is None or lease.token != token:
        return Plan(invoice)
    new = invoice.model_copy(update={"payment_lease": None})
    return Plan(new.model_copy(update={"version": invoice.version + 1}),
                invoice_changes(invoice, new))


ABANDON_NOTE = ("abandoned before an intent was recorded; a late intent is canceled, never "
                "confirmed")


def settle(
    invoice: Invoice, payment: Payment, intent: Intent | None, *, now: datetime,
    failure: tuple[str | None, str] | None = None, abandon: bool = False,
    failures: int = 0, days: Sequence[int] = (), box: events.Outbox | None = None,
    gone: bool = False,
) -> Plan[tuple[Invoice, Payment]]:
    """Apply what Stripe said about the attempt: paid, declined, needs the customer, or still
    processing. Never moves an invoice backwards: a paid invoice stays paid, and a success
    reported late still pays an open invoice. Releases the lease if this attempt holds it.
    An intent Stripe reports canceled marks a failed attempt `intent_canceled`.

    `failures` counts the invoice's other failed attempts that used up a scheduled attempt
    (`plans.collections.counted`) and `days` is the org's retry schedule: when this failure
    uses up the last one, the open invoice becomes `uncollectible` in the same writes. With an
    outbox, the events of what changed (`invoice.paid`, `payment.failed`,
    `payment.requires_action`, `invoice.uncollectible`) are written with it."""
    fields: Doc = {}
    status = payment.status
    if abandon and (payment.intent_id is not None or payment.status is not PaymentStatus.PENDING):
        # Read without an intent, but one was recorded (or sent) since: only Stripe's state may
        # close it now. Nothing changes; the caller resolves it again.
        return _release_only(invoice, payment)
    candidate = PaymentStatus.CANCELED if abandon or gone else \
        _status(intent, failure, payment.status)
    # Succeeded and canceled never move on a late or reordered report; failed moves only to
    # succeeded (Stripe says money moved after all), never back to processing or waiting;
    # processing never goes back to waiting for the customer or for a confirmation (Stripe
    # moves a processing intent only to succeeded, or failed: a later report of
    # requires_action is an earlier event delivered late).
    if payment.status not in (PaymentStatus.SUCCEEDED, PaymentStatus.CANCELED) and (
            payment.status is not PaymentStatus.FAILED or
            candidate is PaymentStatus.SUCCEEDED) and not (
            payment.status is PaymentStatus.PROCESSING and candidate in _BEFORE_PROCESSING):
        status = candidate
        fields = {"status": status.value, "updated_at": now}
        if abandon:
            fields.update(failure_code=ABANDONED, failure_message=ABANDON_NOTE)
        elif gone:
            fields.update(failure_code="intent_missing", failure_message=(
                "Stripe has no such payment intent (another account or key?): it cannot move "
                "money there"))
        elif failure is not None:
            fields.update(failure_code=failure[0], failure_message=failure[1][:300])
        elif intent is not None and intent.failure_code:
            fields.update(failure_code=intent.failure_code,
                          failure_message=(intent.failure_message or "")[:300])
    if intent is not None and intent.status is IntentStatus.CANCELED and \
            payment.intent_id is not None and not payment.intent_canceled:
        fields.update(intent_canceled=True, updated_at=now)
    new_payment = payment.model_copy(update={**fields, "status": status})
    updates: dict[str, object] = {}
    lease = invoice.payment_lease
    if lease is not None and lease.payment_id == payment.id:
        updates["payment_lease"] = None
    if status is PaymentStatus.SUCCEEDED and invoice.status in PAYABLE:
        updates.update(status=InvoiceStatus.PAID, amount_paid=payment.amount, paid_at=now)
    if (payment.status is not PaymentStatus.FAILED and collections.counted(new_payment)
            and days and collections.exhausted(failures + 1, days)
            and invoice.status is InvoiceStatus.OPEN):
        updates["status"] = InvoiceStatus.UNCOLLECTIBLE
    new_invoice = invoice.model_copy(update=updates)
    writes: list[Write] = []
    if fields and new_payment != payment:
        writes.append(_set(payment, fields))
    if new_invoice != invoice:
        writes += invoice_changes(invoice, new_invoice)
        new_invoice = new_invoice.model_copy(update={"version": invoice.version + 1})
    writes += events.emit(box, _events(invoice, new_invoice, payment, new_payment))
    return Plan((new_invoice, new_payment), writes)


def _events(invoice: Invoice, new_invoice: Invoice, payment: Payment, new_payment: Payment
            ) -> list[tuple[str, dict[str, object]]]:
    out: list[tuple[str, dict[str, object]]] = []
    about = {"payment_id": new_payment.id, "attempt": new_payment.attempt,
             "amount": new_payment.amount, "currency": new_payment.currency}
    moved = new_payment.status is not payment.status
    if moved and new_payment.status is PaymentStatus.FAILED:
        out.append(("payment.failed", {"invoice_id": invoice.id, **about,
                                       "failure_code": new_payment.failure_code}))
    if moved and new_payment.status is PaymentStatus.REQUIRES_ACTION:
        out.append(("payment.requires_action", {"invoice_id": invoice.id, **about}))
    if new_invoice.status is not invoice.status:
        kind = {InvoiceStatus.PAID: "invoice.paid",
                InvoiceStatus.UNCOLLECTIBLE: "invoice.uncollectible"}.get(new_invoice.status)
        if kind is not None:
            out.append((kind, event_data(new_invoice, amount_paid=new_invoice.amount_paid,
                                         payment_id=new_payment.id)))
    return out


def _release_only(invoice: Invoice, payment: Payment) -> Plan[tuple[Invoice, Payment]]:
    lease = invoice.payment_lease
    if lease is None or lease.payment_id != payment.id:
        return Plan((invoice, payment))
    new = invoice.model_copy(update={"payment_lease": None})
    return Plan((new.model_copy(update={"version": invoice.version + 1}), payment),
                invoice_changes(invoice, new))


def blocked(payment: Payment, invoice_id: str) -> PaymentInProgress | PaymentRequiresAction:
    """The error for an attempt that Stripe still holds open: no new charge until it ends."""
    if payment.status is PaymentStatus.REQUIRES_ACTION:
        return PaymentRequiresAction(
            f"payment {payment.id} of invoice {invoice_id} awaits the customer's authentication "
            "(3-D Secure): no new charge until it ends; it settles when the customer completes "
            "it (webhook, or invoices.settle_payment), or cancel it with invoices.cancel_payment "
            "before paying again", code="requires_action", payment_id=payment.id)
    why = ("is processing at Stripe (it cannot be canceled; it settles or fails later)"
           if payment.status is PaymentStatus.PROCESSING else
           "failed, but its intent is live in Stripe again (confirmed by someone else since; "
           "invoices.cancel_payment cancels it unless it is processing)"
           if payment.status is PaymentStatus.FAILED else
           "was sent to Stripe and its outcome is not known yet")
    return PaymentInProgress(
        f"payment {payment.id} of invoice {invoice_id} {why}: no new charge until it ends; "
        "retry later, or call invoices.settle_payment to read its state from Stripe",
        code=payment.status.value, payment_id=payment.id)


def _free(invoice: Invoice, now: datetime, token: str, writes: list[Write],
          box: events.Outbox | None) -> Plan[Claim]:
    """An invoice with nothing due is paid without going to Stripe (which refuses amount 0)."""
    attempt = invoice.payment_attempts + 1
    doc: Doc = {
        "_id": ObjectId(), "org_id": ObjectId(invoice.org_id),
        "invoice_id": ObjectId(invoice.id), "attempt": attempt,
        "status": PaymentStatus.SUCCEEDED.value, "amount": 0, "currency": invoice.currency,
        "idempotency_key": f"pay:{invoice.id}:{attempt}", "intent_id": None,
        "created_at": now, "updated_at": now,
    }
    new = invoice.model_copy(update={"payment_attempts": attempt, "payment_lease": None,
                                     "status": InvoiceStatus.PAID, "amount_paid": 0,
                                     "paid_at": now})
    paid = events.emit(box, [("invoice.paid", event_data(new, amount_paid=0,
                                                         payment_id=str(doc["_id"])))])
    return Plan(Claim(Next.DONE, documents.payment(doc), token),
                [*writes, insert(schema.PAYMENTS, doc), *invoice_changes(invoice, new), *paid])


def _require_payable(invoice: Invoice) -> None:
    if invoice.status is InvoiceStatus.PAID:
        raise InvoiceNotPayable(f"invoice {invoice.id} is already paid")
    if invoice.status not in PAYABLE:
        raise InvoiceNotPayable(
            f"invoice {invoice.id} is {invoice.status.value}: only open or uncollectible "
            "invoices can be paid (finalise a draft first)")


def _require_free_lease(invoice: Invoice, now: datetime) -> None:
    lease = invoice.payment_lease
    if lease is not None and lease.expires_at > now:
        raise PaymentInProgress(
            f"payment {lease.payment_id} of invoice {invoice.id} is in progress until "
            f"{lease.expires_at.isoformat()}: retry after that", payment_id=lease.payment_id)


def _holds(invoice: Invoice, payment: Payment, token: str) -> bool:
    lease = invoice.payment_lease
    return lease is not None and lease.payment_id == payment.id and lease.token == token


def _leased(invoice: Invoice, payment_id: str, token: str, expires: datetime) -> list[Write]:
    return invoice_changes(invoice, invoice.model_copy(update={"payment_lease": PaymentLease(
        payment_id=payment_id, expires_at=expires, token=token)}))


def _set(payment: Payment, fields: Doc, **guard: object) -> Write:
    """An update of the attempt, guarded by the values it was read with."""
    where: Doc = {"_id": ObjectId(payment.id), "org_id": ObjectId(payment.org_id)}
    where.update({k: (v.value if isinstance(v, PaymentStatus) else v) for k, v in guard.items()})
    return Write(schema.PAYMENTS, "update_one", where, {"$set": fields})


_BEFORE_PROCESSING = frozenset({PaymentStatus.PENDING, PaymentStatus.CONFIRMING,
                                PaymentStatus.REQUIRES_ACTION})


def _status(intent: Intent | None, failure: tuple[str | None, str] | None,
            current: PaymentStatus) -> PaymentStatus:
    if failure is not None or intent is None:
        return PaymentStatus.FAILED
    return {
        IntentStatus.SUCCEEDED: PaymentStatus.SUCCEEDED,
        IntentStatus.REQUIRES_ACTION: PaymentStatus.REQUIRES_ACTION,
        IntentStatus.PROCESSING: PaymentStatus.PROCESSING,
        IntentStatus.REQUIRES_CAPTURE: PaymentStatus.PROCESSING,
        IntentStatus.CANCELED: PaymentStatus.CANCELED,
        IntentStatus.REQUIRES_PAYMENT_METHOD: PaymentStatus.FAILED,
        # Not confirmed (yet): a confirmation sent stays one until Stripe says otherwise.
        IntentStatus.REQUIRES_CONFIRMATION: current if current in (
            PaymentStatus.PENDING, PaymentStatus.CONFIRMING) else PaymentStatus.PENDING,
    }[intent.status]
