"""A failed attempt's PaymentIntent can still take money until it is canceled in Stripe.

A declined or unauthenticated intent returns to `requires_payment_method`, where Stripe lets it
be confirmed again (the customer brought back on-session with its client_secret and a new card:
Stripe's documented recovery). So no new intent, credit note or void may follow a failed attempt
until its intent is canceled, and a success that lands first settles the invoice instead. The
fake gateway's `confirm_on_session` is that customer; each test asserts on the money the gateway
took and on the documents, sync and async.
"""

from __future__ import annotations

from typing import Any

import pytest
from bson import ObjectId

from billing import (
    CardDeclined,
    PaymentError,
    PaymentInProgress,
    PaymentProviderUnavailable,
    PaymentRequiresAction,
    PaymentStatus,
    WebhookOutcome,
)
from billing.domain.payments import IntentStatus
from tests.integration.test_payment_states import attempts, event, open_invoice, stored
from tests.support.drivers import Driver
from tests.support.invariants import check_money

pytestmark = pytest.mark.integration


def failed_three_d_secure(d: Driver) -> tuple[Any, Any, dict[str, Any]]:
    """An attempt that awaited 3-D Secure, which the customer failed: Stripe's intent is back
    in `requires_payment_method`, and the `payment_failed` webhook recorded the attempt."""
    org, inv = open_invoice(d, token="pm_card_threeDSecure2Required")
    with pytest.raises(PaymentRequiresAction):
        d("invoices.pay", org.id, inv.id)
    (first,) = attempts(d, inv)
    intent = d.fake.complete_action(first["intent_id"], authenticated=False)
    obj = {"id": intent.id, "object": "payment_intent", "status": intent.status.value,
           "amount": first["amount"], "currency": first["currency"],
           "customer": first["customer_id"], "metadata": {"org_id": org.id},
           "last_payment_error": {"code": intent.failure_code, "message": "auth failed"}}
    assert d("webhooks.handle", *event("payment_intent.payment_failed", obj)).outcome is \
        WebhookOutcome.PROCESSED
    (first,) = attempts(d, inv)
    assert first["status"] == "failed" and not first.get("intent_canceled")
    return org, inv, first


def reconfirm_refused(d: Driver, intent_id: str) -> None:
    """The customer tries the old intent again: Stripe refuses it, it was canceled."""
    assert d.fake.intents[intent_id].status is IntentStatus.CANCELED
    with pytest.raises(PaymentError):
        d.fake.confirm_on_session(intent_id)


def test_a_new_card_after_failed_authentication_cancels_the_old_intent_first(d: Driver) -> None:
    org, inv, first = failed_three_d_secure(d)
    d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-visa", make_default=True)

    paid = d("invoices.pay", org.id, inv.id)

    assert paid.status is PaymentStatus.SUCCEEDED and paid.attempt == 2
    reconfirm_refused(d, first["intent_id"])
    one, two = attempts(d, inv)
    assert (one["status"], one["intent_canceled"], two["status"]) == ("failed", True, "succeeded")
    assert d.fake.taken(inv.id) == inv.total
    check_money(stored(d, inv), d.fake.taken(inv.id))


def test_a_failed_intent_confirmed_again_before_the_next_pay_settles_the_invoice(
        d: Driver) -> None:
    org, inv, first = failed_three_d_secure(d)
    d.fake.confirm_on_session(first["intent_id"])  # the customer, with a new card, on-session
    d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-visa", make_default=True)

    paid = d("invoices.pay", org.id, inv.id)

    assert (paid.id, paid.status) == (str(first["_id"]), PaymentStatus.SUCCEEDED)
    assert len(attempts(d, inv)) == 1 and len(d.fake.intents) == 1  # no second intent
    assert stored(d, inv)["status"] == "paid" and d.fake.taken(inv.id) == inv.total
    check_money(stored(d, inv), d.fake.taken(inv.id))


def test_a_decline_cancels_its_intent_at_once(d: Driver) -> None:
    org, inv = open_invoice(d, token="pm_card_chargeCustomerFail")
    with pytest.raises(CardDeclined):
        d("invoices.pay", org.id, inv.id)
    (first,) = attempts(d, inv)
    assert (first["status"], first["intent_canceled"]) == ("failed", True)
    reconfirm_refused(d, first["intent_id"])
    # Nothing left that can take money: a credit note and a void need no Stripe call first.
    d("credit_notes.create", org.id, inv.id, amount=100, reason="order_change",
      request_id="cn-1")
    d("invoices.void", org.id, inv.id)
    assert d.fake.taken(inv.id) == 0 and stored(d, inv)["status"] == "void"


