"""Adversarial scenarios against the payment guarantees (README "Payments (Stripe)",
"Guarantees", "Reconciliation"): interleavings reached with the fake gateway's `during`, late or
reordered webhooks and stale answers, sync and async, on each backend.

Each test states the guarantee it attacks. A failing test here is a defect in the library.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from bson import ObjectId

from billing import (
    BillingError,
    InvoiceStatus,
    PaymentInProgress,
    PaymentStatus,
    WebhookOutcome,
)
from billing.adapters.stripe_webhooks import sign
from billing.domain.payments import IntentStatus
from billing.faults import InjectedFault
from tests.support.billing_data import OCT, seed_conversations
from tests.support.drivers import LEASE, Driver
from tests.support.invariants import check_money
from tests.support.racing import in_threads

pytestmark = pytest.mark.integration
STALE = 16 * 60  # past reconciliation's default stale_after (15 min)


def open_invoice(d: Driver, *, token: str = "pm_card_visa", n: int = 4) -> tuple[Any, Any]:
    org = d("orgs.create", name="Acme", currency="usd", per_conversation=50,
            per_started_minute=10)
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


def statuses(d: Driver, inv: Any) -> list[str]:
    return [a["status"] for a in attempts(d, inv)]


def assert_money(d: Driver, inv: Any) -> None:
    check_money(stored(d, inv), d.fake.taken(inv.id))


def event(kind: str, obj: dict[str, Any]) -> tuple[bytes, str]:
    body = json.dumps({"id": f"evt_{ObjectId()}", "type": kind, "created": int(time.time()),
                       "livemode": False, "data": {"object": obj}}).encode()
    return body, sign(body, secret="whsec_test")


def intent_obj(d: Driver, org: Any, payment: dict[str, Any], status: str,
               **extra: Any) -> dict[str, Any]:
    return {"id": payment["intent_id"], "object": "payment_intent", "status": status,
            "amount": payment["amount"], "currency": payment["currency"],
            "customer": payment["customer_id"], "metadata": {"org_id": str(org.id)}, **extra}


# ---- stale answers and late events move a settled attempt backwards ---------------------------

def test_a_stale_confirm_answer_reopens_a_failed_attempt_of_a_void_invoice(d: Driver) -> None:
    """Guarantees: void never leaves a payment that can still take money (as recorded), and
    reconciliation's `payment` check settles attempts left unsettled.

    A bank debit is being confirmed; the call is slow. Meanwhile its lease passes, the bank
    refuses the debit, and an operator voids the invoice (the void settles the attempt `failed`
    from Stripe). Then the slow confirm call returns its (stale) `processing` answer and records
    it over `failed`: a void invoice now shows a payment `processing`, and since settle/cancel
    never look at a void invoice's attempt, nothing ever settles it again."""
    org, inv = open_invoice(d, token="pm_bank_debit")

    def bank_refuses() -> None:
        d.clock.advance(LEASE + 1)
        (intent_id,) = d.fake.intents
        d.fake.settle_processing(intent_id, succeeded=False)

    d.during_do("confirm_intent", bank_refuses)
    voided = d.during("confirm_intent", "invoices.void", org.id, inv.id)
    with pytest.raises(BillingError):
        d("invoices.pay", org.id, inv.id)
    assert voided and getattr(voided[0], "status", None) is InvoiceStatus.VOID, voided
    (intent_id,) = d.fake.intents
    # The void canceled the failed intent: confirmed again, it could still have taken money.
    assert d.fake.intents[intent_id].status is IntentStatus.CANCELED
    assert_money(d, inv)
    # Stripe says the debit failed; our record must not say it is still moving money.
    d("invoices.settle_payment", org.id, inv.id)
    d.clock.advance(STALE)
    d("reconciliation.run", apply=True, checks=["payment"])
    assert statuses(d, inv) == ["failed"], attempts(d, inv)


