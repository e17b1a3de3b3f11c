"""Payments through every PaymentIntent state Stripe documents, sync and async, on SecantusDB.

localstripe never reaches `processing`, later 3-D Secure outcomes or failures at any call; the
fake gateway models them (billing/_async/fake_gateway.py). Each test asserts on money moved in
the gateway and on the documents, never on which calls were made.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId

from billing import (
    AmountBelowMinimum,
    Billing,
    CardDeclined,
    ConfigurationError,
    InvalidInput,
    InvoiceStatus,
    OrgNotFound,
    PaymentError,
    PaymentInProgress,
    PaymentMethodNotFound,
    PaymentProviderUnavailable,
    PaymentRequiresAction,
    PaymentStatus,
    WebhookOutcome,
    faults,
)
from billing.adapters.stripe_webhooks import sign
from billing.domain.payments import IntentStatus
from billing.faults import InjectedFault
from tests.support import figures
from tests.support.billing_data import OCT, dump, seed_conversations
from tests.support.drivers import LEASE, Driver
from tests.support.invariants import check_money

pytestmark = pytest.mark.integration


def open_invoice(d: Driver, *, token: str = "pm_card_visa", n: int = 4,
                 per_conversation: int = 50) -> tuple[Any, Any]:
    org = d("orgs.create", name="Acme", currency="usd", per_conversation=per_conversation,
            per_started_minute=10 if per_conversation else 0)
    seed_conversations(d.db, org.id, n)
    inv = d("invoices.create_for_period", org.id, *OCT)
    d("payment_methods.attach", org.id, token, request_id=f"r-{token}")
    return org, inv


def stored(d: Driver, inv: Any) -> dict[str, Any]:
    doc = d.db.invoices.find_one({"_id": ObjectId(inv.id)})
    assert doc is not None
    return doc


def attempts(d: Driver, inv: Any) -> list[dict[str, Any]]:
    return list(d.db.payments.find({"invoice_id": ObjectId(inv.id)}).sort("attempt", 1))


def assert_money(d: Driver, inv: Any) -> None:
    figures.add("money invariant checks", 1)
    check_money(stored(d, inv), d.fake.taken(inv.id))


def covered(*states: IntentStatus) -> None:
    figures.seen("stripe intent states reached", *(s.value for s in states))


def test_processing_blocks_a_second_charge_until_it_settles(d: Driver) -> None:
    org, inv = open_invoice(d, token="pm_bank_debit")
    with pytest.raises(PaymentInProgress) as first:
        d("invoices.pay", org.id, inv.id)
    assert first.value.payment_id == str(attempts(d, inv)[0]["_id"])
    for _ in range(3):  # however often it is retried, no second intent
        with pytest.raises(PaymentInProgress):
            d("invoices.pay", org.id, inv.id)
    assert len(d.fake.intents) == 1 and [a["status"] for a in attempts(d, inv)] == ["processing"]
    (intent_id,) = d.fake.intents
    d.fake.settle_processing(intent_id, succeeded=True)  # days later; the webhook is lost
    settled = d("invoices.settle_payment", org.id, inv.id)
    assert settled.status is PaymentStatus.SUCCEEDED
    assert stored(d, inv)["status"] == "paid" and d.fake.taken(inv.id) == inv.total
    assert_money(d, inv)
    covered(IntentStatus.PROCESSING, IntentStatus.SUCCEEDED)


def test_processing_that_fails_lets_the_next_pay_use_the_new_default(d: Driver) -> None:
    org, inv = open_invoice(d, token="pm_bank_debit")
    with pytest.raises(PaymentInProgress):
        d("invoices.pay", org.id, inv.id)
    (intent_id,) = d.fake.intents
    d.fake.settle_processing(intent_id, succeeded=False)
    card = d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-2",
             make_default=True)
    payment = d("invoices.pay", org.id, inv.id)  # settles the failed one, then charges anew
    assert payment.status is PaymentStatus.SUCCEEDED and payment.payment_method_id == card.id
    assert [a["status"] for a in attempts(d, inv)] == ["failed", "succeeded"]
    assert d.fake.taken(inv.id) == inv.total
    assert_money(d, inv)
    covered(IntentStatus.REQUIRES_PAYMENT_METHOD)


def test_three_d_secure_with_a_failing_cancel_never_charges_twice(d: Driver) -> None:
    org, inv = open_invoice(d, token="pm_card_threeDSecure2Required")
    with pytest.raises(PaymentRequiresAction):
        d("invoices.pay", org.id, inv.id)
    with pytest.raises(PaymentRequiresAction):  # a second pay is refused, not a new charge
        d("invoices.pay", org.id, inv.id)
    d.fake.fail_next("cancel_intent", PaymentProviderUnavailable("Stripe is down"))
    with pytest.raises(PaymentProviderUnavailable):
        d("invoices.cancel_payment", org.id, inv.id)
    with pytest.raises(PaymentRequiresAction):  # a failed cancel grants nothing
        d("invoices.pay", org.id, inv.id)
    (intent_id,) = d.fake.intents
    d.fake.complete_action(intent_id)  # the customer authenticates on the first intent
    assert d("invoices.settle_payment", org.id, inv.id).status is PaymentStatus.SUCCEEDED
    assert len(d.fake.intents) == 1 and d.fake.taken(inv.id) == inv.total
    assert stored(d, inv)["status"] == "paid"
    assert_money(d, inv)
    covered(IntentStatus.REQUIRES_ACTION, IntentStatus.SUCCEEDED)


def test_a_canceled_three_d_secure_attempt_frees_the_invoice(d: Driver) -> None:
    org, inv = open_invoice(d, token="pm_card_threeDSecure2Required")
    with pytest.raises(PaymentRequiresAction):
        d("invoices.pay", org.id, inv.id)
    canceled = d("invoices.cancel_payment", org.id, inv.id)
    assert canceled.status is PaymentStatus.CANCELED
    (first,) = d.fake.intents
    assert d.fake.intents[first].status is IntentStatus.CANCELED
    with pytest.raises(ValueError):  # the customer can no longer complete it
        d.fake.complete_action(first)
    d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-2", make_default=True)
    assert d("invoices.pay", org.id, inv.id).status is PaymentStatus.SUCCEEDED
    assert d.fake.taken(inv.id) == inv.total
    assert_money(d, inv)
    covered(IntentStatus.CANCELED)


def test_void_while_the_create_call_outlives_the_lease_never_charges(d: Driver) -> None:
    org, inv = open_invoice(d)
    # Inside the slow create call, the lease expires and an operator voids the invoice.
    d.during_do("create_intent", lambda: d.clock.advance(LEASE + 1))
    late = d.during("create_intent", "invoices.void", org.id, inv.id)
    with pytest.raises(PaymentInProgress):  # it finds its attempt abandoned: no confirm
        d("invoices.pay", org.id, inv.id)
    assert late and getattr(late[0], "status", None) is InvoiceStatus.VOID, late
    doc = stored(d, inv)
    assert doc["status"] == "void" and doc["amount_paid"] == 0
    assert d.fake.taken(inv.id) == 0 and d.fake.charges == []
    assert all(i.status is not IntentStatus.SUCCEEDED for i in d.fake.intents.values())
    assert [(a["status"], a["failure_code"]) for a in attempts(d, inv)] == [
        ("canceled", "abandoned")]
    assert_money(d, inv)


def test_a_refused_intent_frees_the_invoice_for_the_new_default(d: Driver) -> None:
    org, inv = open_invoice(d)
    # The default card was detached directly in Stripe: Stripe refuses to create the intent.
    d.fake.fail_next("create_intent", PaymentMethodNotFound("no such payment method"))
    with pytest.raises(PaymentMethodNotFound):
        d("invoices.pay", org.id, inv.id)
    doc = stored(d, inv)
    assert doc["payment_lease"] is None and doc["status"] == "open"
    assert [a["status"] for a in attempts(d, inv)] == ["failed"]
    card = d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-2",
             make_default=True)
    payment = d("invoices.pay", org.id, inv.id)  # at once: no lease to wait for
    assert payment.status is PaymentStatus.SUCCEEDED and payment.payment_method_id == card.id
    assert_money(d, inv)


def test_a_transient_create_failure_is_abandoned_by_the_next_pay(d: Driver) -> None:
    org, inv = open_invoice(d)
    d.fake.fail_next("create_intent", PaymentProviderUnavailable("timeout"), after=True)
    with pytest.raises(PaymentProviderUnavailable):
        d("invoices.pay", org.id, inv.id)
    assert stored(d, inv)["payment_lease"] is None
    payment = d("invoices.pay", org.id, inv.id)
    assert payment.status is PaymentStatus.SUCCEEDED
    assert [a["status"] for a in attempts(d, inv)] == ["canceled", "succeeded"]
    assert d.fake.taken(inv.id) == inv.total  # the lost intent was never confirmed
    lost = [i for i in d.fake.intents.values() if i.status is IntentStatus.REQUIRES_CONFIRMATION]
    assert len(lost) == 1  # created in Stripe, answer lost: never confirmed by anyone
    assert_money(d, inv)
    covered(IntentStatus.REQUIRES_CONFIRMATION)


def test_a_lost_confirm_answer_is_settled_not_charged_again(d: Driver) -> None:
    org, inv = open_invoice(d)
    d.fake.fail_next("confirm_intent", PaymentProviderUnavailable("timeout"), after=True)
    d.fake.fail_next("retrieve_intent", PaymentProviderUnavailable("timeout"))
    with pytest.raises(PaymentProviderUnavailable):
        d("invoices.pay", org.id, inv.id)
    assert [a["status"] for a in attempts(d, inv)] == ["confirming"]
    payment = d("invoices.pay", org.id, inv.id)  # Stripe had confirmed: recorded, not redone
    assert payment.status is PaymentStatus.SUCCEEDED and len(d.fake.intents) == 1
    assert d.fake.taken(inv.id) == inv.total
    assert_money(d, inv)


def test_total_zero_is_paid_without_stripe(d: Driver) -> None:
    org, inv = open_invoice(d, per_conversation=0)
    assert inv.total == 0
    payment = d("invoices.pay", org.id, inv.id)
    assert payment.status is PaymentStatus.SUCCEEDED and payment.amount == 0
    assert stored(d, inv)["status"] == "paid" and d.fake.intents == {}
    assert_money(d, inv)


def test_below_the_minimum_is_refused_before_stripe(d: Driver) -> None:
    org = d("orgs.create", name="Tiny", currency="usd", per_conversation=1, per_started_minute=0)
    seed_conversations(d.db, org.id, 3)
    inv = d("invoices.create_for_period", org.id, *OCT)
    d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-1")
    with pytest.raises(AmountBelowMinimum):
        d("invoices.pay", org.id, inv.id)
    assert attempts(d, inv) == [] and d.fake.intents == {}
    assert stored(d, inv)["status"] == "open"
    d("invoices.void", org.id, inv.id)  # the documented way out: write it off
    assert stored(d, inv)["status"] == "void"


def event(kind: str, obj: dict[str, Any]) -> tuple[bytes, str]:
    body = json.dumps({"id": f"evt_{ObjectId()}", "type": kind, "created": int(time.time()),
                       "livemode": False, "data": {"object": obj}}).encode()
    return body, sign(body, secret="whsec_test")


def test_webhooks_trust_our_records_not_metadata(d: Driver) -> None:
    org, a = open_invoice(d, token="pm_card_threeDSecure2Required")
    seed_conversations(d.db, org.id, 2, start=datetime(2026, 9, 1, tzinfo=UTC))
    b = d("invoices.create_for_period", org.id, datetime(2026, 9, 1, tzinfo=UTC), OCT[0])
    with pytest.raises(PaymentRequiresAction):
        d("invoices.pay", org.id, a.id)
    (intent_id,) = d.fake.intents
    payment = attempts(d, a)[0]
    # Signed and genuine, but its metadata names invoice b and its amount is 1 jpy.
    lying = {"id": intent_id, "object": "payment_intent", "status": "succeeded", "amount": 1,
             "currency": "jpy", "metadata": {"org_id": org.id, "invoice_id": b.id,
                                             "payment_id": str(payment["_id"])}}
    result = d("webhooks.handle", *event("payment_intent.succeeded", lying))
    assert result.outcome is WebhookOutcome.MISMATCH and result.http_status == 200
    assert stored(d, a)["status"] == "open" and stored(d, b)["status"] == "open"
    assert d.db.webhook_log.count_documents({"event_id": result.event_id}) == 1
    # The right amount, still naming b: a's payment (our record of the intent) is settled.
    d.fake.complete_action(intent_id)
    honest = {**lying, "amount": payment["amount"], "currency": "usd"}
    result = d("webhooks.handle", *event("payment_intent.succeeded", honest))
    assert result.outcome is WebhookOutcome.PROCESSED
    assert stored(d, a)["status"] == "paid" and stored(d, b)["status"] == "open"
    assert_money(d, a)
    # An intent that is not ours changes nothing.
    other = {**honest, "id": "pi_not_ours", "metadata": {"org_id": org.id, "invoice_id": b.id}}
    assert d("webhooks.handle", *event("payment_intent.succeeded", other)).outcome is \
        WebhookOutcome.IGNORED
    assert stored(d, b)["status"] == "open"


def test_a_payment_error_names_its_attempt(d: Driver) -> None:
    org, inv = open_invoice(d, token="pm_card_chargeCustomerFail")
    with pytest.raises(PaymentError) as caught:
        d("invoices.pay", org.id, inv.id)
    assert caught.value.code == "card_declined"
    assert stored(d, inv)["payment_lease"] is None
    assert_money(d, inv)


def test_reconciliation_settles_attempts_left_behind(d: Driver) -> None:
    org, inv = open_invoice(d)
    with faults.active({"payments.after_confirm": "raise"}), pytest.raises(InjectedFault):
        d("invoices.pay", org.id, inv.id)  # charged in Stripe, the process died, webhook lost
    other_org, other = open_invoice(d)
    with faults.active({"payments.after_claim": "raise"}), pytest.raises(InjectedFault):
        d("invoices.pay", other_org.id, other.id)  # died before any intent
    dry = d("reconciliation.run", checks=["payment"])
    assert dry.findings == []  # too recent: a live call may still be working on them
    d.clock.advance(16 * 60)
    dry = d("reconciliation.run", checks=["payment"])
    assert sorted(f.check.value for f in dry.findings) == ["payment", "payment"]
    report = d("reconciliation.run", apply=True, checks=["payment"])
    assert [f.result for f in report.findings] == ["repaired", "repaired"], report.as_json()
    assert stored(d, inv)["status"] == "paid" and d.fake.taken(inv.id) == inv.total
    assert [a["status"] for a in attempts(d, other)] == ["canceled"]
    assert stored(d, other)["payment_lease"] is None
    assert d("invoices.pay", other_org.id, other.id).status is PaymentStatus.SUCCEEDED
    assert_money(d, inv)
    assert_money(d, other)
    assert d("reconciliation.run", checks=["payment"]).clean


def test_reconciliation_reports_webhooks_that_disagreed(d: Driver) -> None:
    org, inv = open_invoice(d, token="pm_card_threeDSecure2Required")
    with pytest.raises(PaymentRequiresAction):
        d("invoices.pay", org.id, inv.id)
    (intent_id,) = d.fake.intents
    lying = {"id": intent_id, "object": "payment_intent", "status": "succeeded", "amount": 1,
             "currency": "usd", "metadata": {"org_id": org.id}}
    d("webhooks.handle", *event("payment_intent.succeeded", lying))
    report = d("reconciliation.run", apply=True, checks=["payment"])
    (finding,) = report.findings
    assert finding.result == "reported" and "amount 1" in finding.summary
    assert stored(d, inv)["status"] == "open"


def test_settling_closes_attempts_whose_call_is_gone(d: Driver) -> None:
    org, inv = open_invoice(d)
    d.fake.fail_next("confirm_intent", PaymentProviderUnavailable("timeout"))  # never arrived
    with pytest.raises(PaymentProviderUnavailable):
        d("invoices.pay", org.id, inv.id)
    assert [a["status"] for a in attempts(d, inv)] == ["confirming"]
    settled = d("invoices.settle_payment", org.id, inv.id)
    assert settled.status is PaymentStatus.CANCELED and stored(d, inv)["payment_lease"] is None
    (first,) = d.fake.intents
    assert d.fake.intents[first].status is IntentStatus.CANCELED  # a late confirm cannot land
    # An attempt whose call died after recording its intent, before confirming it.
    payment = d("invoices.pay", org.id, inv.id)
    assert payment.status is PaymentStatus.SUCCEEDED and d.fake.taken(inv.id) == inv.total
    org2, inv2 = open_invoice(d)
    with faults.active({"payments.after_claim": "raise"}), pytest.raises(InjectedFault):
        d("invoices.pay", org2.id, inv2.id)
    d.clock.advance(LEASE + 1)
    assert d("invoices.settle_payment", org2.id, inv2.id).status is PaymentStatus.CANCELED
    assert stored(d, inv2)["payment_lease"] is None  # settling never keeps the invoice
    assert d("invoices.pay", org2.id, inv2.id).status is PaymentStatus.SUCCEEDED
    assert_money(d, inv)
    assert_money(d, inv2)


def test_the_failure_that_uses_up_the_schedule_makes_the_invoice_uncollectible(d: Driver) -> None:
    org, inv = open_invoice(d, token="pm_card_chargeCustomerFail")
    d("orgs.set_collection_schedule", org.id, [0, 2])
    with pytest.raises(PaymentError):
        d("invoices.pay", org.id, inv.id)
    assert stored(d, inv)["status"] == "open"
    with pytest.raises(PaymentError):
        d("invoices.pay", org.id, inv.id)
    assert stored(d, inv)["status"] == "uncollectible"  # in the transaction of that failure
    d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-2", make_default=True)
    assert d("invoices.pay", org.id, inv.id).status is PaymentStatus.SUCCEEDED
    assert stored(d, inv)["status"] == "paid"
    assert_money(d, inv)


def test_schedules_are_checked(d: Driver) -> None:
    org = d("orgs.create", name="A", currency="usd", per_conversation=1, per_started_minute=1)
    before = dump(d.db)
    with pytest.raises(InvalidInput):
        d("orgs.set_collection_schedule", org.id, [3, 1])
    with pytest.raises(OrgNotFound):
        d("orgs.set_collection_schedule", str(ObjectId()), [0])
    assert dump(d.db) == before
    assert d("orgs.set_collection_schedule", org.id, None).collection_schedule is None
    with pytest.raises(ConfigurationError):
        Billing(d.sync_client, collection_schedule=[0, 0])


def _lose_the_decline_answer(d: Driver) -> None:
    """Stripe declines the confirm, but its answer never reaches us, nor does a retrieve: the
    attempt stays `confirming` until a webhook says how it ended."""
    original = d.fake.confirm_intent

    def lost(exc: CardDeclined) -> PaymentProviderUnavailable:
        return PaymentProviderUnavailable(f"timeout reading Stripe's answer ({exc.message})")

    if d.loop is None:
        def confirm(intent_id: str, *, idempotency_key: str) -> Any:
            try:
                return original(intent_id, idempotency_key=idempotency_key)
            except CardDeclined as exc:
                raise lost(exc) from exc
    else:
        async def confirm(intent_id: str, *, idempotency_key: str) -> Any:  # type: ignore[misc]
            try:
                return await original(intent_id, idempotency_key=idempotency_key)
            except CardDeclined as exc:
                raise lost(exc) from exc
    d.fake.confirm_intent = confirm
    d.fake.fail_next("retrieve_intent", PaymentProviderUnavailable("Stripe is down"))


def _failed_event(org: Any, payment: dict[str, Any], decline_code: str) -> tuple[bytes, str]:
    """payment_intent.payment_failed as Stripe sends it: `code` is card_declined for every
    issuer decline, the issuer's reason is `decline_code`."""
    return event("payment_intent.payment_failed", {
        "id": payment["intent_id"], "object": "payment_intent",
        "status": "requires_payment_method", "amount": payment["amount"],
        "currency": payment["currency"], "customer": payment["customer_id"],
        "metadata": {"org_id": org.id},
        "last_payment_error": {"type": "card_error", "code": "card_declined",
                               "decline_code": decline_code,
                               "message": "Your card has been declined."}})


