"""The payment gateway contract, on localstripe and on the in-memory fake, sync and async.

Every contract test runs on four gateways, so the fake the unit tests use cannot drift from
what localstripe (and so Stripe's test cards) does. Sync gateways are called directly inside
these async tests: `call` awaits only what needs awaiting. Where Stripe answers differently
from localstripe (error codes, off_session), the gateway meets canned Stripe answers through a
swappable HTTP client, not patching.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import socket
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import pytest
import requests
import stripe

from billing._async.fake_gateway import AsyncFakeGateway
from billing._async.stripe_gateway import AsyncStripeGateway
from billing._sync.fake_gateway import FakeGateway
from billing._sync.stripe_gateway import StripeGateway
from billing.domain.models import RefundStatus
from billing.domain.payments import IntentStatus
from billing.errors import (
    CardDeclined,
    ConfigurationError,
    PaymentError,
    PaymentMethodNotFound,
    PaymentProviderUnavailable,
    PaymentRequiresAction,
)
from tests.support.stripe import CHARGE_DECLINE, DECLINE, THREE_D_SECURE, card, card_async

pytestmark = pytest.mark.integration
T = TypeVar("T")
SEPA_DEBIT: Any = {"type": "sepa_debit", "sepa_debit": {"iban": "DE89370400440532013000"}}


async def call(value: Awaitable[T] | T) -> T:
    """The result of a gateway call, sync or async."""
    if inspect.isawaitable(value):
        return await value
    return value


@dataclass
class Backend:
    gateway: Any
    new_card: Callable[[str], Awaitable[str]]  # an unattached card payment method's id
    charged: Callable[[str], Awaitable[list[int]]]  # amounts actually charged to a customer
    bank_debit: Callable[[], Awaitable[str]]  # a new unattached bank-debit method (not a card)


def localstripe_backend(gateway: Any, client: stripe.StripeClient) -> Backend:
    async def new_card(number: str) -> str:
        return card(client, number)

    async def charged(customer_id: str) -> list[int]:
        page = client.v1.charges.list(params={"customer": customer_id})
        return [c.amount for c in page.data if c.status == "succeeded"]

    async def bank_debit() -> str:
        return client.v1.payment_methods.create(params=SEPA_DEBIT).id

    return Backend(gateway, new_card, charged, bank_debit)


def async_localstripe_backend(gateway: Any, client: stripe.StripeClient) -> Backend:
    async def new_card(number: str) -> str:
        return await card_async(client, number)

    async def charged(customer_id: str) -> list[int]:
        page = await client.v1.charges.list_async(params={"customer": customer_id})
        return [c.amount for c in page.data if c.status == "succeeded"]

    async def bank_debit() -> str:
        return (await client.v1.payment_methods.create_async(params=SEPA_DEBIT)).id

    return Backend(gateway, new_card, charged, bank_debit)


def fake_backend(fake: FakeGateway | AsyncFakeGateway) -> Backend:
    async def new_card(number: str) -> str:
        return fake.create_card(number)

    async def charged(customer_id: str) -> list[int]:
        return [amount for _, amount, _ in fake.charges]  # one customer per test

    async def bank_debit() -> str:
        return "pm_bank_debit"  # the fake's bank-debit token: attaches as a new pm_ id

    return Backend(fake, new_card, charged, bank_debit)


@pytest.fixture(params=["localstripe", "localstripe-async", "fake", "fake-async"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "localstripe":
        return localstripe_backend(request.getfixturevalue("stripe_gateway"),
                                   request.getfixturevalue("stripe_client"))
    if request.param == "localstripe-async":
        return async_localstripe_backend(request.getfixturevalue("async_stripe_gateway"),
                                         request.getfixturevalue("async_stripe_client"))
    return fake_backend(FakeGateway() if request.param == "fake" else AsyncFakeGateway())


async def customer(b: Backend) -> str:
    return await call(b.gateway.create_customer(org_id="org-1", name="Acme",
                                                idempotency_key="cus:org-1"))


async def intent_for(b: Backend, customer_id: str, method_id: str, amount: int = 1234) -> Any:
    return await call(b.gateway.create_intent(
        customer_id=customer_id, payment_method_id=method_id, amount=amount, currency="usd",
        metadata={"invoice_id": "inv-1"}, idempotency_key=f"pi:{method_id}"))


async def attach(b: Backend, method: str, customer_id: str) -> Any:
    return await call(b.gateway.attach(payment_method=method, customer_id=customer_id,
                                       idempotency_key=f"attach:{method}"))


# --- the contract ------------------------------------------------------------------------------

async def test_create_customer_returns_a_customer_id(backend: Backend) -> None:
    assert (await customer(backend)).startswith("cus_")


async def test_customers_are_found_by_our_metadata_and_deleted(
    backend: Backend,
) -> None:
    mine = await call(backend.gateway.create_customer(
        org_id="org-7", name="Acme", idempotency_key="cus:org-7:3", generation=3))
    await call(backend.gateway.create_customer(org_id="org-8", name="Other",
                                               idempotency_key="cus:org-8:0"))
    found = await call(backend.gateway.find_customers(org_id="org-7", created_since=0))
    assert [(c.id, c.org_id, c.generation) for c in found] == [(mine, "org-7", 3)]
    assert found[0].created > 1_700_000_000

    await call(backend.gateway.delete_customer(mine, idempotency_key="del:1"))
    await call(backend.gateway.delete_customer(mine, idempotency_key="del:2"))  # gone: no error
    assert await call(backend.gateway.find_customers(org_id="org-7", created_since=0)) == []
    with pytest.raises(PaymentMethodNotFound):
        await call(backend.gateway.list_payment_methods(mine))


async def test_an_attached_token_becomes_a_new_method_listed_for_the_customer(
    backend: Backend,
) -> None:
    cus = await customer(backend)
    method = await attach(backend, "pm_card_visa", cus)

    assert method.id.startswith("pm_") and method.id != "pm_card_visa"
    assert (method.customer_id, method.brand, method.last4) == (cus, "visa", "4242")
    assert isinstance(method.exp_month, int) and isinstance(method.exp_year, int)
    assert await call(backend.gateway.list_payment_methods(cus)) == [method]
    assert await call(backend.gateway.retrieve_payment_method(method.id)) == method
    second = await attach(backend, "pm_card_visa", cus)
    listed = await call(backend.gateway.list_payment_methods(cus))
    assert second.id != method.id and {m.id for m in listed} == {method.id, second.id}


async def test_a_customers_bank_debit_methods_are_listed_with_its_cards(
    backend: Backend,
) -> None:
    """Every type is listed: reconciliation takes a method missing from the list for one that
    Stripe detached."""
    cus = await customer(backend)
    card_method = await attach(backend, "pm_card_visa", cus)
    debit = await attach(backend, await backend.bank_debit(), cus)

    listed = await call(backend.gateway.list_payment_methods(cus))
    assert debit.customer_id == cus
    assert sorted(m.id for m in listed) == sorted([card_method.id, debit.id])


async def test_detach_empties_the_list_and_detaching_again_or_a_gone_method_is_fine(
    backend: Backend,
) -> None:
    cus = await customer(backend)
    method = await attach(backend, "pm_card_visa", cus)

    await call(backend.gateway.detach(method.id, idempotency_key="detach-1"))
    assert await call(backend.gateway.list_payment_methods(cus)) == []
    assert (await call(backend.gateway.retrieve_payment_method(method.id))).customer_id is None
    await call(backend.gateway.detach(method.id, idempotency_key="detach-1"))
    await call(backend.gateway.detach("pm_nosuchmethod", idempotency_key="detach-2"))


async def test_confirm_charges_the_amount_once_however_often_it_is_repeated(
    backend: Backend,
) -> None:
    cus = await customer(backend)
    method = await attach(backend, "pm_card_visa", cus)
    created = await intent_for(backend, cus, method.id)
    assert (created.status, created.amount, created.currency) == (
        IntentStatus.REQUIRES_CONFIRMATION, 1234, "usd")
    assert await backend.charged(cus) == []

    confirmed = await call(backend.gateway.confirm_intent(created.id, idempotency_key="c-1"))
    again = await call(backend.gateway.confirm_intent(created.id, idempotency_key="c-1"))

    assert (confirmed.id, confirmed.status, confirmed.amount) == (
        created.id, IntentStatus.SUCCEEDED, 1234)
    assert again == confirmed and confirmed.failure_code is None
    assert await call(backend.gateway.retrieve_intent(created.id)) == confirmed
    assert await backend.charged(cus) == [1234]


async def test_a_refund_of_a_charge_is_listed_by_its_intent_with_our_metadata(
    backend: Backend,
) -> None:
    cus = await customer(backend)
    method = await attach(backend, "pm_card_visa", cus)
    created = await intent_for(backend, cus, method.id)
    await call(backend.gateway.confirm_intent(created.id, idempotency_key="c-1"))
    assert await call(backend.gateway.list_refunds(created.id)) == []

    refund = await call(backend.gateway.refund(
        intent_id=created.id, amount=234, metadata={"credit_note_id": "cn-1"},
        idempotency_key="refund:org-1:cn-1"))

    assert refund.id.startswith("re_") and refund.status is RefundStatus.SUCCEEDED
    assert (refund.amount, refund.currency, refund.intent_id) == (234, "usd", created.id)
    assert refund.metadata == {"credit_note_id": "cn-1"}
    assert await call(backend.gateway.retrieve_refund(refund.id)) == refund
    assert await call(backend.gateway.list_refunds(created.id)) == [refund]


async def test_an_unconfirmed_intent_cannot_be_refunded(backend: Backend) -> None:
    cus = await customer(backend)
    method = await attach(backend, "pm_card_chargeCustomerFail", cus)
    created = await intent_for(backend, cus, method.id)
    with pytest.raises(CardDeclined):
        await call(backend.gateway.confirm_intent(created.id, idempotency_key="c-1"))
    with pytest.raises(PaymentError):
        await call(backend.gateway.refund(intent_id=created.id, amount=100, metadata={},
                                          idempotency_key="refund:x"))


@pytest.mark.parametrize("method", ["pm_card_visa_chargeDeclined", "card 4000000000000002"])
async def test_a_declining_card_is_refused_when_attached(backend: Backend, method: str) -> None:
    cus = await customer(backend)
    if method.startswith("card "):
        method = await backend.new_card(DECLINE)

    with pytest.raises(CardDeclined) as caught:
        await attach(backend, method, cus)

    assert caught.value.code == "card_declined" and not caught.value.retryable
    assert await call(backend.gateway.list_payment_methods(cus)) == []


async def test_a_charge_declined_at_confirm_raises_card_declined_and_moves_no_money(
    backend: Backend,
) -> None:
    cus = await customer(backend)
    method = await attach(backend, await backend.new_card(CHARGE_DECLINE), cus)
    intent = await intent_for(backend, cus, method.id)

    with pytest.raises(CardDeclined) as caught:
        await call(backend.gateway.confirm_intent(intent.id, idempotency_key="c-1"))

    assert caught.value.code == "card_declined"
    failed = await call(backend.gateway.retrieve_intent(intent.id))
    assert (failed.status, failed.failure_code) == (
        IntentStatus.REQUIRES_PAYMENT_METHOD, "card_declined")
    assert failed.failure_message
    with pytest.raises(PaymentError) as again:  # not a second decline: nothing was attempted
        await call(backend.gateway.confirm_intent(intent.id, idempotency_key="c-1"))
    assert type(again.value) is PaymentError and not again.value.retryable
    assert await backend.charged(cus) == []


async def test_three_d_secure_leaves_the_intent_requiring_action(backend: Backend) -> None:
    cus = await customer(backend)
    method = await attach(backend, await backend.new_card(THREE_D_SECURE), cus)
    intent = await intent_for(backend, cus, method.id)

    confirmed = await call(backend.gateway.confirm_intent(intent.id, idempotency_key="c-1"))
    again = await call(backend.gateway.confirm_intent(intent.id, idempotency_key="c-1"))

    assert confirmed.status is IntentStatus.REQUIRES_ACTION and again == confirmed
    assert await backend.charged(cus) == []
    canceled = await call(backend.gateway.cancel_intent(intent.id, idempotency_key="x-1"))
    assert canceled.status is IntentStatus.CANCELED
    assert await call(backend.gateway.cancel_intent(intent.id, idempotency_key="x-1")) == canceled


async def test_a_canceled_intent_cannot_be_confirmed(backend: Backend) -> None:
    cus = await customer(backend)
    method = await attach(backend, "pm_card_visa", cus)
    intent = await intent_for(backend, cus, method.id)
    await call(backend.gateway.cancel_intent(intent.id, idempotency_key="x-1"))

    with pytest.raises(PaymentError) as caught:
        await call(backend.gateway.confirm_intent(intent.id, idempotency_key="c-1"))

    assert type(caught.value) is PaymentError and not caught.value.retryable
    assert await backend.charged(cus) == []


async def test_unknown_payment_methods_and_customers_are_not_found(backend: Backend) -> None:
    cus = await customer(backend)
    gateway = backend.gateway

    with pytest.raises(PaymentMethodNotFound):
        await attach(backend, "pm_nosuchmethod", cus)
    with pytest.raises(PaymentMethodNotFound):
        await attach(backend, "pm_card_visa", "cus_nosuchcustomer")
    with pytest.raises(PaymentMethodNotFound):
        await call(gateway.retrieve_payment_method("pm_nosuchmethod"))
    with pytest.raises(PaymentMethodNotFound):
        await call(gateway.list_payment_methods("cus_nosuchcustomer"))
    with pytest.raises(PaymentMethodNotFound):
        await intent_for(backend, cus, "pm_nosuchmethod")


# --- Stripe only: what the fake cannot show ----------------------------------------------------

@contextlib.contextmanager
def sync_gateway(url: str, key: str) -> Iterator[StripeGateway]:
    session = requests.Session()
    http_client = stripe.RequestsClient(session=session, timeout=5)
    try:
        yield StripeGateway(stripe.StripeClient(key, base_addresses={"api": url},
                                                http_client=http_client))
    finally:
        session.close()


@contextlib.asynccontextmanager
async def async_gateway(url: str, key: str) -> AsyncIterator[AsyncStripeGateway]:
    http_client = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=5))
    try:
        yield AsyncStripeGateway(stripe.StripeClient(key, base_addresses={"api": url},
                                                     http_client=http_client))
    finally:
        await http_client.close_async()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


BAD_KEY = "pk_test_not_a_secret_key"


def test_a_rejected_key_is_a_configuration_error_that_does_not_quote_it(stripe_url: str) -> None:
    with sync_gateway(stripe_url, BAD_KEY) as gateway, \
            pytest.raises(ConfigurationError) as caught:
        gateway.create_customer(org_id="o", name="n", idempotency_key="k")

    assert BAD_KEY not in caught.value.message and "not_a_secret" not in str(caught.value)


async def test_a_rejected_key_is_a_configuration_error_async(stripe_url: str) -> None:
    async with async_gateway(stripe_url, BAD_KEY) as gateway:
        with pytest.raises(ConfigurationError) as caught:
            await gateway.list_payment_methods("cus_x")

    assert "not_a_secret" not in str(caught.value)


def test_an_unreachable_stripe_is_retryable() -> None:
    with sync_gateway(closed_port_url(), "sk_test_x") as gateway, \
            pytest.raises(PaymentProviderUnavailable) as caught:
        gateway.retrieve_intent("pi_x")

    assert caught.value.retryable and isinstance(caught.value.__cause__, stripe.StripeError)


async def test_an_unreachable_stripe_is_retryable_async() -> None:
    async with async_gateway(closed_port_url(), "sk_test_x") as gateway:
        with pytest.raises(PaymentProviderUnavailable) as caught:
            await gateway.confirm_intent("pi_x", idempotency_key="k")

    assert caught.value.retryable


# --- the fake only: failure injection and its ledger ------------------------------------------

@pytest.mark.parametrize("make", [FakeGateway, AsyncFakeGateway])
async def test_fail_next_fails_exactly_the_next_calls_and_changes_nothing(make: Any) -> None:
    fake = make()
    cus = await call(fake.create_customer(org_id="o", name="n", idempotency_key="k-1"))
    down = PaymentProviderUnavailable("Stripe is down: retry")
    fake.fail_next("attach", down, times=2)

    for _ in range(2):
        with pytest.raises(PaymentProviderUnavailable) as caught:
            await call(fake.attach(payment_method="pm_card_visa", customer_id=cus,
                                   idempotency_key="a-1"))
        assert caught.value is down
    assert await call(fake.list_payment_methods(cus)) == []
    method = await call(fake.attach(payment_method="pm_card_visa", customer_id=cus,
                                    idempotency_key="a-1"))

    assert await call(fake.list_payment_methods(cus)) == [method]
    assert [c for c in fake.calls if c[0] == "attach"] == [("attach", "a-1")] * 3
    with pytest.raises(ValueError, match="no gateway method"):
        fake.fail_next("atach", down)


async def test_the_fake_ledger_records_money_moved_with_deterministic_ids() -> None:
    fake = AsyncFakeGateway()
    cus = await fake.create_customer(org_id="o", name="n", idempotency_key="k")
    method = await fake.attach(payment_method="pm_card_visa", customer_id=cus,
                               idempotency_key="a")
    intent = await fake.create_intent(customer_id=cus, payment_method_id=method.id, amount=500,
                                      currency="eur", metadata={}, idempotency_key="i")
    fake.fail_next("confirm_intent", PaymentProviderUnavailable("timeout: retry"))
    with pytest.raises(PaymentProviderUnavailable):
        await fake.confirm_intent(intent.id, idempotency_key="c")
    await fake.confirm_intent(intent.id, idempotency_key="c")
    await fake.confirm_intent(intent.id, idempotency_key="c")

    assert (cus, method.id, intent.id) == ("cus_000001", "pm_000002", "pi_000003")
    assert fake.charges == [("pi_000003", 500, "eur")]


async def test_a_failure_after_the_effect_is_a_lost_answer_and_a_retry_charges_nothing() -> None:
    fake = FakeGateway()
    cus = fake.create_customer(org_id="o", name="n", idempotency_key="k")
    method = fake.attach(payment_method="pm_card_visa", customer_id=cus, idempotency_key="a")
    intent = fake.create_intent(customer_id=cus, payment_method_id=method.id, amount=700,
                                currency="usd", metadata={}, idempotency_key="i")
    fake.fail_next("confirm_intent", PaymentProviderUnavailable("read timeout: retry"),
                   after=True)

    with pytest.raises(PaymentProviderUnavailable):
        fake.confirm_intent(intent.id, idempotency_key="c")
    assert fake.retrieve_intent(intent.id).status is IntentStatus.SUCCEEDED
    assert fake.confirm_intent(intent.id, idempotency_key="c").status is IntentStatus.SUCCEEDED
    assert fake.charges == [(intent.id, 700, "usd")]


# --- Stripe's own answers, where localstripe differs: a canned transport -----------------------

class CannedStripe(stripe.HTTPClient):
    """Answers requests in order with (status, JSON body) pairs and records them."""

    name = "canned"

    def __init__(self, *answers: tuple[int, dict[str, Any]]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.requests: list[tuple[str, str, dict[str, str], str]] = []

    def request(self, method: str, url: str, headers: Any, post_data: Any = None
                ) -> tuple[bytes, int, dict[str, str]]:
        self.requests.append((method, url, dict(headers or {}), post_data or ""))
        status, answer = self.answers.pop(0)
        return json.dumps(answer).encode(), status, {"request-id": "req_canned"}

    def close(self) -> None:
        pass


def canned(*answers: tuple[int, dict[str, Any]]) -> tuple[StripeGateway, CannedStripe]:
    http = CannedStripe(*answers)
    return StripeGateway(stripe.StripeClient("sk_test_x", http_client=http)), http


def pi(status: str, **fields: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"id": "pi_1", "object": "payment_intent", "status": status, "amount": 900,
                 "currency": "usd", "last_payment_error": None, **fields}


def pm(customer: str | None) -> tuple[int, dict[str, Any]]:
    return 200, {"id": "pm_1", "object": "payment_method", "customer": customer, "card": {
        "brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034}}


def refused(status: int, code: str, kind: str = "invalid_request_error"
            ) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"type": kind, "code": code, "message": "Stripe says no"}}


def test_confirm_is_off_session_and_carries_the_idempotency_key() -> None:
    gateway, http = canned(pi("succeeded"))

    assert gateway.confirm_intent("pi_1", idempotency_key="pay-1:confirm").amount == 900

    method, url, headers, body = http.requests[0]
    assert (method, url.endswith("/v1/payment_intents/pi_1/confirm")) == ("post", True)
    assert "off_session=true" in body and "payment_method" not in body
    assert headers["Idempotency-Key"] == "pay-1:confirm"


def test_confirming_a_succeeded_intent_returns_it() -> None:
    gateway, http = canned(refused(400, "payment_intent_unexpected_state"), pi("succeeded"))

    assert gateway.confirm_intent("pi_1", idempotency_key="k").status is IntentStatus.SUCCEEDED
    assert [r[0] for r in http.requests] == ["post", "get"]


def test_confirming_a_canceled_intent_stays_an_error() -> None:
    gateway, _ = canned(refused(400, "payment_intent_unexpected_state"), pi("canceled"))

    with pytest.raises(PaymentError) as caught:
        gateway.confirm_intent("pi_1", idempotency_key="k")
    assert caught.value.code == "payment_intent_unexpected_state"


def test_an_unreachable_stripe_while_checking_a_refused_confirm_is_retryable() -> None:
    gateway, _ = canned(refused(400, "payment_intent_unexpected_state"),
                        (500, {"error": {"type": "api_error", "message": "oops"}}))

    with pytest.raises(PaymentProviderUnavailable):
        gateway.confirm_intent("pi_1", idempotency_key="k")


def test_off_session_authentication_is_payment_requires_action() -> None:
    gateway, _ = canned(refused(402, "authentication_required", "card_error"))

    with pytest.raises(PaymentRequiresAction) as caught:
        gateway.confirm_intent("pi_1", idempotency_key="k")
    assert caught.value.code == "authentication_required"


def test_a_decline_with_a_decline_code_is_card_declined() -> None:
    declined = refused(402, "card_declined", "card_error")
    declined[1]["error"]["decline_code"] = "insufficient_funds"
    gateway, _ = canned(declined)

    with pytest.raises(CardDeclined, match="insufficient_funds"):
        gateway.confirm_intent("pi_1", idempotency_key="k")


def test_detaching_a_method_stripe_says_is_not_attached_is_fine() -> None:
    gateway, http = canned(refused(400, "payment_method_unexpected_state"), pm(None))

    gateway.detach("pm_1", idempotency_key="d")
    assert len(http.requests) == 2


def test_a_refused_detach_of_an_attached_method_is_an_error() -> None:
    gateway, _ = canned(refused(400, "payment_method_unexpected_state"), pm("cus_1"))

    with pytest.raises(PaymentError):
        gateway.detach("pm_1", idempotency_key="d")


def test_canceling_twice_returns_the_canceled_intent() -> None:
    gateway, _ = canned(refused(400, "payment_intent_unexpected_state"), pi("canceled"))
    assert gateway.cancel_intent("pi_1", idempotency_key="x").status is IntentStatus.CANCELED


def test_a_failed_intent_reports_stripes_failure() -> None:
    gateway, _ = canned(pi("requires_payment_method", last_payment_error={
        "code": "card_declined", "message": "Your card was declined."}))

    intent = gateway.retrieve_intent("pi_1")
    assert (intent.failure_code, intent.failure_message) == (
        "card_declined", "Your card was declined.")


def test_customers_are_listed_by_created_window_and_matched_on_our_metadata() -> None:
    def customer(cid: str, org: str, generation: str, created: int) -> dict[str, Any]:
        return {"id": cid, "object": "customer", "created": created,
                "metadata": {"org_id": org, "billing_generation": generation}}

    gateway, http = canned((200, {"object": "list", "url": "/v1/customers", "has_more": False,
                                  "data": [customer("cus_2", "org-1", "1", 1_800_000_100),
                                           customer("cus_1", "org-2", "0", 1_800_000_050)]}))

    found = gateway.find_customers(org_id="org-1", created_since=1_800_000_000,
                                   created_until=1_800_000_200)
    assert [(c.id, c.generation, c.created) for c in found] == [("cus_2", 1, 1_800_000_100)]
    method, url, _, _ = http.requests[0]
    assert method == "get" and "created[gte]=1800000000" in urllib.parse.unquote(url)
    assert "created[lte]=1800000200" in urllib.parse.unquote(url)