def test_a_decline_whose_cancel_fails_blocks_the_next_charge_until_canceled(d: Driver) -> None:
    org, inv = open_invoice(d, token="pm_card_chargeCustomerFail")
    d.fake.fail_next("cancel_intent", PaymentProviderUnavailable("Stripe is down"))
    with pytest.raises(CardDeclined):
        d("invoices.pay", org.id, inv.id)
    (first,) = attempts(d, inv)
    assert first["status"] == "failed" and not first.get("intent_canceled")
    d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-visa", make_default=True)
    d.fake.fail_next("cancel_intent", PaymentProviderUnavailable("Stripe is down"))
    with pytest.raises(PaymentProviderUnavailable):  # the old intent could not be canceled
        d("invoices.pay", org.id, inv.id)
    assert len(d.fake.intents) == 1  # so no second one

    assert d("invoices.pay", org.id, inv.id).attempt == 2
    reconfirm_refused(d, first["intent_id"])
    assert d.fake.taken(inv.id) == inv.total
    check_money(stored(d, inv), d.fake.taken(inv.id))


def test_a_credit_note_waits_for_the_failed_intent_to_be_canceled(d: Driver) -> None:
    org, inv, first = failed_three_d_secure(d)
    with pytest.raises(PaymentInProgress) as refused:
        d("credit_notes.create", org.id, inv.id, amount=100, reason="order_change",
          request_id="cn-1")
    assert refused.value.payment_id == str(first["_id"])
    assert "cancel_payment" in refused.value.message
    assert d.db.credit_notes.count_documents({}) == 0

    canceled = d("invoices.cancel_payment", org.id, inv.id)
    assert (canceled.status, canceled.intent_canceled) == (PaymentStatus.FAILED, True)
    d("credit_notes.create", org.id, inv.id, amount=100, reason="order_change",
      request_id="cn-1")
    reconfirm_refused(d, first["intent_id"])
    assert d("invoices.get", org.id, inv.id).amount_due == inv.total - 100
    assert d.fake.taken(inv.id) == 0


def test_a_void_cancels_the_failed_intent(d: Driver) -> None:
    org, inv, first = failed_three_d_secure(d)

    d("invoices.void", org.id, inv.id)

    reconfirm_refused(d, first["intent_id"])
    assert stored(d, inv)["status"] == "void" and d.fake.taken(inv.id) == 0


def test_a_failed_intent_confirmed_again_after_a_void_is_found(d: Driver) -> None:
    """The customer wins the race: the old intent succeeds before the void cancels it. The
    void refuses (the invoice is paid), and the money is on the invoice."""
    org, inv, first = failed_three_d_secure(d)
    d.fake.confirm_on_session(first["intent_id"])

    with pytest.raises(Exception) as refused:
        d("invoices.void", org.id, inv.id)

    assert "paid" in str(refused.value)
    assert stored(d, inv)["status"] == "paid" and d.fake.taken(inv.id) == inv.total
    check_money(stored(d, inv), d.fake.taken(inv.id))


def test_a_canceled_webhook_racing_the_decline_keeps_the_decline(d: Driver) -> None:
    """Stripe's `payment_intent.canceled` lands while `pay()` cancels the declined intent: the
    attempt stays the decline it was (`lost_card` decides dunning: it waits for a new card),
    not a cancel, which would make the invoice due again on the same lost card."""
    org, inv = open_invoice(d, token="pm_card_lostCard")

    def canceled() -> tuple[bytes, str]:
        (first,) = attempts(d, inv)
        intent = d.fake.intents[first["intent_id"]]
        return event("payment_intent.canceled", {
            "id": intent.id, "object": "payment_intent", "status": intent.status.value,
            "amount": first["amount"], "currency": first["currency"],
            "customer": first["customer_id"], "metadata": {"org_id": org.id}})

    delivered = d.during_with("cancel_intent", "webhooks.handle", canceled)
    with pytest.raises(CardDeclined):
        d("invoices.pay", org.id, inv.id)

    assert delivered and delivered[0].outcome is WebhookOutcome.PROCESSED
    (first,) = attempts(d, inv)
    assert (first["status"], first["failure_code"], first["intent_canceled"]) == (
        "failed", "lost_card", True)
    assert [i.result.value for i in d("collections.run", org_id=org.id).items] == [
        "needs_method"]


def test_reconciliation_cancels_intents_of_failed_attempts(d: Driver) -> None:
    org, inv, first = failed_three_d_secure(d)
    d.clock.advance(16 * 60)

    dry = d("reconciliation.run", checks=["payment"])
    assert [(f.check.value, f.ids) for f in dry.findings] == [("payment", [str(first["_id"])])]
    assert "could be confirmed again" in dry.findings[0].summary
    report = d("reconciliation.run", apply=True, checks=["payment"])

    assert [f.result for f in report.findings] == ["repaired"], report.as_json()
    reconfirm_refused(d, first["intent_id"])
    doc = d.db.payments.find_one({"_id": ObjectId(first["_id"])})
    assert doc is not None and (doc["status"], doc["intent_canceled"]) == ("failed", True)
    assert d("reconciliation.run", checks=["payment"]).clean
