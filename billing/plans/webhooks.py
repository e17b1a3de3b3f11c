"""What a verified Stripe event means for our documents, and what the host should answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from billing.adapters import schema
from billing.adapters.writes import Write, insert
from billing.domain.payments import Intent, IntentStatus

HANDLED = frozenset({
    "payment_intent.succeeded", "payment_intent.payment_failed", "payment_method.detached",
    "customer.deleted",
})


class WebhookOutcome(StrEnum):
    PROCESSED = "processed"  # applied now
    DUPLICATE = "duplicate"  # applied before: nothing done
    IGNORED = "ignored"  # authentic but not ours or not handled: nothing to do
    REJECTED = "rejected"  # not authentic or not parseable: do not retry
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


def intent_of(obj: dict[str, Any]) -> Intent:
    error = obj.get("last_payment_error") or {}
    try:
        status = IntentStatus(str(obj.get("status")))
    except ValueError:
        status = IntentStatus.PROCESSING
    return Intent(id=str(obj.get("id")), status=status, amount=int(obj.get("amount") or 0),
                  currency=str(obj.get("currency") or ""), failure_code=error.get("code"),
                  failure_message=error.get("message"))
