"""Payment methods and payments on SecantusDB and localstripe: consistent under failure."""

from __future__ import annotations

from typing import Any

import pytest
import stripe
from bson import ObjectId

from billing import (
    Billing,
    CardDeclined,
    InvoiceNotFound,
    InvoiceNotPayable,
    InvoiceStatus,
    NoDefaultPaymentMethod,
    PaymentError,
    PaymentInProgress,
    PaymentMethodNotFound,
    PaymentRequiresAction,
    faults,
)
from billing.domain.models import PaymentMethodStatus, PaymentStatus
from billing.faults import InjectedFault
from tests.support.billing_data import OCT, dump, seed_conversations
from tests.support.racing import in_threads

pytestmark = pytest.mark.integration
# localstripe, like Stripe: ...0002 is declined when attached, ...0341 when charged.
DECLINE, CHARGE_DECLINE, THREE_D_SECURE = "4000000000000002", "4000000000000341", "4000002500003155"


def card(stripe_client: stripe.StripeClient, number: str) -> str:
    pm = stripe_client.v1.payment_methods.create(params={
        "type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034,
                                 "cvc": "123"}})
    return str(pm.id)


@pytest.fixture
def pay_billing(client: Any, db_name: str, stripe_gateway: Any) -> Billing:
    b = Billing(client, database=db_name, gateway=stripe_gateway, webhook_secret="whsec_test",
                payment_lease_seconds=30)
    b.setup()
    return b


def open_invoice(b: Billing, n: int = 5) -> tuple[Any, Any]:
    org = b.orgs.create(name="Acme", currency="usd", per_conversation=50, per_started_minute=10)
    seed_conversations(b.database, org.id, n)
    return org, b.invoices.create_for_period(org.id, *OCT)


def charges(stripe_client: stripe.StripeClient, customer: str) -> list[Any]:
    return list(stripe_client.v1.charges.list(params={"customer": customer}).data)


def test_attach_makes_the_first_method_default_and_repeats_are_idempotent(
    pay_billing: Billing, stripe_gateway: Any
) -> None:
    org, _ = open_invoice(pay_billing)
    first = pay_billing.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")
    again = pay_billing.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")

    assert first.status is PaymentMethodStatus.ACTIVE and again == first
    stored = pay_billing.orgs.get(org.id)
    assert stored.default_payment_method_id == first.id and stored.stripe_customer_id
    in_stripe = stripe_gateway.list_payment_methods(stored.stripe_customer_id)
    assert [m.id for m in in_stripe] == [first.stripe_id]
    assert pay_billing.database.payment_methods.count_documents({}) == 1

    second = pay_billing.payment_methods.attach(org.id, "pm_card_visa", request_id="r-2")
    assert pay_billing.orgs.get(org.id).default_payment_method_id == first.id
    pay_billing.payment_methods.set_default(org.id, second.id)
    assert pay_billing.orgs.get(org.id).default_payment_method_id == second.id
    assert [m.id for m in pay_billing.payment_methods.list(org.id)] == [first.id, second.id]


def test_detach_clears_the_default_here_and_in_stripe(
    pay_billing: Billing, stripe_gateway: Any
) -> None:
    org, _ = open_invoice(pay_billing)
    method = pay_billing.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")

    detached = pay_billing.payment_methods.detach(org.id, method.id)

    assert detached.status is PaymentMethodStatus.DETACHED
    stored = pay_billing.orgs.get(org.id)
    assert stored.default_payment_method_id is None
    assert stripe_gateway.list_payment_methods(stored.stripe_customer_id) == []
    assert pay_billing.payment_methods.detach(org.id, method.id).status is \
        PaymentMethodStatus.DETACHED  # idempotent


def test_pay_charges_once_and_marks_the_invoice_paid(
    pay_billing: Billing, stripe_client: stripe.StripeClient
) -> None:
    org, inv = open_invoice(pay_billing)
    pay_billing.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")

    payment = pay_billing.invoices.pay(org.id, inv.id)

    assert payment.status is PaymentStatus.SUCCEEDED and payment.amount == inv.total
    paid = pay_billing.invoices.get(org.id, inv.id)
    assert paid.status is InvoiceStatus.PAID and paid.amount_paid == inv.total
    assert paid.payment_lease is None
    customer = pay_billing.orgs.get(org.id).stripe_customer_id
    assert [c.amount for c in charges(stripe_client, customer)] == [inv.total]
    with pytest.raises(InvoiceNotPayable):
        pay_billing.invoices.pay(org.id, inv.id)
    assert len(charges(stripe_client, customer)) == 1