@pytest.mark.parametrize("schedule", [[0], [0, 3]])
def test_a_lost_card_reported_by_a_webhook_uses_no_attempt(d: Driver, schedule: list[int]
                                                            ) -> None:
    org, inv = open_invoice(d, token="pm_card_lostCard")
    d("orgs.set_collection_schedule", org.id, schedule)
    _lose_the_decline_answer(d)
    with pytest.raises(PaymentProviderUnavailable):
        d("invoices.pay", org.id, inv.id)
    (first,) = attempts(d, inv)
    assert first["status"] == "confirming"
    assert d("webhooks.handle", *_failed_event(org, first, "lost_card")).outcome is \
        WebhookOutcome.PROCESSED
    (first,) = attempts(d, inv)
    # As when pay() sees the decline itself: no scheduled attempt used, the invoice stays
    # open and waits for a new default card.
    assert (first["status"], first["failure_code"]) == ("failed", "lost_card")
    assert stored(d, inv)["status"] == "open"
    assert [i.result.value for i in d("collections.run", org_id=org.id).items] == [
        "needs_method"]


def test_a_lost_card_read_from_stripe_uses_no_attempt(d: Driver) -> None:
    org, inv = open_invoice(d, token="pm_card_lostCard")
    d("orgs.set_collection_schedule", org.id, [0])
    _lose_the_decline_answer(d)
    with pytest.raises(PaymentProviderUnavailable):
        d("invoices.pay", org.id, inv.id)
    d("invoices.settle_payment", org.id, inv.id)  # reads the intent from Stripe
    (first,) = attempts(d, inv)
    assert (first["status"], first["failure_code"]) == ("failed", "lost_card")
    assert stored(d, inv)["status"] == "open"


