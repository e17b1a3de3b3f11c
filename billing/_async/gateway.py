"""The payment gateway the services talk to: Stripe in production, a fake in tests.

Every call is made outside any MongoDB transaction. Implementations translate provider errors
into billing errors: CardDeclined, PaymentProviderUnavailable (retryable), PaymentMethodNotFound,
ConfigurationError (bad key), PaymentError (anything else). Idempotency keys are passed through
to the provider, but correctness never depends on the provider honouring them.
"""

from __future__ import annotations

from typing import Protocol

from billing.domain.payments import CardMethod, Intent, StripeCustomer, StripeRefund


class AsyncPaymentGateway(Protocol):
    async def create_customer(
        self, *, org_id: str, name: str, idempotency_key: str, generation: int = 0
    ) -> str:
        """Create a customer (metadata org_id and generation) and return its id."""
        ...

    async def find_customers(
        self, *, org_id: str, created_since: int, created_until: int | None = None
    ) -> list[StripeCustomer]:
        """Customers whose metadata names `org_id`, created in [`created_since`,
        `created_until`] (Unix seconds): what a create whose answer was lost left behind."""
        ...

    async def delete_customer(self, customer_id: str, *, idempotency_key: str) -> None:
        """Delete the customer (irreversible); a customer that is already gone is not an
        error."""
        ...

    async def attach(
        self, *, payment_method: str, customer_id: str, idempotency_key: str
    ) -> CardMethod:
        """Attach a payment method (pm_... or a test token) to the customer; returns it as
        attached (its id may differ from the argument, as for tokens)."""
        ...

    async def detach(self, payment_method_id: str, *, idempotency_key: str) -> None:
        """Detach; a method that is already detached or gone is not an error."""
        ...

    async def retrieve_payment_method(self, payment_method_id: str) -> CardMethod:
        """The method with its current customer (None when detached); PaymentMethodNotFound."""
        ...

    async def list_payment_methods(self, customer_id: str) -> list[CardMethod]:
        """The payment methods attached to the customer, of every type (cards, bank
        debits); PaymentMethodNotFound when the customer does not exist."""
        ...

    async def create_intent(
        self, *, customer_id: str, payment_method_id: str, amount: int, currency: str,
        metadata: dict[str, str], idempotency_key: str,
    ) -> Intent:
        """Create an unconfirmed PaymentIntent (no money moves until confirm_intent)."""
        ...

    async def confirm_intent(self, intent_id: str, *, idempotency_key: str) -> Intent:
        """Confirm off-session. Raises CardDeclined on a decline; returns requires_action for
        3-D Secure. Confirming an intent that already succeeded returns it, charging nothing."""
        ...

    async def retrieve_intent(self, intent_id: str) -> Intent:
        ...

    async def cancel_intent(self, intent_id: str, *, idempotency_key: str) -> Intent:
        ...

    async def refund(
        self, *, intent_id: str, amount: int, metadata: dict[str, str], idempotency_key: str
    ) -> StripeRefund:
        """Refund `amount` of the intent's succeeded charge. Money may move before the answer
        arrives: a caller that lost it looks the refund up with `list_refunds`."""
        ...

    async def retrieve_refund(self, refund_id: str) -> StripeRefund:
        """The refund by Stripe's id; NotFound."""
        ...

    async def list_refunds(self, intent_id: str) -> list[StripeRefund]:
        """The intent's refunds, with their metadata."""
        ...
