"""When an open invoice is due for a payment attempt: the retry schedule (dunning). Pure.

A schedule lists the days after finalisation on which attempts are made, by default 0, 3, 5 and
7: the first attempt at once, then retries. Only failures that a retry could cure count: a
decline whose code says retrying is pointless (a lost or stolen card...) waits for the org to set
a new default payment method, and a new default makes the invoice due again at once. An attempt
Stripe still holds (awaiting 3-D Secure, processing, or in flight) is waiting, never retried.
After the last scheduled attempt fails, the invoice becomes `uncollectible` (in the transaction
that records that failure: `payments.settle`); collection leaves it alone from then on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from billing.domain.models import Invoice, InvoiceStatus, Payment, PaymentStatus
from billing.errors import InvalidInput, shown

DEFAULT_SCHEDULE = (0, 3, 5, 7)
MAX_ATTEMPTS = 30
# Stripe decline codes after which the same card will not succeed: wait for a new default.
NO_RETRY = frozenset({
    "lost_card", "stolen_card", "pickup_card", "expired_card", "incorrect_number",
    "invalid_account", "card_not_supported", "restricted_card", "security_violation",
    "revocation_of_authorization", "revocation_of_all_authorizations",
})
WAITING = frozenset({PaymentStatus.PENDING, PaymentStatus.CONFIRMING,
                     PaymentStatus.REQUIRES_ACTION, PaymentStatus.PROCESSING})


def schedule(days: object, *, name: str = "schedule") -> tuple[int, ...]:
    """Validate a retry schedule: 1 to 30 whole days after finalisation, strictly increasing,
    the first at least 0."""
    if isinstance(days, str | bytes) or not isinstance(days, Sequence):
        raise InvalidInput(f"{name} must be a list of days, e.g. [0, 3, 5, 7], got {shown(days)}")
    values = list(days)
    if not 1 <= len(values) <= MAX_ATTEMPTS or any(
            isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 366 for d in values):
        raise InvalidInput(f"{name} must hold 1 to {MAX_ATTEMPTS} whole days from 0 to 366, "
                           f"got {shown(days)}")
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise InvalidInput(f"{name} days must increase, got {shown(days)}")
    return tuple(values)


# Refusals that are no decline at all: Stripe's minimum charge (`amount_too_small`, raised as
# AmountBelowMinimum like our own table's, leaving the invoice open for a person to void).
NOT_A_DECLINE = frozenset({"amount_too_small"})


def counted(payment: Payment) -> bool:
    """A failed attempt that uses up one scheduled attempt (not one waiting for a new card,
    nor one Stripe refused for its amount)."""
    return payment.status is PaymentStatus.FAILED and \
        payment.failure_code not in NO_RETRY | NOT_A_DECLINE


def exhausted(failures: int, days: Sequence[int]) -> bool:
    """The schedule is used up: the invoice becomes uncollectible."""
    return failures >= len(days)


class State(StrEnum):
    DUE = "due"  # an attempt should be made now
    NOT_YET = "not_yet"  # the next attempt is scheduled later
    WAITING = "waiting"  # Stripe holds an attempt (3-D Secure, processing, in flight)
    NEEDS_METHOD = "needs_method"  # no usable default, or the card was declined for good
    DONE = "done"  # paid, void, uncollectible or nothing to collect


@dataclass(frozen=True)
class Due:
    state: State
    attempt: int  # the attempt this would be (1-based) among the scheduled ones
    at: datetime | None = None  # when it is due (NOT_YET: later)
    reason: str = ""


def due(invoice: Invoice, attempts: Sequence[Payment], default_method_id: str | None,
        days: Sequence[int], *, now: datetime) -> Due:
    """Whether to make an attempt on `invoice` now, from its attempts (any order) and the
    org's current default payment method."""
    failures = sum(1 for p in attempts if counted(p))
    if invoice.status is not InvoiceStatus.OPEN:
        return Due(State.DONE, failures, reason=invoice.status.value)
    latest = max(attempts, key=lambda p: p.attempt) if attempts else None
    if latest is not None and latest.status in WAITING:
        return Due(State.WAITING, failures, reason=f"payment {latest.id} is "
                   f"{latest.status.value}")
    if invoice.amount_due == 0:  # pay() marks it paid without Stripe or a card
        return Due(State.DUE, failures + 1, at=now, reason="nothing is due: paid without Stripe")
    if default_method_id is None:
        return Due(State.NEEDS_METHOD, failures + 1, reason="the org has no default payment "
                   "method")
    if latest is not None and latest.status is PaymentStatus.FAILED and \
            latest.failure_code in NO_RETRY and latest.payment_method_id == default_method_id:
        return Due(State.NEEDS_METHOD, failures + 1, reason=f"declined ({latest.failure_code}): "
                   "retrying the same card is pointless; waiting for a new default")
    if exhausted(failures, days):
        return Due(State.DONE, failures, reason="the schedule is used up")
    assert invoice.finalized_at is not None
    at = invoice.finalized_at + timedelta(days=days[failures])
    new_card = latest is not None and latest.payment_method_id != default_method_id
    if at <= now or new_card:
        return Due(State.DUE, failures + 1, at=min(at, now))
    return Due(State.NOT_YET, failures + 1, at=at)
