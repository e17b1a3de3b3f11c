"""What a verified Stripe event means for our documents, and what the host should answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from billing.adapters import schema
from billing.adapters.writes import Write, insert
from billing.domain.models import Invoice, Payment
from billing.domain.payments import Intent, IntentStatus
from billing.plans import events, payments

HANDLED = frozenset({
    "payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.processing",
    "payment_intent.requires_action", "payment_intent.canceled", "payment_method.detached",
    "customer.deleted",
})


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


def processed(event_id: str, event_type: str, outcome: WebhookOutcome, detail: str,
              org_id: Any, now: datetime) -> Write:
    """The record that makes a second delivery a duplicate (unique on the event id)."""
    return insert(schema.WEBHOOK_EVENTS, {"_id": event_id, "type": event_type,
                                          "outcome": outcome.value, "detail": detail,
                                          "org_id": org_id, "processed_at": now})


def intent_event(event_type: str, obj: dict[str, Any], payment: Payment | None,
                 invoice: Invoice | None, *, now: datetime, failures: int = 0,
                 days: Sequence[int] = (), box: events.Outbox | None = None
                 ) -> tuple[WebhookOutcome, str, list[Write]]:
    """What a `payment_intent.*` event does. The payment and invoice come from our own records,
    found by the intent's id (never from its metadata), and the event changes nothing unless
    its amount, currency and customer are the attempt's."""
    if payment is None or invoice is None:
        return WebhookOutcome.IGNORED, f"no payment here has intent {obj.get('id')}", []
    intent = intent_of(obj)
    differs = [f"{name} {theirs!r} (ours {ours!r})" for name, theirs, ours in (
        ("amount", intent.amount, payment.amount), ("currency", intent.currency, payment.currency),
        ("customer", intent.customer_id, payment.customer_id))
        if theirs != ours and not (name == "customer" and (theirs is None or ours is None))]
    if intent.amount < 0 or differs:
        return WebhookOutcome.MISMATCH, (
            f"intent {intent.id} disagrees with payment {payment.id} of invoice {invoice.id}: "
            f"{', '.join(differs) or 'malformed amount'}; nothing changed"), []
    failure = None
    if event_type == "payment_intent.payment_failed":
        failure = (intent.failure_code, intent.failure_message or "payment failed")
    plan = payments.settle(invoice, payment, intent, now=now, failure=failure,
                           failures=failures, days=days, box=box)
    return (WebhookOutcome.PROCESSED, f"payment {payment.id}: {plan.result[1].status}",
            plan.writes)


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
    code, message = error.get("code"), error.get("message")
    return Intent(
        id=str(obj.get("id")), status=status,
        amount=amount if isinstance(amount, int) and not isinstance(amount, bool) else -1,
        currency=str(obj.get("currency") or ""),
        failure_code=code[:100] if isinstance(code, str) else None,
        failure_message=message[:300] if isinstance(message, str) else None,
        customer_id=customer if isinstance(customer, str) else None)