def test_stripes_amount_too_small_leaves_the_invoice_open(d: Driver) -> None:
    """Stripe's minimum also applies in the account's settlement currency, so an amount above
    our table's minimum can still be refused: AmountBelowMinimum every time, and no scheduled
    attempt used up (the invoice is left for a person to void, never made uncollectible)."""
    org, inv = open_invoice(d)
    d("orgs.set_collection_schedule", org.id, [0])
    for _ in range(3):
        d.fake.fail_next("create_intent", PaymentError(
            "Amount must convert to at least 50 cents.", code="amount_too_small"))
        with pytest.raises(AmountBelowMinimum):
            d("invoices.pay", org.id, inv.id)
    assert [a["failure_code"] for a in attempts(d, inv)] == ["amount_too_small"] * 3
    assert d.fake.taken(inv.id) == 0
    assert stored(d, inv)["status"] == "open"


def test_a_stale_requires_action_never_moves_a_processing_attempt_back(d: Driver) -> None:
    org, inv = open_invoice(d, token="pm_bank_debit")
    with pytest.raises(PaymentInProgress):
        d("invoices.pay", org.id, inv.id)
    (first,) = attempts(d, inv)
    assert first["status"] == "processing"
    # Stripe does not deliver events in order: an earlier requires_action of this intent.
    stale = event("payment_intent.requires_action", {
        "id": first["intent_id"], "object": "payment_intent", "status": "requires_action",
        "amount": first["amount"], "currency": first["currency"],
        "customer": first["customer_id"], "metadata": {"org_id": org.id}})
    assert d("webhooks.handle", *stale).outcome is WebhookOutcome.PROCESSED
    (first,) = attempts(d, inv)
    assert first["status"] == "processing"
    assert d.db.billing_events.count_documents({"type": "payment.requires_action"}) == 0
    with pytest.raises(PaymentInProgress):  # not PaymentRequiresAction
        d("invoices.pay", org.id, inv.id)


