"""What a verified Stripe event means for our documents, and what the host should answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId

from billing.adapters import schema
from billing.adapters.stripe_webhooks import StripeEvent
from billing.adapters.writes import Write, insert
from billing.domain.models import CreditNote, Invoice, Org, Payment, PaymentMethod, RefundStatus
from billing.domain.payments import Intent, IntentStatus, StripeRefund
from billing.plans import credit_notes, events, payment_methods, payments

HANDLED = frozenset({
    "payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.processing",
    "payment_intent.requires_action", "payment_intent.canceled", "payment_method.detached",
    "customer.deleted", "charge.refunded", "refund.created", "refund.updated", "refund.failed",
    "charge.refund.updated",
})
REFUND_EVENTS = frozenset({"refund.created", "refund.updated", "refund.failed",
                           "charge.refund.updated"})


class WebhookOutcome(StrEnum):
    PROCESSED = "processed"  # applied now
    DUPLICATE = "duplicate"  # applied before: nothing done
    IGNORED = "ignored"  # authentic but not ours or not handled: nothing to do
    REJECTED = "rejected"  # not authentic or not parseable: do not retry
    MISMATCH = "mismatch"  # authentic, but it disagrees with our records: nothing changed
    RETRY = "retry"  # a temporary failure: Stripe should deliver it again


@dataclass(frozen=True)
class WebhookResult:
    outcome: WebhookOutcome
    event_id: str | None = None
    event_type: str | None = None
    detail: str = ""

    @property
    def http_status(self) -> int:
        """What to answer Stripe: 2xx stops its retries, 5xx asks for them."""
        return {WebhookOutcome.REJECTED: 400, WebhookOutcome.RETRY: 503}.get(self.outcome, 200)


class Effect(StrEnum):
    """What an event does to our documents."""

    NONE = "none"  # nothing to write: a duplicate, not ours, not handled, or a mismatch
    SETTLE_PAYMENT = "settle_payment"  # payment_intent.*: the attempt (and its invoice) settle
    SETTLE_REFUND = "settle_refund"  # refund.*, charge.refunded: a credit note's refund settles
    DETACH_METHOD = "detach_method"  # payment_method.detached: that method is gone
    DETACH_ALL = "detach_all"  # customer.deleted: the customer and every live method are gone


@dataclass(frozen=True)
class Decision:
    """The answer to one event: what to write (the effect) and what to report."""

    outcome: WebhookOutcome
    detail: str
    effect: Effect = Effect.NONE
    org_id: ObjectId | None = None
    writes: list[Write] = field(default_factory=list)


@dataclass(frozen=True)
class ReadPayment:
    """Read the org's payment with this intent (then its invoice, and the dunning state)."""

    org_id: ObjectId
    intent_id: str


@dataclass(frozen=True)
class ReadCustomer:
    """Read the org of this Stripe customer, then its live methods: every one when the customer
    is deleted (`method_id` None), else those holding `method_id`."""

    customer_id: str
    method_id: str | None = None


@dataclass(frozen=True)
class ReadRefunds:
    """Read the credit notes whose refunds these are (each a refund object of the event): by
    Stripe's refund id, or, when the refund's id was never recorded (a crash before the
    record), by the credit note our metadata names, checked against our record."""

    org_id: ObjectId
    refunds: tuple[dict[str, Any], ...]


Lookup = Decision | ReadPayment | ReadCustomer | ReadRefunds


def lookup(event: StripeEvent, *, already_processed: bool) -> Lookup:
    """What the event needs read before it is decided, or its decision when nothing is."""
    if already_processed:
        return Decision(WebhookOutcome.DUPLICATE, "already processed")
    if event.type not in HANDLED:
        return Decision(WebhookOutcome.IGNORED, "event type not handled")
    obj = event.data_object
    if event.type in REFUND_EVENTS or event.type == "charge.refunded":
        return _refunds(event.type, obj)
    if event.type.startswith("payment_intent."):
        # The org in our metadata only scopes the lookup; what the event may change is decided
        # from the payment we recorded for this intent id.
        meta = obj.get("metadata")
        org_text = meta.get("org_id") if isinstance(meta, dict) else None
        try:
            org_id = ObjectId(org_text) if isinstance(org_text, str) else None
        except InvalidId:
            org_id = None
        if org_id is None:
            return Decision(WebhookOutcome.IGNORED, "not a billing payment (no org in metadata)")
        intent_id = obj.get("id")
        if not isinstance(intent_id, str):
            return Decision(WebhookOutcome.IGNORED, "event has no intent id", org_id=org_id)
        return ReadPayment(org_id, intent_id)
    deleted = event.type == "customer.deleted"
    customer = obj.get("id") if deleted else (
        event.previous_attributes.get("customer") or obj.get("customer"))
    if not isinstance(customer, str):
        return Decision(WebhookOutcome.IGNORED, "no org has this customer")
    method = obj.get("id")
    if not deleted and not isinstance(method, str):
        method = ""  # no method of ours has an empty Stripe id: nothing is detached
    return ReadCustomer(customer, None if deleted else method)


