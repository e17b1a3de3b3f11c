"""What the payment gateway reports, as plain values (no Stripe objects past the adapter)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class CardMethod:
    """A payment method as Stripe holds it."""

    id: str  # pm_...
    customer_id: str | None  # None when not attached
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None


@dataclass(frozen=True, slots=True)
class StripeCustomer:
    """A Stripe customer we created: our metadata says for which org and claim generation."""

    id: str  # cus_...
    org_id: str | None
    generation: int | None
    created: int  # Unix seconds, Stripe's clock


class IntentStatus(StrEnum):
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"  # after a decline
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"  # 3-D Secure
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    CANCELED = "canceled"
    SUCCEEDED = "succeeded"


@dataclass(frozen=True, slots=True)
class Intent:
    id: str  # pi_...
    status: IntentStatus
    amount: int
    currency: str
    failure_code: str | None = None
    failure_message: str | None = None
