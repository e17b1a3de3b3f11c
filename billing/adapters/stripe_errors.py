"""Translate stripe-python errors into the billing error tree, at the edge.

Closed by default, in the dj-stripe way: each case is recognised by the exception's class and
Stripe's structured fields (`code`, `param`, HTTP status), never by message text; anything not
recognised becomes a plain, non-retryable PaymentError carrying Stripe's code and request id.
Messages never contain the API key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import stripe

from billing.errors import (
    BillingError,
    CardDeclined,
    ConfigurationError,
    NotFound,
    PaymentError,
    PaymentMethodNotFound,
    PaymentProviderUnavailable,
    PaymentRequiresAction,
)

# Codes that mean "Stripe is busy, the same request may succeed later": another request holds
# the object's lock or the idempotency key; rate limits once came as 400 with this code.
_BUSY_CODES = frozenset({"lock_timeout", "idempotency_key_in_use", "rate_limit"})
# Params naming a payment method or customer; other missing resources are plain NotFound.
_METHOD_PARAMS = frozenset({None, "payment_method", "customer", "id"})
_KEY = re.compile(r"\b[srp]k_(?:test|live)_\w+")


def translate(exc: stripe.StripeError) -> BillingError:
    """The billing error for a Stripe error; raise it `from exc`."""
    code = _code(exc)
    ref = f" (Stripe request {exc.request_id})" if exc.request_id else ""
    if isinstance(exc, stripe.CardError):
        if code == "authentication_required":
            return PaymentRequiresAction(
                f"the card issuer requires authentication (3-D Secure){ref}: ask the customer "
                "to confirm the payment while present", code=code)
        decline = _decline_code(exc)
        detail = f"{code}, {decline}" if decline else str(code)
        return CardDeclined(f"the card was declined ({detail}){ref}: ask the customer for "
                            "another payment method", code=code, decline_code=decline)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        # Stripe's own message quotes (part of) the key: leave it out entirely.
        return ConfigurationError(
            f"Stripe rejected the API key ({type(exc).__name__}, HTTP {exc.http_status}){ref}: "
            "configure a valid secret key with access to this account")
    if _busy(exc, code):
        return PaymentProviderUnavailable(
            f"Stripe is unavailable or busy ({type(exc).__name__}, code {code}){ref}: nothing "
            "was confirmed; retry later with the same idempotency key", code=code)
    if isinstance(exc, stripe.InvalidRequestError) and (
        code == "resource_missing" or exc.http_status == 404
    ):
        if exc.param in _METHOD_PARAMS:
            return PaymentMethodNotFound(
                f"Stripe has no such payment method or customer (param {exc.param}){ref}: "
                "attach a payment method again")
        return NotFound(f"Stripe has no such {exc.param}{ref}: check the stored id")
    return PaymentError(
        f"Stripe refused the request ({type(exc).__name__}, HTTP {exc.http_status}, code "
        f"{code}){ref}: {_brief(exc)}; fix the request or contact support with the request id",
        code=code)


@contextmanager
def translating() -> Iterator[None]:
    """Raise the translation of any Stripe error raised inside the block (`from` it)."""
    try:
        yield
    except stripe.StripeError as exc:
        raise translate(exc) from exc


def _busy(exc: stripe.StripeError, code: str | None) -> bool:
    if isinstance(exc, stripe.RateLimitError | stripe.APIConnectionError):
        return True
    if isinstance(exc, stripe.APIError) and (exc.http_status is None or exc.http_status >= 500):
        return True
    return code in _BUSY_CODES


def _code(exc: stripe.StripeError) -> str | None:
    # Some error classes (RateLimitError, APIError) are built without `code`: read the body's.
    if exc.code:
        return exc.code
    return exc.error.code if exc.error is not None else None


def _decline_code(exc: stripe.StripeError) -> str | None:
    return exc.error.decline_code if exc.error is not None else None


def _brief(exc: stripe.StripeError) -> str:
    text = _KEY.sub("<key>", exc.user_message or "no message")
    return text if len(text) <= 200 else text[:197] + "..."
