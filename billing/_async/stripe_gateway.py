"""The payment gateway on Stripe, through stripe-python's StripeClient."""

from __future__ import annotations

import stripe

from billing.adapters.stripe_errors import translate, translating
from billing.domain.models import RefundStatus
from billing.domain.payments import (
    CUSTOMER_GENERATION,
    CardMethod,
    Intent,
    IntentStatus,
    StripeCustomer,
    StripeRefund,
)
from billing.errors import NotFound

_END_OF_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z
GENERATION = CUSTOMER_GENERATION
# An intent in one of these states was confirmed before: a retried confirm returns it.
_CONFIRMED = frozenset({IntentStatus.SUCCEEDED, IntentStatus.PROCESSING,
                        IntentStatus.REQUIRES_CAPTURE, IntentStatus.REQUIRES_ACTION})


class AsyncStripeGateway:
    """The payment gateway on Stripe. One attempt per call (the client's default): the caller
    decides about retries, made safe by its idempotency keys. Stripe errors are translated by
    `billing.adapters.stripe_errors.translate`.

    `off_session=False` confirms without `off_session`, for servers that refuse it (localstripe);
    against Stripe keep the default, as payments are merchant-initiated.
    """

    def __init__(self, client: stripe.StripeClient, *, off_session: bool = True) -> None:
        self._v1 = client.v1
        self._off_session = off_session

    async def create_customer(
        self, *, org_id: str, name: str, idempotency_key: str, generation: int = 0
    ) -> str:
        metadata = {"org_id": org_id, GENERATION: str(generation)}
        with translating():
            customer = await self._v1.customers.create_async(
                params={"name": name, "metadata": metadata},
                options={"idempotency_key": idempotency_key})
        return customer.id

    async def find_customers(
        self, *, org_id: str, created_since: int, created_until: int | None = None
    ) -> list[StripeCustomer]:
        # customers.list, not customers.search: search lags behind writes, and this looks for
        # a customer created moments ago. Bounded by `created`, so only that window is paged.
        until = created_until if created_until is not None else _END_OF_TIME
        with translating():
            try:
                page = await self._v1.customers.list_async(
                    params={"created": {"gte": created_since, "lte": until}, "limit": 100})
            except stripe.InvalidRequestError as exc:
                if exc.http_status != 400:
                    raise
                # A server without the `created` filter (localstripe): list all, filter here.
                page = await self._v1.customers.list_async(params={"limit": 100})
            found = [_customer(c) async for c in page.auto_paging_iter()]
        return [c for c in found if c.org_id == org_id and c.created >= created_since
                and (created_until is None or c.created <= created_until)]

    async def delete_customer(self, customer_id: str, *, idempotency_key: str) -> None:
        try:
            await self._v1.customers.delete_async(
                customer_id, options={"idempotency_key": idempotency_key})
        except stripe.StripeError as exc:
            error = translate(exc)
            if not isinstance(error, NotFound):
                raise error from exc

    async def attach(
        self, *, payment_method: str, customer_id: str, idempotency_key: str
    ) -> CardMethod:
        with translating():
            method = await self._v1.payment_methods.attach_async(
                payment_method, params={"customer": customer_id},
                options={"idempotency_key": idempotency_key})
        return _card(method)

    async def detach(self, payment_method_id: str, *, idempotency_key: str) -> None:
        try:
            await self._v1.payment_methods.detach_async(
                payment_method_id, options={"idempotency_key": idempotency_key})
        except stripe.InvalidRequestError as exc:
            if isinstance(translate(exc), NotFound):
                return  # gone
            # Stripe refuses to detach a method that is not attached: decide on its state.
            try:
                current = await self.retrieve_payment_method(payment_method_id)
            except NotFound:
                return
            if current.customer_id is not None:
                raise translate(exc) from exc
        except stripe.StripeError as exc:
            raise translate(exc) from exc

    async def retrieve_payment_method(self, payment_method_id: str) -> CardMethod:
        with translating():
            method = await self._v1.payment_methods.retrieve_async(payment_method_id)
        return _card(method)

    async def list_payment_methods(self, customer_id: str) -> list[CardMethod]:
        # payment_methods.list, not customers/{id}/payment_methods (localstripe lacks it).
        # No `type`: Stripe then lists every type (a bank debit as well as cards); a filter
        # would make an attached non-card method look detached to reconciliation.
        with translating():
            page = await self._v1.payment_methods.list_async(
                params={"customer": customer_id, "limit": 100})
            return [_card(method) async for method in page.auto_paging_iter()]

    async def create_intent(
        self, *, customer_id: str, payment_method_id: str, amount: int, currency: str,
        metadata: dict[str, str], idempotency_key: str,
    ) -> Intent:
        # The method is set here: localstripe answers 500 to confirm(payment_method=...).
        with translating():
            intent = await self._v1.payment_intents.create_async(
                params={"customer": customer_id, "payment_method": payment_method_id,
                        "amount": amount, "currency": currency, "metadata": metadata},
                options={"idempotency_key": idempotency_key})
        return _intent(intent)

    async def confirm_intent(self, intent_id: str, *, idempotency_key: str) -> Intent:
        try:
            intent = await self._v1.payment_intents.confirm_async(
                intent_id, params={"off_session": True} if self._off_session else {},
                options={"idempotency_key": idempotency_key})
        except stripe.InvalidRequestError as exc:
            # Confirmed before (a retry after a lost answer): Stripe says
            # payment_intent_unexpected_state, localstripe a bare 400. Decide on its state.
            if exc.http_status != 400:
                raise translate(exc) from exc
            current = await self.retrieve_intent(intent_id)
            if current.status not in _CONFIRMED:
                raise translate(exc) from exc
            return current
        except stripe.StripeError as exc:
            raise translate(exc) from exc
        return _intent(intent)

    async def retrieve_intent(self, intent_id: str) -> Intent:
        with translating():
            intent = await self._v1.payment_intents.retrieve_async(intent_id)
        return _intent(intent)

    async def cancel_intent(self, intent_id: str, *, idempotency_key: str) -> Intent:
        try:
            intent = await self._v1.payment_intents.cancel_async(
                intent_id, options={"idempotency_key": idempotency_key})
        except stripe.InvalidRequestError as exc:
            # Canceled before (a retry): return it; any other state is a real refusal.
            if exc.http_status != 400:
                raise translate(exc) from exc
            current = await self.retrieve_intent(intent_id)
            if current.status is not IntentStatus.CANCELED:
                raise translate(exc) from exc
            return current
        except stripe.StripeError as exc:
            raise translate(exc) from exc
        return _intent(intent)

    async def refund(
        self, *, intent_id: str, amount: int, metadata: dict[str, str], idempotency_key: str
    ) -> StripeRefund:
        with translating():
            refund = await self._v1.refunds.create_async(
                params={"payment_intent": intent_id, "amount": amount, "metadata": metadata},
                options={"idempotency_key": idempotency_key})
        return _refund(refund, intent_id)

    async def retrieve_refund(self, refund_id: str) -> StripeRefund:
        with translating():
            refund = await self._v1.refunds.retrieve_async(refund_id)
        return _refund(refund, None)

    async def list_refunds(self, intent_id: str) -> list[StripeRefund]:
        with translating():
            page = await self._v1.refunds.list_async(
                params={"payment_intent": intent_id, "limit": 100})
            found = [_refund(r, None) async for r in page.auto_paging_iter()]
        # A server that ignores the filter (localstripe) lists every refund: keep the intent's.
        return [r for r in found if r.intent_id == intent_id]


