"""Stripe errors become billing errors by class and Stripe's code, closed by default."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from billing.adapters.stripe_errors import translate, translating
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

KEY = "sk_live_51Hsecretsecretsecret"
HEADERS = {"request-id": "req_abc123"}


def body(code: str | None = None, **fields: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"type": "invalid_request_error", "message": "Stripe says no"}
    if code:
        error["code"] = code
    return {"error": {**error, **fields}}


def card_error(code: str, **fields: Any) -> stripe.CardError:
    return stripe.CardError("Your card was declined.", None, code, http_status=402,
                            json_body=body(code, type="card_error", **fields), headers=HEADERS)


def invalid(code: str | None, *, param: str | None = None, status: int = 400
            ) -> stripe.InvalidRequestError:
    return stripe.InvalidRequestError("No such thing", param, code, http_status=status,
                                      json_body=body(code, param=param), headers=HEADERS)


def test_a_card_error_is_card_declined_with_stripes_code() -> None:
    err = translate(card_error("card_declined", decline_code="insufficient_funds"))

    assert type(err) is CardDeclined and err.code == "card_declined" and not err.retryable
    assert "insufficient_funds" in err.message and "another payment method" in err.message
    assert "req_abc123" in err.message


@pytest.mark.parametrize("code", ["expired_card", "incorrect_cvc", "processing_error"])
def test_every_card_error_is_a_decline(code: str) -> None:
    err = translate(card_error(code))
    assert type(err) is CardDeclined and err.code == code


def test_authentication_required_asks_for_the_customer() -> None:
    err = translate(card_error("authentication_required"))
    assert type(err) is PaymentRequiresAction and err.code == "authentication_required"


@pytest.mark.parametrize("exc", [
    stripe.AuthenticationError(f"Invalid API Key provided: {KEY}", http_status=401,
                               headers=HEADERS),
    stripe.PermissionError(f"The provided key '{KEY}' does not have access", http_status=403),
])
def test_a_rejected_key_is_a_configuration_error_without_the_key(exc: stripe.StripeError) -> None:
    err = translate(exc)

    assert type(err) is ConfigurationError and not err.retryable
    assert KEY not in str(err) and "secretsecret" not in err.message
    assert "secret key" in err.message


@pytest.mark.parametrize("exc", [
    stripe.RateLimitError("Too many requests", http_status=429, headers=HEADERS),
    stripe.RateLimitError("Busy", http_status=429, json_body=body("lock_timeout")),
    stripe.APIConnectionError("Connection refused", should_retry=True),
    stripe.APIError("Internal error", http_status=500, headers=HEADERS),
    stripe.APIError("Bad gateway", http_status=502),
    stripe.APIError("Conflict", http_status=409, json_body=body("idempotency_key_in_use")),
    invalid("lock_timeout"),
    invalid("rate_limit"),
])
def test_transient_failures_are_retryable(exc: stripe.StripeError) -> None:
    err = translate(exc)

    assert type(err) is PaymentProviderUnavailable and err.retryable
    assert "retry" in err.message


def test_the_code_is_read_from_the_body_when_the_class_drops_it() -> None:
    exc = stripe.RateLimitError("Busy", http_status=429, json_body=body("lock_timeout"))
    err = translate(exc)
    assert exc.code is None and isinstance(err, PaymentError) and err.code == "lock_timeout"


@pytest.mark.parametrize("param", [None, "payment_method", "customer", "id"])
def test_a_missing_method_or_customer_is_payment_method_not_found(param: str | None) -> None:
    err = translate(invalid("resource_missing", param=param, status=404))
    assert type(err) is PaymentMethodNotFound and not err.retryable


def test_a_bare_404_is_not_found_too() -> None:
    # localstripe answers 404 without a code.
    assert type(translate(invalid(None, status=404))) is PaymentMethodNotFound


def test_another_missing_resource_is_plain_not_found() -> None:
    err = translate(invalid("resource_missing", param="intent", status=404))
    assert type(err) is NotFound and "intent" in err.message


@pytest.mark.parametrize(("exc", "code"), [
    (invalid("parameter_invalid_integer", param="amount"), "parameter_invalid_integer"),
    (invalid("payment_intent_unexpected_state"), "payment_intent_unexpected_state"),
    (invalid(None), None),
    (stripe.IdempotencyError("Keys for idempotent requests can only be used with the same "
                             "parameters", http_status=400, headers=HEADERS), None),
    (stripe.APIError("Conflict", http_status=409, json_body=body("something_new")),
     "something_new"),
    (stripe.StripeError("a future error class"), None),
])
def test_anything_unrecognised_is_a_plain_payment_error(
    exc: stripe.StripeError, code: str | None
) -> None:
    err = translate(exc)

    assert type(err) is PaymentError and not err.retryable and err.code == code
    if exc.request_id:
        assert exc.request_id in err.message


def test_classification_never_reads_the_message() -> None:
    # A message that names another case changes nothing: only class and code count.
    exc = stripe.InvalidRequestError("Your card was declined. Rate limit. No such customer",
                                     None, "parameter_missing", http_status=400)
    assert type(translate(exc)) is PaymentError


def test_a_key_quoted_in_an_unrecognised_error_is_masked() -> None:
    exc = stripe.InvalidRequestError(f"odd request with {KEY}", None, "weird", http_status=400)
    assert KEY not in translate(exc).message


def test_translating_raises_the_translation_from_the_stripe_error() -> None:
    original = card_error("card_declined")
    with pytest.raises(CardDeclined) as caught, translating():
        raise original
    assert caught.value.__cause__ is original


def test_translating_lets_other_errors_through() -> None:
    with pytest.raises(KeyError), translating():
        raise KeyError("not Stripe's")


def test_every_translation_is_a_billing_error() -> None:
    for exc in (card_error("x"), invalid(None), stripe.APIError("x"), stripe.StripeError()):
        assert isinstance(translate(exc), BillingError)