def test_a_webhook_over_a_document_billing_cannot_read_is_delivered_again(d: Driver) -> None:
    """A bank debit settles while a line item of its invoice breaks the data contract: the
    event is ours and not applied, so Stripe is asked to deliver it again (503); once the
    document is fixed, the redelivery pays the invoice."""
    org, inv = open_invoice(d, token="pm_bank_debit")
    with pytest.raises(PaymentInProgress):
        d("invoices.pay", org.id, inv.id)
    (first,) = attempts(d, inv)
    d.fake.settle_processing(first["intent_id"], succeeded=True)
    item = d.db.line_items.find_one({"invoice_id": ObjectId(inv.id)})
    assert item is not None
    d.db.line_items.update_one({"_id": item["_id"]}, {"$unset": {"description": ""}})
    delivery = event("payment_intent.succeeded", {
        "id": first["intent_id"], "object": "payment_intent", "status": "succeeded",
        "amount": first["amount"], "currency": first["currency"],
        "customer": first["customer_id"], "metadata": {"org_id": org.id}})

    result = d("webhooks.handle", *delivery)

    assert (result.outcome, result.http_status) == (WebhookOutcome.RETRY, 503)
    assert "UnreadableDocument" in result.detail and stored(d, inv)["status"] == "open"
    d.db.line_items.update_one({"_id": item["_id"]},
                               {"$set": {"description": item["description"]}})
    assert d("webhooks.handle", *delivery).outcome is WebhookOutcome.PROCESSED
    assert stored(d, inv)["status"] == "paid"