def on_intent(event_type: str, obj: dict[str, Any], payment: Payment | None,
              invoice: Invoice | None, *, org_id: ObjectId, now: datetime, failures: int = 0,
              days: Sequence[int] = (), box: events.Outbox | None = None) -> Decision:
    """What a `payment_intent.*` event does. The payment and invoice come from our own records,
    found by the intent's id (never from its metadata), and the event changes nothing unless
    its amount, currency and customer are the attempt's. A settled attempt or a paid invoice
    never moves backwards (`plans.payments.settle`)."""
    if payment is None or invoice is None:
        return Decision(WebhookOutcome.IGNORED, f"no payment here has intent {obj.get('id')}",
                        org_id=org_id)
    intent = intent_of(obj)
    differs = [f"{name} {theirs!r} (ours {ours!r})" for name, theirs, ours in (
        ("amount", intent.amount, payment.amount), ("currency", intent.currency, payment.currency),
        ("customer", intent.customer_id, payment.customer_id))
        if theirs != ours and not (name == "customer" and (theirs is None or ours is None))]
    if intent.amount < 0 or differs:
        return Decision(WebhookOutcome.MISMATCH, (
            f"intent {intent.id} disagrees with payment {payment.id} of invoice {invoice.id}: "
            f"{', '.join(differs) or 'malformed amount'}; nothing changed"), org_id=org_id)
    failure = None
    if event_type == "payment_intent.payment_failed":
        failure = (intent.failure_code, intent.failure_message or "payment failed")
    plan = payments.settle(invoice, payment, intent, now=now, failure=failure,
                           failures=failures, days=days, box=box)
    return Decision(WebhookOutcome.PROCESSED, f"payment {payment.id}: {plan.result[1].status}",
                    Effect.SETTLE_PAYMENT, org_id, plan.writes)


def _refunds(event_type: str, obj: dict[str, Any]) -> Lookup:
    if event_type == "charge.refunded":
        listed = obj.get("refunds")
        data = listed.get("data") if isinstance(listed, dict) else None
        found = tuple(r for r in data if isinstance(r, dict)) if isinstance(data, list) else ()
    else:
        found = (obj,)
    org_id = next((o for o in (_org_of(r) for r in found) if o is not None), None)
    if org_id is None:
        return Decision(WebhookOutcome.IGNORED, "not a billing refund (no org in metadata)")
    ours = tuple(r for r in found if _org_of(r) == org_id and isinstance(r.get("id"), str))
    return ReadRefunds(org_id, ours)


def _org_of(obj: dict[str, Any]) -> ObjectId | None:
    meta = obj.get("metadata")
    text = meta.get("org_id") if isinstance(meta, dict) else None
    try:
        return ObjectId(text) if isinstance(text, str) else None
    except InvalidId:
        return None


def on_refund(obj: dict[str, Any], note: CreditNote | None, invoice: Invoice | None, *,
              org_id: ObjectId, now: datetime, box: events.Outbox | None = None) -> Decision:
    """What one refund in a `refund.*` or `charge.refunded` event does. The credit note comes
    from our records; the event changes nothing unless its amount, currency and payment intent
    are our refund's. `plans.credit_notes.record_refund` decides: a failed one voids its credit
    note (also one the bank returned after it succeeded); any other settled one never moves."""
    refund = refund_of(obj)
    if note is None or invoice is None or note.refund is None:
        return Decision(WebhookOutcome.IGNORED, f"no credit note here has refund {refund.id}",
                        org_id=org_id)
    ours = note.refund
    differs = [f"{name} {theirs!r} (ours {mine!r})" for name, theirs, mine in (
        ("amount", refund.amount, ours.amount), ("currency", refund.currency, note.currency),
        ("payment_intent", refund.intent_id, ours.intent_id),
        ("id", refund.id, ours.stripe_id or refund.id)) if theirs != mine]
    if differs:
        return Decision(WebhookOutcome.MISMATCH, (
            f"refund {refund.id} disagrees with credit note {note.id}: {', '.join(differs)}; "
            "nothing changed"), org_id=org_id)
    plan = credit_notes.record_refund(note, invoice, refund, now=now, box=box)
    status = plan.result.refund.status if plan.result.refund else RefundStatus.PENDING
    return Decision(WebhookOutcome.PROCESSED, f"credit note {note.id}: refund {status}",
                    Effect.SETTLE_REFUND, org_id, plan.writes)


