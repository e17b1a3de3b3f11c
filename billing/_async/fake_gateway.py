"""An in-memory payment gateway for unit and fault tests: Stripe's behaviour, no network.

It follows Stripe's test cards as localstripe implements them (tests/integration/
test_stripe_gateway.py runs the same contract on both): the token `pm_card_visa` attaches as a
fresh `pm_` id; 4000000000000002 (`pm_card_visa_chargeDeclined`, `pm_card_chargeDeclined`) is
declined when attached, and when charged unattached; 4000000000000341
(`pm_card_chargeCustomerFail`) attaches but is declined at confirm; 4000002500003155 and
4000000000003220 (`pm_card_threeDSecure2Required`) leave the intent in requires_action.

Beyond localstripe it models the rest of Stripe's PaymentIntent life cycle: `pm_bank_debit`
(an asynchronous method, like a bank debit) leaves a confirmed intent `processing`, which cannot
be canceled and ends later by `settle_processing`; an intent awaiting 3-D Secure ends later by
`complete_action` (the customer authenticates or abandons); amounts below Stripe's minimum are
refused (`amount_too_small`); a detached payment method is never attached again (as in
Stripe). Refunds follow Stripe's Refund life cycle: one of a card charge
succeeds at once; one of a `pm_bank_debit` charge stays `pending` until `settle_refund` makes it
succeeded or failed; a pending refund can be canceled (`cancel_refund`). `fail_next` scripts a
transient or refusing failure at any call, before or after Stripe acted, and `during` runs code
while a call is in flight.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeVar

from billing.domain.models import RefundStatus
from billing.domain.payments import (
    CUSTOMER_GENERATION,
    MINIMUM_CHARGE,
    CardMethod,
    Intent,
    IntentStatus,
    StripeCustomer,
    StripeRefund,
)
from billing.errors import (
    BillingError,
    CardDeclined,
    NotFound,
    PaymentError,
    PaymentMethodNotFound,
)

LOST_CARD = "4000000000009987"  # declined with decline_code lost_card: retrying is pointless
ASYNC_DEBIT = "bank-debit"  # not a card: confirmed intents wait in `processing`
TOKENS = {
    "pm_card_visa": "4242424242424242",
    "pm_card_visa_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_chargeCustomerFail": "4000000000000341",
    "pm_card_lostCard": LOST_CARD,
    "pm_card_threeDSecure2Required": "4000000000003220",
    "pm_bank_debit": ASYNC_DEBIT,
}
DECLINED = frozenset({"4000000000000002"})  # at attach and at charge
CHARGE_DECLINED = frozenset({"4000000000000341"})  # attaches, then every charge fails
AUTHENTICATE = frozenset({"4000002500003155", "4000000000003220"})
_CONFIRMED = frozenset({IntentStatus.SUCCEEDED, IntentStatus.PROCESSING,
                        IntentStatus.REQUIRES_CAPTURE, IntentStatus.REQUIRES_ACTION})
_CANCELABLE = frozenset({IntentStatus.REQUIRES_PAYMENT_METHOD, IntentStatus.REQUIRES_CONFIRMATION,
                         IntentStatus.REQUIRES_ACTION, IntentStatus.REQUIRES_CAPTURE})
T = TypeVar("T")
_METHODS = frozenset({"create_customer", "find_customers", "delete_customer", "attach",
                      "detach", "retrieve_payment_method",
                      "list_payment_methods", "create_intent", "confirm_intent",
                      "retrieve_intent", "cancel_intent", "refund", "retrieve_refund",
                      "list_refunds"})


class AsyncFakeGateway:
    """The payment gateway in memory, deterministic ids (cus_000001, pm_000002, ...).

    `charges` lists money actually moved, as (intent_id, amount, currency); `calls` every call as
    (method, idempotency_key or None). `fail_next` injects errors, before or after the effect.
    `customers` holds live customers only (a deleted one is removed, its methods detached).
    With `replay_customer_keys` (Stripe's behaviour, for 24 hours) a create_customer repeating an
    idempotency key answers with the customer that key created, even a deleted one; without it
    (localstripe's behaviour) every call creates a customer. With `replay_refund_keys`
    (Stripe's behaviour) a refund repeating an idempotency key answers with the refund that key
    made; without it (the default, localstripe's) every call makes a refund, so tests show
    what holds without Stripe's help.
    """

    def __init__(self, *, replay_customer_keys: bool = True,
                 replay_refund_keys: bool = False) -> None:
        self.customers: dict[str, dict[str, str]] = {}  # id -> metadata, name
        self.replay_customer_keys = replay_customer_keys
        self._customer_keys: dict[str, str] = {}  # idempotency key -> customer id
        self.replay_refund_keys = replay_refund_keys
        self._refund_keys: dict[str, str] = {}  # idempotency key -> refund id
        self._created: dict[str, int] = {}  # customer id -> Unix seconds
        self.methods: dict[str, CardMethod] = {}
        self.intents: dict[str, Intent] = {}
        self.charges: list[tuple[str, int, str]] = []
        self.calls: list[tuple[str, str | None]] = []
        self._numbers: dict[str, str] = {}  # method id -> card number
        self._detached: set[str] = set()  # methods detached from a customer: never reusable
        self._paid_with: dict[str, str] = {}  # intent id -> method id
        self.metadata: dict[str, dict[str, str]] = {}  # intent id -> its metadata
        self.refunds: dict[str, StripeRefund] = {}  # refund id -> refund, in creation order
        self._failures: dict[str, list[tuple[BillingError, bool]]] = {}
        self._during: dict[str, list[Callable[[], Awaitable[None]]]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()  # threads share one fake, as processes share Stripe

    def fail_next(
        self, method_name: str, error: BillingError, *, times: int = 1, after: bool = False
    ) -> None:
        """The next `times` calls of `method_name` raise `error` and do nothing else; with
        `after=True` they take effect first, as when Stripe acted but its answer was lost."""
        if method_name not in _METHODS:
            raise ValueError(f"no gateway method {method_name!r}: one of {sorted(_METHODS)}")
        self._failures.setdefault(method_name, []).extend([(error, after)] * times)

    def during(self, method_name: str, action: Callable[[], Awaitable[None]]) -> None:
        """Run `action` once, inside the next call of `method_name`, after Stripe acted and
        before the answer arrives: what other processes do while a slow call is in flight."""
        if method_name not in _METHODS:
            raise ValueError(f"no gateway method {method_name!r}: one of {sorted(_METHODS)}")
        self._during.setdefault(method_name, []).append(action)

    def taken(self, invoice_id: str) -> int:
        """Money moved for an invoice (by the `invoice_id` in its intents' metadata)."""
        return sum(amount for intent_id, amount, _ in self.charges
                   if self.metadata.get(intent_id, {}).get("invoice_id") == invoice_id)

    def refunded(self, invoice_id: str) -> int:
        """Money given back for an invoice: its intents' refunds that succeeded."""
        return sum(r.amount for r in self.refunds.values()
                   if r.status is RefundStatus.SUCCEEDED and r.intent_id is not None
                   and self.metadata.get(r.intent_id, {}).get("invoice_id") == invoice_id)

    def settle_refund(self, refund_id: str, *, succeeded: bool = True) -> StripeRefund:
        """The bank answers for a pending refund: it succeeds or fails."""
        with self._lock:
            refund = self.refunds[refund_id]
            if refund.status is not RefundStatus.PENDING:
                raise ValueError(f"refund {refund_id} is {refund.status}, not pending")
            self.refunds[refund_id] = refund = replace(
                refund, status=RefundStatus.SUCCEEDED if succeeded else RefundStatus.FAILED,
                failure_reason=None if succeeded else "declined")
            return refund

    def cancel_refund(self, refund_id: str) -> StripeRefund:
        """Cancel a pending refund (as the Dashboard can)."""
        with self._lock:
            refund = self.refunds[refund_id]
            if refund.status is not RefundStatus.PENDING:
                raise ValueError(f"refund {refund_id} is {refund.status}, not pending")
            self.refunds[refund_id] = refund = replace(refund, status=RefundStatus.CANCELED)
            return refund

    def complete_action(self, intent_id: str, *, authenticated: bool = True) -> Intent:
        """The customer finishes 3-D Secure on an intent in requires_action: it succeeds (money
        moves) or, abandoned or failed, returns to requires_payment_method."""
        with self._lock:
            intent = self._intent(intent_id)
            if intent.status is not IntentStatus.REQUIRES_ACTION:
                raise ValueError(f"intent {intent_id} is {intent.status}, not requires_action")
            return self._conclude(intent, succeeded=authenticated,
                                  code="payment_intent_authentication_failure")

    def confirm_on_session(self, intent_id: str, *, succeeded: bool = True) -> Intent:
        """The customer confirms an intent again, on-session with its client_secret (Stripe's
        recovery after a decline or a failed 3-D Secure: a new card on the same intent): from
        `requires_payment_method` it succeeds (money moves) or fails again. Stripe refuses a
        canceled intent, as any other state: payment_intent_unexpected_state."""
        with self._lock:
            intent = self._intent(intent_id)
            if intent.status is not IntentStatus.REQUIRES_PAYMENT_METHOD:
                raise PaymentError(f"intent {intent_id} is {intent.status}: it cannot be confirmed",
                                   code="payment_intent_unexpected_state")
            return self._conclude(intent, succeeded=succeeded, code="card_declined")

    def settle_processing(self, intent_id: str, *, succeeded: bool = True) -> Intent:
        """The bank answers for a processing intent: it succeeds (money moves) or fails."""
        with self._lock:
            intent = self._intent(intent_id)
            if intent.status is not IntentStatus.PROCESSING:
                raise ValueError(f"intent {intent_id} is {intent.status}, not processing")
            return self._conclude(intent, succeeded=succeeded, code="payment_failed")

    def _conclude(self, intent: Intent, *, succeeded: bool, code: str) -> Intent:
        if succeeded:
            self.charges.append((intent.id, intent.amount, intent.currency))
            done = replace(intent, status=IntentStatus.SUCCEEDED)
        else:
            done = replace(intent, status=IntentStatus.REQUIRES_PAYMENT_METHOD,
                           failure_code=code, failure_message="The payment failed.")
        self.intents[intent.id] = done
        return done

    def create_card(self, number: str, *, exp_month: int = 12, exp_year: int = 2034) -> str:
        """A new unattached card payment method (as POST /v1/payment_methods); its id."""
        method = CardMethod(id=self._new_id("pm"), customer_id=None, brand="visa",
                            last4=number[-4:], exp_month=exp_month, exp_year=exp_year)
        self.methods[method.id], self._numbers[method.id] = method, number
        return method.id

    async def create_customer(
        self, *, org_id: str, name: str, idempotency_key: str, generation: int = 0
    ) -> str:
        with self._lock:  # Stripe applies each request atomically
            self._enter("create_customer", idempotency_key)
            if self.replay_customer_keys and idempotency_key in self._customer_keys:
                return await self._done("create_customer", self._customer_keys[idempotency_key])
            customer_id = self._new_id("cus")
            self.customers[customer_id] = {"org_id": org_id, "name": name,
                                           CUSTOMER_GENERATION: str(generation)}
            self._created[customer_id] = int(time.time())
            self._customer_keys[idempotency_key] = customer_id
            return await self._done("create_customer", customer_id)

    async def find_customers(
        self, *, org_id: str, created_since: int, created_until: int | None = None
    ) -> list[StripeCustomer]:
        with self._lock:  # Stripe applies each request atomically
            self._enter("find_customers", None)
            # Metadata read as the Stripe gateway reads it: a customer another system made
            # (an org_id, no generation of ours) is listed with generation None.
            found = [StripeCustomer.of(cid, meta, self._created[cid])
                     for cid, meta in self.customers.items()
                     if meta.get("org_id") == org_id and created_since <= self._created[cid]
                     and (created_until is None or self._created[cid] <= created_until)]
            return await self._done("find_customers", found)

    async def delete_customer(self, customer_id: str, *, idempotency_key: str) -> None:
        with self._lock:  # Stripe applies each request atomically
            self._enter("delete_customer", idempotency_key)
            if self.customers.pop(customer_id, None) is not None:
                for method in list(self.methods.values()):
                    if method.customer_id == customer_id:
                        self.methods[method.id] = replace(method, customer_id=None)
            await self._done("delete_customer", None)

    async def attach(
        self, *, payment_method: str, customer_id: str, idempotency_key: str
    ) -> CardMethod:
        with self._lock:  # Stripe applies each request atomically
            self._enter("attach", idempotency_key)
            method_id = self._method(payment_method).id
            self._customer(customer_id)
            if method_id in self._detached:
                raise PaymentError(
                    "Stripe refused the request (InvalidRequestError, HTTP 400, code None): "
                    "This PaymentMethod was previously used without being attached to a "
                    "Customer or was detached from a Customer, and may not be used again.; fix "
                    "the request or contact support with the request id", code=None)
            if self._numbers[method_id] in DECLINED:
                raise _declined()
            self.methods[method_id] = replace(self.methods[method_id], customer_id=customer_id)
            return await self._done("attach", self.methods[method_id])

    async def detach(self, payment_method_id: str, *, idempotency_key: str) -> None:
        with self._lock:  # Stripe applies each request atomically
            self._enter("detach", idempotency_key)
            if payment_method_id in self.methods:
                if self.methods[payment_method_id].customer_id is not None:
                    self._detached.add(payment_method_id)
                self.methods[payment_method_id] = replace(self.methods[payment_method_id],
                                                          customer_id=None)
            await self._done("detach", None)

    async def retrieve_payment_method(self, payment_method_id: str) -> CardMethod:
        with self._lock:  # Stripe applies each request atomically
            self._enter("retrieve_payment_method", None)
            return await self._done("retrieve_payment_method", self._method(payment_method_id))

    async def list_payment_methods(self, customer_id: str) -> list[CardMethod]:
        with self._lock:  # Stripe applies each request atomically
            self._enter("list_payment_methods", None)
            self._customer(customer_id)
            listed = [m for m in self.methods.values() if m.customer_id == customer_id]
            return await self._done("list_payment_methods", listed)

    async def create_intent(
        self, *, customer_id: str, payment_method_id: str, amount: int, currency: str,
        metadata: dict[str, str], idempotency_key: str,
    ) -> Intent:
        with self._lock:  # Stripe applies each request atomically
            self._enter("create_intent", idempotency_key)
            if amount <= 0:
                raise PaymentError(f"Stripe refused amount {amount}: charge at least 1", code=None)
            if amount < MINIMUM_CHARGE.get(currency, 1):
                raise PaymentError(f"Stripe refused amount {amount} {currency}: below its minimum",
                                   code="amount_too_small")
            self._customer(customer_id)
            method_id = self._method(payment_method_id).id
            intent = Intent(id=self._new_id("pi"), status=IntentStatus.REQUIRES_CONFIRMATION,
                            amount=amount, currency=currency, customer_id=customer_id)
            self.intents[intent.id] = intent
            self._paid_with[intent.id] = method_id
            self.metadata[intent.id] = dict(metadata)
            return await self._done("create_intent", intent)

    async def confirm_intent(self, intent_id: str, *, idempotency_key: str) -> Intent:
        with self._lock:  # Stripe applies each request atomically
            self._enter("confirm_intent", idempotency_key)
            intent = self._intent(intent_id)
            if intent.status in _CONFIRMED:  # a retry: nothing more is charged
                return await self._done("confirm_intent", intent)
            if intent.status is not IntentStatus.REQUIRES_CONFIRMATION:
                raise PaymentError(f"intent {intent_id} is {intent.status}: it cannot be confirmed",
                                   code="payment_intent_unexpected_state")
            number = self._numbers[self._paid_with[intent_id]]
            if number in AUTHENTICATE:
                status, code = IntentStatus.REQUIRES_ACTION, None
            elif number == ASYNC_DEBIT:
                status, code = IntentStatus.PROCESSING, None
            elif number in DECLINED | CHARGE_DECLINED | {LOST_CARD}:  # code: the decline_code
                status, code = IntentStatus.REQUIRES_PAYMENT_METHOD, \
                    "lost_card" if number == LOST_CARD else "card_declined"
            else:
                status, code = IntentStatus.SUCCEEDED, None
                self.charges.append((intent_id, intent.amount, intent.currency))
            self.intents[intent_id] = replace(
                intent, status=status, failure_code=code,
                failure_message="Your card was declined." if code else None)
            if code:
                raise _declined("lost_card" if number == LOST_CARD else None)
            return await self._done("confirm_intent", self.intents[intent_id])

    async def retrieve_intent(self, intent_id: str) -> Intent:
        with self._lock:  # Stripe applies each request atomically
            self._enter("retrieve_intent", None)
            return await self._done("retrieve_intent", self._intent(intent_id))

    async def cancel_intent(self, intent_id: str, *, idempotency_key: str) -> Intent:
        with self._lock:  # Stripe applies each request atomically
            self._enter("cancel_intent", idempotency_key)
            intent = self._intent(intent_id)
            if intent.status in _CANCELABLE:
                self.intents[intent_id] = intent = replace(intent, status=IntentStatus.CANCELED)
            elif intent.status is not IntentStatus.CANCELED:
                raise PaymentError(f"intent {intent_id} is {intent.status}: it cannot be canceled",
                                   code="payment_intent_unexpected_state")
            return await self._done("cancel_intent", intent)

    async def refund(
        self, *, intent_id: str, amount: int, metadata: dict[str, str], idempotency_key: str
    ) -> StripeRefund:
        with self._lock:  # Stripe applies each request atomically
            self._enter("refund", idempotency_key)
            if self.replay_refund_keys and idempotency_key in self._refund_keys:
                return await self._done("refund", self.refunds[self._refund_keys[idempotency_key]])
            intent = self._intent(intent_id)
            if intent.status is not IntentStatus.SUCCEEDED:
                raise PaymentError(f"intent {intent_id} is {intent.status}: nothing to refund",
                                   code="charge_not_refundable")
            taken = sum(r.amount for r in self.refunds.values() if r.intent_id == intent_id
                        and r.status in (RefundStatus.PENDING, RefundStatus.SUCCEEDED))
            if amount <= 0 or amount > intent.amount - taken:
                raise PaymentError(f"refund of {amount} exceeds what intent {intent_id} has "
                                   f"left to refund ({intent.amount - taken})",
                                   code="amount_too_large" if amount > 0 else None)
            slow = self._numbers.get(self._paid_with.get(intent_id, ""), "") == ASYNC_DEBIT
            refund = StripeRefund(
                id=self._new_id("re"),
                status=RefundStatus.PENDING if slow else RefundStatus.SUCCEEDED,
                amount=amount, currency=intent.currency, intent_id=intent_id,
                metadata=dict(metadata))
            self.refunds[refund.id] = refund
            self._refund_keys[idempotency_key] = refund.id
            return await self._done("refund", refund)

    async def retrieve_refund(self, refund_id: str) -> StripeRefund:
        with self._lock:  # Stripe applies each request atomically
            self._enter("retrieve_refund", None)
            if refund_id not in self.refunds:
                raise NotFound(f"Stripe has no such refund {refund_id}: check the stored id")
            return await self._done("retrieve_refund", self.refunds[refund_id])

    async def list_refunds(self, intent_id: str) -> list[StripeRefund]:
        with self._lock:  # Stripe applies each request atomically
            self._enter("list_refunds", None)
            self._intent(intent_id)
            listed = [r for r in self.refunds.values() if r.intent_id == intent_id]
            return await self._done("list_refunds", listed)

    def _enter(self, name: str, idempotency_key: str | None) -> None:
        self.calls.append((name, idempotency_key))
        if (queued := self._failures.get(name)) and not queued[0][1]:
            raise queued.pop(0)[0]

    async def _done(self, name: str, result: T) -> T:
        if actions := self._during.pop(name, None):
            for action in actions:
                await action()
        if (queued := self._failures.get(name)) and queued[0][1]:
            raise queued.pop(0)[0]
        return result

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}"

    def _method(self, method_id: str) -> CardMethod:
        if method_id in TOKENS:  # as Stripe does, a token becomes a new method on every use
            return self.methods[self.create_card(TOKENS[method_id])]
        if method_id not in self.methods:
            raise PaymentMethodNotFound(f"Stripe has no such payment method {method_id}: "
                                        "attach a payment method again")
        return self.methods[method_id]

    def _customer(self, customer_id: str) -> None:
        if customer_id not in self.customers:
            raise PaymentMethodNotFound(f"Stripe has no such customer {customer_id}: "
                                        "create the customer again")

    def _intent(self, intent_id: str) -> Intent:
        if intent_id not in self.intents:
            raise NotFound(f"Stripe has no such payment intent {intent_id}: check the stored id")
        return self.intents[intent_id]


def _declined(decline_code: str | None = None) -> CardDeclined:
    detail = f"card_declined, {decline_code}" if decline_code else "card_declined"
    return CardDeclined(f"the card was declined ({detail}): ask the customer for another "
                        "payment method", code="card_declined", decline_code=decline_code)