_REFUND_STATUS = {"pending": RefundStatus.PENDING, "requires_action": RefundStatus.PENDING,
                  "succeeded": RefundStatus.SUCCEEDED, "failed": RefundStatus.FAILED,
                  "canceled": RefundStatus.CANCELED}


def _refund(refund: stripe.Refund, intent_id: str | None) -> StripeRefund:
    intent = getattr(refund, "payment_intent", None) or intent_id
    metadata = getattr(refund, "metadata", None)
    meta = metadata.to_dict() if metadata is not None else {}
    return StripeRefund(
        id=refund.id, status=_REFUND_STATUS.get(str(refund.status), RefundStatus.PENDING),
        amount=int(refund.amount), currency=str(refund.currency),
        intent_id=intent if isinstance(intent, str) or intent is None else intent.id,
        metadata={str(k): str(v) for k, v in meta.items()},
        failure_reason=getattr(refund, "failure_reason", None))


def _card(method: stripe.PaymentMethod) -> CardMethod:
    customer = method.customer
    card = getattr(method, "card", None)  # only a card has one: absent from a bank debit
    return CardMethod(
        id=method.id,
        customer_id=customer if isinstance(customer, str) or customer is None else customer.id,
        brand=card.brand if card else None, last4=card.last4 if card else None,
        exp_month=card.exp_month if card else None, exp_year=card.exp_year if card else None,
    )


def _customer(customer: stripe.Customer) -> StripeCustomer:
    meta = customer.metadata.to_dict() if customer.metadata else {}
    return StripeCustomer.of(customer.id, meta, int(customer.created))


def _intent(intent: stripe.PaymentIntent) -> Intent:
    error = intent.last_payment_error
    customer = getattr(intent, "customer", None)  # absent from some answers
    return Intent(
        id=intent.id, status=IntentStatus(intent.status), amount=intent.amount,
        currency=intent.currency,
        failure_code=(getattr(error, "decline_code", None) or error.code) if error else None,
        failure_message=error.message if error else None,
        customer_id=customer if isinstance(customer, str) or customer is None else customer.id,
    )
