"""What the payment gateway reports, as plain values (no Stripe objects past the adapter)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from billing.domain.models import RefundStatus


@dataclass(frozen=True, slots=True)
class CardMethod:
    """A payment method as Stripe holds it."""

    id: str  # pm_...
    customer_id: str | None  # None when not attached
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None


CUSTOMER_GENERATION = "billing_generation"  # customer metadata: the org's claim that made it


@dataclass(frozen=True, slots=True)
class StripeCustomer:
    """A Stripe customer we created: our metadata says for which org and claim generation."""

    id: str  # cus_...
    org_id: str | None
    generation: int | None
    created: int  # Unix seconds, Stripe's clock

    @classmethod
    def of(cls, customer_id: str, metadata: dict[str, Any], created: int) -> StripeCustomer:
        """Read from its metadata: a customer another system made (an org_id, but no
        generation of ours) has generation None."""
        generation = metadata.get(CUSTOMER_GENERATION)
        return cls(id=customer_id, org_id=metadata.get("org_id"), created=created,
                   generation=int(generation) if isinstance(generation, str)
                   and generation.isdigit() else None)


class IntentStatus(StrEnum):
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"  # after a decline
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"  # 3-D Secure
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    CANCELED = "canceled"
    SUCCEEDED = "succeeded"


# Stripe's documented smallest charge per presentment currency, in minor units (0.50 usd). A
# currency not listed here is checked by Stripe itself (its `amount_too_small` refusal).
MINIMUM_CHARGE = {
    "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50, "czk": 1500,
    "dkk": 250, "eur": 50, "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50, "jpy": 50,
    "mxn": 1000, "myr": 200, "nok": 300, "nzd": 50, "pln": 200, "ron": 200, "sek": 300,
    "sgd": 50, "thb": 1000,
}


def below_minimum(amount: int, currency: str) -> int | None:
    """The provider's minimum when `amount` (> 0) is below it, else None."""
    least = MINIMUM_CHARGE.get(currency)
    return least if least is not None and 0 < amount < least else None


@dataclass(frozen=True, slots=True)
class Intent:
    id: str  # pi_...
    status: IntentStatus
    amount: int
    currency: str
    # last_payment_error: the issuer's decline_code (lost_card...) if any, else its code
    failure_code: str | None = None
    failure_message: str | None = None
    customer_id: str | None = None


@dataclass(frozen=True, slots=True)
class StripeRefund:
    """A refund as Stripe holds it (`requires_action` is reported as pending)."""

    id: str  # re_...
    status: RefundStatus
    amount: int
    currency: str
    intent_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    failure_reason: str | None = None

    @property
    def final(self) -> bool:
        return self.status is not RefundStatus.PENDING