def test_card_declined_at_attach_is_recorded_and_not_made_default(
    pay_billing: Billing, stripe_client: stripe.StripeClient, stripe_gateway: Any
) -> None:
    org, _ = open_invoice(pay_billing)
    with pytest.raises(CardDeclined) as caught:
        pay_billing.payment_methods.attach(org.id, card(stripe_client, DECLINE), request_id="r")

    assert caught.value.code == "card_declined"
    stored = pay_billing.orgs.get(org.id)
    assert stored.default_payment_method_id is None
    assert stripe_gateway.list_payment_methods(stored.stripe_customer_id) == []
    doc = pay_billing.database.payment_methods.find_one({"request_id": "r"})
    assert doc is not None and doc["status"] == "failed"


def test_declined_card_leaves_the_invoice_open_with_the_failure_recorded(
    pay_billing: Billing, stripe_client: stripe.StripeClient
) -> None:
    org, inv = open_invoice(pay_billing)
    pay_billing.payment_methods.attach(org.id, card(stripe_client, CHARGE_DECLINE),
                                       request_id="r-1")

    with pytest.raises(CardDeclined) as caught:
        pay_billing.invoices.pay(org.id, inv.id)

    assert caught.value.code == "card_declined"
    assert pay_billing.invoices.get(org.id, inv.id).status is InvoiceStatus.OPEN
    payment = pay_billing.database.payments.find_one({"invoice_id": ObjectId(inv.id)})
    assert payment is not None
    assert (payment["status"], payment["failure_code"]) == ("failed", "card_declined")
    customer = pay_billing.orgs.get(org.id).stripe_customer_id
    assert [c for c in charges(stripe_client, customer) if c.status == "succeeded"] == []


def test_three_d_secure_is_reported_not_paid(
    pay_billing: Billing, stripe_client: stripe.StripeClient
) -> None:
    org, inv = open_invoice(pay_billing)
    pay_billing.payment_methods.attach(org.id, card(stripe_client, THREE_D_SECURE),
                                       request_id="r-1")

    with pytest.raises(PaymentRequiresAction):
        pay_billing.invoices.pay(org.id, inv.id)

    assert pay_billing.invoices.get(org.id, inv.id).status is InvoiceStatus.OPEN
    payment = pay_billing.database.payments.find_one({"invoice_id": ObjectId(inv.id)})
    assert payment is not None and payment["status"] == "requires_action"


def test_concurrent_pay_charges_once(
    pay_billing: Billing, stripe_client: stripe.StripeClient
) -> None:
    org, inv = open_invoice(pay_billing)
    pay_billing.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")

    raced = in_threads([lambda: pay_billing.invoices.pay(org.id, inv.id).status] * 8,
                       timeout=120)

    assert raced.errors_except(PaymentInProgress, InvoiceNotPayable) == []
    outcomes = [*raced.results, *(type(e) for e in raced.errors)]
    assert outcomes.count(PaymentStatus.SUCCEEDED) == 1 and len(outcomes) == 8
    customer = pay_billing.orgs.get(org.id).stripe_customer_id
    assert [c.amount for c in charges(stripe_client, customer)] == [inv.total]
    assert pay_billing.invoices.get(org.id, inv.id).status is InvoiceStatus.PAID


def test_no_default_method_and_other_orgs_ids_change_nothing(pay_billing: Billing) -> None:
    org, inv = open_invoice(pay_billing)
    with pytest.raises(NoDefaultPaymentMethod):
        pay_billing.invoices.pay(org.id, inv.id)
    method = pay_billing.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")
    intruder = pay_billing.orgs.create(name="Evil", currency="usd", per_conversation=1,
                                       per_started_minute=1)
    before = dump(pay_billing.database)
    with pytest.raises(PaymentMethodNotFound):
        pay_billing.payment_methods.detach(intruder.id, method.id)
    with pytest.raises(PaymentMethodNotFound):
        pay_billing.payment_methods.set_default(intruder.id, method.id)
    with pytest.raises(InvoiceNotFound):
        pay_billing.invoices.pay(intruder.id, inv.id)
    assert dump(pay_billing.database) == before


def test_failure_between_stripe_attach_and_the_transaction_is_compensated(
    pay_billing: Billing, stripe_gateway: Any
) -> None:
    org, _ = open_invoice(pay_billing)
    with faults.active({"payment_methods.attach.after_stripe": "raise"}), \
            pytest.raises(InjectedFault):
        pay_billing.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")

    stored = pay_billing.orgs.get(org.id)
    assert stored.default_payment_method_id is None
    assert stripe_gateway.list_payment_methods(stored.stripe_customer_id) == []
    doc = pay_billing.database.payment_methods.find_one({"request_id": "r-1"})
    assert doc is not None and doc["status"] == "failed"
    with pytest.raises(PaymentError):  # that request is over; a new request id retries
        pay_billing.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")
    fresh = pay_billing.payment_methods.attach(org.id, "pm_card_visa", request_id="r-2")
    assert pay_billing.orgs.get(org.id).default_payment_method_id == fresh.id