def test_a_stale_confirm_answer_leaves_a_superseded_attempt_unsettled_forever(d: Driver) -> None:
    """Guarantee: reconciliation's `payment` check settles attempts left unsettled.

    While a slow bank-debit confirm is in flight, its lease passes, the bank refuses, the
    customer sets a card as default and a second pay() settles attempt 1 `failed` and pays with
    attempt 2. The slow call then records its stale `processing` over attempt 1's `failed` (and
    tells its caller PaymentInProgress although the invoice is paid). Reconciliation finds
    attempt 1, "repairs" it by settling the invoice's *latest* attempt (2, succeeded), reports
    `repaired`, and attempt 1 stays `processing`: every later run finds it again."""
    org, inv = open_invoice(d, token="pm_bank_debit")

    def bank_refuses() -> None:
        d.clock.advance(LEASE + 1)
        (intent_id,) = d.fake.intents
        d.fake.settle_processing(intent_id, succeeded=False)

    d.during_do("confirm_intent", bank_refuses)
    d.during("confirm_intent", "payment_methods.attach", org.id, "pm_card_visa",
             request_id="r-card", make_default=True)
    second = d.during("confirm_intent", "invoices.pay", org.id, inv.id)
    with pytest.raises(BillingError):
        d("invoices.pay", org.id, inv.id)
    assert second and getattr(second[0], "status", None) is PaymentStatus.SUCCEEDED, second
    assert stored(d, inv)["status"] == "paid"
    assert_money(d, inv)
    d.clock.advance(STALE)
    report = d("reconciliation.run", apply=True, checks=["payment"])
    assert all(f.result == "repaired" for f in report.findings), report.as_json()
    # Claimed repaired: then nothing should be left for the next run.
    d.clock.advance(STALE)
    assert statuses(d, inv) == ["failed", "succeeded"], attempts(d, inv)
    assert d("reconciliation.run", checks=["payment"]).clean


def test_a_late_processing_webhook_reopens_a_failed_attempt(d: Driver) -> None:
    """Guarantees: a late or reordered report never moves a settled attempt backwards (the
    settle plan protects `succeeded` and `canceled` only), and reconciliation settles attempts
    left unsettled.

    Stripe delivers `payment_intent.payment_failed` before the older
    `payment_intent.processing` (events arrive out of order). The attempt, settled `failed`
    and superseded by a paid attempt 2, goes back to `processing` and no call ever settles it."""
    org, inv = open_invoice(d, token="pm_bank_debit")
    with pytest.raises(PaymentInProgress):
        d("invoices.pay", org.id, inv.id)
    (first,) = attempts(d, inv)
    d.fake.settle_processing(first["intent_id"], succeeded=False)
    failed = intent_obj(d, org, first, "requires_payment_method", last_payment_error={
        "code": "payment_failed", "message": "The payment failed."})
    assert d("webhooks.handle", *event("payment_intent.payment_failed", failed)).outcome is \
        WebhookOutcome.PROCESSED
    d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-card", make_default=True)
    assert d("invoices.pay", org.id, inv.id).status is PaymentStatus.SUCCEEDED
    late = intent_obj(d, org, first, "processing")  # sent before payment_failed, arrives after
    d("webhooks.handle", *event("payment_intent.processing", late))
    assert statuses(d, inv) == ["failed", "succeeded"], attempts(d, inv)


# ---- settle_payment / reconciliation on an attempt whose intent was never confirmed -----------