def refund_of(obj: dict[str, Any]) -> StripeRefund:
    """The refund in an event; an amount that is not an int becomes -1 (never ours)."""
    amount = obj.get("amount")
    intent = obj.get("payment_intent")
    if isinstance(intent, dict):
        intent = intent.get("id")
    status = {"pending": RefundStatus.PENDING, "requires_action": RefundStatus.PENDING,
              "succeeded": RefundStatus.SUCCEEDED, "failed": RefundStatus.FAILED,
              "canceled": RefundStatus.CANCELED}.get(str(obj.get("status")),
                                                     RefundStatus.PENDING)
    reason = obj.get("failure_reason")
    return StripeRefund(
        id=str(obj.get("id")), status=status,
        amount=amount if isinstance(amount, int) and not isinstance(amount, bool) else -1,
        currency=str(obj.get("currency") or ""),
        intent_id=intent if isinstance(intent, str) else None,
        failure_reason=reason[:100] if isinstance(reason, str) else None)


def combined(decisions: Sequence[Decision], *, org_id: ObjectId) -> Decision:
    """One answer for an event of several refunds (their writes already applied): a mismatch if
    any disagreed with our records (audited and reported for a person, whatever the others
    did: the detail tells both), else processed if any was, else ignored."""
    if any(d.outcome is WebhookOutcome.MISMATCH for d in decisions):
        told = [d for d in decisions if d.outcome in (WebhookOutcome.MISMATCH,
                                                         WebhookOutcome.PROCESSED)]
        return Decision(WebhookOutcome.MISMATCH, "; ".join(d.detail for d in told),
                        next((d.effect for d in told if d.effect is not Effect.NONE),
                             Effect.NONE), org_id)
    if hit := [d for d in decisions if d.outcome is WebhookOutcome.PROCESSED]:
        return Decision(WebhookOutcome.PROCESSED, "; ".join(d.detail for d in hit),
                        hit[0].effect, org_id)
    return Decision(WebhookOutcome.IGNORED, "; ".join(d.detail for d in decisions)
                    or "no refund of ours in the event", org_id=org_id)


def on_customer(org: Org | None, methods: list[PaymentMethod], *, deleted: bool,
                now: datetime, box: events.Outbox | None = None,
                attaching: bool = False) -> Decision:
    """What `customer.deleted` (`deleted`) or `payment_method.detached` does to the org holding
    the customer, given its live methods (those holding the detached one). `attaching`: a
    pending attach holds the detached card, and may activate it after this event: Stripe is
    asked to deliver it again (not recorded), once that attach is settled."""
    if org is None:
        return Decision(WebhookOutcome.IGNORED, "no org has this customer")
    org_id = ObjectId(org.id)
    if deleted:
        return Decision(WebhookOutcome.PROCESSED,
                        f"customer deleted: {len(methods)} methods detached", Effect.DETACH_ALL,
                        org_id, payment_methods.customer_deleted(org, methods, now, box=box))
    if not methods and attaching:
        return Decision(WebhookOutcome.RETRY, "an attach of this payment method is in flight: "
                        "deliver the event again once it is settled", org_id=org_id)
    if not methods:
        return Decision(WebhookOutcome.IGNORED, "payment method not active here", org_id=org_id)
    plan = payment_methods.detached_in_stripe(org, methods[0], now, box=box)
    return Decision(WebhookOutcome.PROCESSED, f"payment method {plan.result.id} detached",
                    Effect.DETACH_METHOD, org_id, plan.writes)


def processed(event: StripeEvent, decision: Decision, now: datetime) -> Write:
    """The record that makes a second delivery a duplicate (unique on the event id)."""
    return insert(schema.WEBHOOK_EVENTS, {"_id": event.id, "type": event.type,
                                          "outcome": decision.outcome.value,
                                          "detail": decision.detail,
                                          "org_id": decision.org_id, "processed_at": now})


def intent_of(obj: dict[str, Any]) -> Intent:
    """The intent in an event; an amount that is not an int becomes -1 (never ours)."""
    error = obj.get("last_payment_error")
    error = error if isinstance(error, dict) else {}
    try:
        status = IntentStatus(str(obj.get("status")))
    except ValueError:
        status = IntentStatus.PROCESSING
    amount = obj.get("amount")
    customer = obj.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    # The issuer's reason (lost_card...) when there is one, as pay() records a CardDeclined.
    code, message = error.get("decline_code") or error.get("code"), error.get("message")
    return Intent(
        id=str(obj.get("id")), status=status,
        amount=amount if isinstance(amount, int) and not isinstance(amount, bool) else -1,
        currency=str(obj.get("currency") or ""),
        failure_code=code[:100] if isinstance(code, str) else None,
        failure_message=message[:300] if isinstance(message, str) else None,
        customer_id=customer if isinstance(customer, str) else None)