def _die_before_confirming(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies after recording the intent, before the transaction that starts the
    confirmation (between record_intent and start_confirm)."""
    import billing.plans.payments as plans

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise InjectedFault("died between record_intent and start_confirm")

    monkeypatch.setattr(plans, "start_confirm", crash)


def test_settle_payment_on_an_unconfirmed_intent_keeps_the_invoice_leased(
        d: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guarantees: settle_payment settles the latest attempt (or says why not) without taking
    the invoice away from its payer; an open invoice is never wedged while the org has a usable
    default.

    pay() dies after recording its intent (not confirmed: nothing can move unless someone
    confirms it). Long after, an operator (or reconciliation) calls settle_payment: it takes the
    invoice's lease, sees the intent `requires_confirmation` and returns the attempt still
    `pending`, without releasing the lease. For the next lease period the invoice can be neither
    paid nor voided; reconciliation does the same on every run."""
    org, inv = open_invoice(d)
    with monkeypatch.context() as m:
        _die_before_confirming(m)
        with pytest.raises(InjectedFault):
            d("invoices.pay", org.id, inv.id)
    assert statuses(d, inv) == ["pending"] and attempts(d, inv)[0]["intent_id"]
    d.clock.advance(STALE)  # the dead call's lease is long gone
    settled = d("invoices.settle_payment", org.id, inv.id)
    assert settled is not None
    # Nobody is paying this invoice now: paying it must work at once.
    payment = d("invoices.pay", org.id, inv.id)
    assert payment.status is PaymentStatus.SUCCEEDED
    assert_money(d, inv)


def test_reconciliation_never_settles_an_attempt_whose_process_died_before_confirming(
        d: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guarantee (README, Reconciliation): `payment` settles attempts still `pending` after
    stale_after ("a process that died"): paid, failed, or canceled; "one Stripe still holds
    open stays a failed finding (waiting)".

    The process died between recording its intent and confirming it, so the intent waits in
    `requires_confirmation` for a confirm that will never come: nobody will ever finish it.
    Reconciliation's repair (settle_payment) leaves it `pending`, fails the finding as "waiting"
    and leaves the invoice leased to itself; the next run finds the same. It is never
    settled (neither confirmed nor canceled) however often reconciliation runs."""
    org, inv = open_invoice(d)
    with monkeypatch.context() as m:
        _die_before_confirming(m)
        with pytest.raises(InjectedFault):
            d("invoices.pay", org.id, inv.id)
    for _ in range(3):
        d.clock.advance(STALE)
        d("reconciliation.run", apply=True, checks=["payment"])
    (intent_id,) = d.fake.intents
    assert statuses(d, inv) != ["pending"], (statuses(d, inv), d.fake.intents[intent_id])


# ---- threads on one invoice, every lease already expired when the next caller looks -----------

class JumpingClock:
    """Every read of the clock is a lease period later: each caller finds every other caller's
    lease expired, so any call may look at (and take over) the invoice at any step."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self.now += timedelta(seconds=LEASE + 1)
            return self.now


@pytest.mark.parametrize("token", ["pm_card_visa", "pm_card_threeDSecure2Required",
                                   "pm_bank_debit"])
def test_threads_with_expired_leases_never_charge_twice(
        mongo_uri: str, db_name: str, token: str) -> None:
    """Guarantees: an invoice is never charged more than its total; never two intents that can
    both move money; never money on a void invoice; only BillingError escapes."""
    from pymongo import MongoClient

    from billing import Billing
    from billing.gateways import FakeGateway

    clock = JumpingClock(datetime(2026, 11, 20, tzinfo=UTC))
    client: MongoClient[Any] = MongoClient(mongo_uri, timeoutMS=20_000)
    fake = FakeGateway()
    b = Billing(client, database=db_name, gateway=fake, webhook_secret="whsec_test",
                clock=clock, payment_lease_seconds=LEASE)
    try:
        b.setup()
        org = b.orgs.create(name="Acme", currency="usd", per_conversation=50,
                            per_started_minute=10)
        seed_conversations(b.database, org.id, 4)
        inv = b.invoices.create_for_period(org.id, *OCT)
        b.payment_methods.attach(org.id, token, request_id="r-1")

        def actor(name: str) -> None:
            for i in range(12):
                try:
                    if name == "pay":
                        b.invoices.pay(org.id, inv.id)
                    elif name == "cancel":
                        b.invoices.cancel_payment(org.id, inv.id)
                    elif name == "settle":
                        b.invoices.settle_payment(org.id, inv.id)
                    elif name == "void" and i == 8:
                        b.invoices.void(org.id, inv.id)
                    elif name == "stripe":  # customers and banks answer
                        for intent in list(fake.intents.values()):
                            if intent.status is IntentStatus.REQUIRES_ACTION:
                                fake.complete_action(intent.id, authenticated=i % 2 == 0)
                            elif intent.status is IntentStatus.PROCESSING:
                                fake.settle_processing(intent.id, succeeded=i % 3 == 0)
                except BillingError:
                    pass
                except ValueError:
                    pass  # the fake's complete/settle on an intent that moved meanwhile

        raced = in_threads([partial(actor, n) for n in ("pay", "pay", "cancel", "settle",
                                                        "stripe", "void")], timeout=120)
        assert raced.errors == []  # anything but a typed error
        live = [i for i in fake.intents.values() if i.status in (
            IntentStatus.SUCCEEDED, IntentStatus.PROCESSING, IntentStatus.REQUIRES_ACTION)]
        assert len(live) <= 1, live
        doc = b.database.invoices.find_one({"_id": ObjectId(inv.id)})
        assert doc is not None
        taken = fake.taken(inv.id)
        assert taken <= doc["total"], (taken, doc)
        if doc["status"] == "void":
            assert taken == 0 and not live, (taken, live, doc)
        # Bring it to rest: settle whatever is left, then the record must match Stripe.
        for intent in list(fake.intents.values()):
            if intent.status is IntentStatus.PROCESSING:
                fake.settle_processing(intent.id, succeeded=True)
            elif intent.status is IntentStatus.REQUIRES_ACTION:
                fake.complete_action(intent.id, authenticated=True)
        try:
            b.invoices.settle_payment(org.id, inv.id)
        except BillingError:
            pass
        doc = b.database.invoices.find_one({"_id": ObjectId(inv.id)})
        assert doc is not None
        taken = fake.taken(inv.id)
        assert taken <= doc["total"], (taken, doc)
        assert (doc["status"] == "paid") == (taken == doc["total"]), (taken, doc)
        if doc["status"] == "void":
            assert taken == 0, (taken, doc)
    finally:
        client.close()


# ---- webhooks ------------------------------------------------------------------------------------

@pytest.mark.parametrize("error", [{"code": "card_declined", "message": 42},
                                   {"code": {"nested": "x"}, "message": "declined"}])
def test_a_malformed_payment_failed_event_is_answered_not_crashed(
        d: Driver, error: dict[str, Any]) -> None:
    """Guarantees: only BillingError escapes; a webhook is answered with an outcome (the host
    maps it to HTTP); our records stay readable.

    A signed `payment_intent.payment_failed` event for our intent whose last_payment_error has a
    non-string message or code (a parser must not trust field types even when signed)."""
    org, inv = open_invoice(d, token="pm_card_threeDSecure2Required")
    with pytest.raises(BillingError):
        d("invoices.pay", org.id, inv.id)
    (payment,) = attempts(d, inv)
    obj = intent_obj(d, org, payment, "requires_payment_method", last_payment_error=error)
    result = d("webhooks.handle", *event("payment_intent.payment_failed", obj))
    assert result.http_status in (200, 503)
    d("invoices.get", org.id, inv.id)
    d("invoices.settle_payment", org.id, inv.id)  # the attempt can still be read and settled


def test_settle_payment_during_a_pay_aborts_it_and_blocks_the_invoice(
        d: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    """Guarantees: settle_payment settles from Stripe's state and never takes the invoice away
    from its payer for nothing; an open invoice is not wedged while the org has a usable default.

    An attempt's intent is recorded but unconfirmed (its process died). pay() takes the invoice
    to resume it and asks Stripe; while that call is in flight (its lease passes), an operator
    calls settle_payment: it takes the lease, finds `requires_confirmation`, returns the attempt
    `pending` and keeps the lease. The pay() then refuses to confirm ("taken over by another
    call") although nobody is paying, and the next pay() is refused for a whole lease period."""
    org, inv = open_invoice(d)
    with monkeypatch.context() as m:
        _die_before_confirming(m)
        with pytest.raises(InjectedFault):
            d("invoices.pay", org.id, inv.id)
    d.clock.advance(STALE)
    d.during_do("retrieve_intent", lambda: d.clock.advance(LEASE + 1))
    operator = d.during("retrieve_intent", "invoices.settle_payment", org.id, inv.id)
    try:
        d("invoices.pay", org.id, inv.id)
    except PaymentInProgress:
        pass  # aborted by the operator's settle_payment
    assert operator, "settle_payment did not run"
    # The operator's call has returned and nobody is paying: a pay must go through now.
    payment = d("invoices.pay", org.id, inv.id)
    assert payment.status is PaymentStatus.SUCCEEDED
    assert_money(d, inv)


# ---- reconciliation changes the total under a payment in flight ---------------------------------

def test_reconciliation_retotals_an_invoice_whose_payment_is_processing(d: Driver) -> None:
    """Guarantee: an invoice is never charged more than its total (README: wrong_totals only
    reports invoices where "money moved").

    An open invoice's stored total disagrees with its line items (what wrong_totals exists for).
    pay() charges the stored total by bank debit: `processing`. Reconciliation's wrong_totals
    then recomputes the open invoice's total, under the payment in flight. The debit succeeds:
    the invoice is `paid` with amount_paid (= money taken) above its total."""
    org, inv = open_invoice(d, token="pm_bank_debit")
    d.db.invoices.update_one({"_id": ObjectId(inv.id)},
                             {"$inc": {"subtotal": 100, "total": 100}})  # a wrong total
    with pytest.raises(PaymentInProgress):
        d("invoices.pay", org.id, inv.id)
    (payment,) = attempts(d, inv)
    assert payment["amount"] == inv.total + 100 and payment["status"] == "processing"
    d("reconciliation.run", apply=True, checks=["wrong_totals"])
    d.fake.settle_processing(payment["intent_id"], succeeded=True)
    d("invoices.settle_payment", org.id, inv.id)
    assert_money(d, inv)


# ---- attacks that held (kept as regression tests) -----------------------------------------------

def test_cancel_payment_while_the_intent_is_being_created_never_charges(d: Driver) -> None:
    org, inv = open_invoice(d)
    d.during_do("create_intent", lambda: d.clock.advance(LEASE + 1))
    canceled = d.during("create_intent", "invoices.cancel_payment", org.id, inv.id)
    with pytest.raises(PaymentInProgress):
        d("invoices.pay", org.id, inv.id)
    assert canceled and not isinstance(canceled[0], Exception), canceled
    assert d.fake.taken(inv.id) == 0
    assert all(i.status is IntentStatus.CANCELED for i in d.fake.intents.values())
    assert d("invoices.pay", org.id, inv.id).status is PaymentStatus.SUCCEEDED
    assert len([i for i in d.fake.intents.values() if i.status is IntentStatus.SUCCEEDED]) == 1
    assert_money(d, inv)


def test_cancel_payment_while_a_3ds_confirm_is_in_flight_never_charges(d: Driver) -> None:
    org, inv = open_invoice(d, token="pm_card_threeDSecure2Required")
    d.during_do("confirm_intent", lambda: d.clock.advance(LEASE + 1))
    canceled = d.during("confirm_intent", "invoices.cancel_payment", org.id, inv.id)
    with pytest.raises(BillingError):
        d("invoices.pay", org.id, inv.id)
    assert getattr(canceled[0], "status", None) is PaymentStatus.CANCELED, canceled
    (intent_id,) = d.fake.intents
    with pytest.raises(ValueError):
        d.fake.complete_action(intent_id)
    assert statuses(d, inv) == ["canceled"]
    assert_money(d, inv)


def test_a_cancel_whose_answer_is_lost_after_stripe_canceled_is_recorded(d: Driver) -> None:
    from billing import PaymentProviderUnavailable
    org, inv = open_invoice(d, token="pm_card_threeDSecure2Required")
    with pytest.raises(BillingError):
        d("invoices.pay", org.id, inv.id)
    d.fake.fail_next("cancel_intent", PaymentProviderUnavailable("timeout"), after=True)
    assert d("invoices.cancel_payment", org.id, inv.id).status is PaymentStatus.CANCELED
    d("invoices.void", org.id, inv.id)
    assert stored(d, inv)["status"] == "void"
    assert_money(d, inv)


def test_the_customer_authenticates_while_void_asks_stripe(d: Driver) -> None:
    org, inv = open_invoice(d, token="pm_card_threeDSecure2Required")
    with pytest.raises(BillingError):
        d("invoices.pay", org.id, inv.id)
    (intent_id,) = d.fake.intents

    def authenticate() -> None:
        if d.fake.intents[intent_id].status is IntentStatus.REQUIRES_ACTION:
            d.fake.complete_action(intent_id)

    d.during_do("retrieve_intent", authenticate)
    with pytest.raises(BillingError):  # paid meanwhile: cannot be voided
        d("invoices.void", org.id, inv.id)
    assert stored(d, inv)["status"] == "paid"
    assert_money(d, inv)


def test_a_late_succeeded_event_of_a_canceled_attempt_changes_nothing(d: Driver) -> None:
    org, inv = open_invoice(d, token="pm_card_threeDSecure2Required")
    with pytest.raises(BillingError):
        d("invoices.pay", org.id, inv.id)
    (first,) = attempts(d, inv)
    d("invoices.cancel_payment", org.id, inv.id)
    d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-2", make_default=True)
    assert d("invoices.pay", org.id, inv.id).status is PaymentStatus.SUCCEEDED
    late = intent_obj(d, org, first, "succeeded")
    d("webhooks.handle", *event("payment_intent.succeeded", late))
    assert statuses(d, inv) == ["canceled", "succeeded"]
    assert stored(d, inv)["amount_paid"] == inv.total
    assert_money(d, inv)


def test_reconciliation_while_a_confirm_is_in_flight_records_stripe_not_a_second_charge(
        d: Driver) -> None:
    org, inv = open_invoice(d)
    d.during_do("confirm_intent", lambda: d.clock.advance(STALE))
    d.during("confirm_intent", "reconciliation.run", apply=True, checks=["payment"])
    payment = d("invoices.pay", org.id, inv.id)
    assert payment.status is PaymentStatus.SUCCEEDED and len(d.fake.intents) == 1
    assert_money(d, inv)


def test_a_pay_resuming_an_unconfirmed_intent_while_another_resumes_it(
        d: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    org, inv = open_invoice(d)
    with monkeypatch.context() as m:
        _die_before_confirming(m)
        with pytest.raises(InjectedFault):
            d("invoices.pay", org.id, inv.id)
    d.clock.advance(STALE)
    d.during_do("retrieve_intent", lambda: d.clock.advance(LEASE + 1))
    other = d.during("retrieve_intent", "invoices.pay", org.id, inv.id)
    try:
        d("invoices.pay", org.id, inv.id)
    except BillingError:
        pass  # the other call paid it ("became paid while being paid")
    assert other
    assert len([i for i in d.fake.intents.values() if i.status is IntentStatus.SUCCEEDED]) <= 1
    assert_money(d, inv)
