"""A hypothesis state machine over the money paths, on SecantusDB and the fake gateway's model of
Stripe's PaymentIntent life cycle (processing, later 3-D Secure outcomes, failures at any call).

Rules: pay, cancel and settle attempts, scripted failures at every gateway call (before or after
Stripe acted), customers finishing or abandoning 3-D Secure, banks settling processing payments,
webhooks (lost, late, replayed), cards detached in Stripe, new defaults, void, the clock passing
leases, and reconciliation. After every step: money taken for an invoice never exceeds its total,
it is `paid` exactly when all of it was taken, a void invoice took nothing, and an open invoice is
never wedged while its org has a usable default (checked by a rule that pays it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from pymongo import MongoClient

from billing import (
    Billing,
    BillingError,
    NoDefaultPaymentMethod,
    PaymentInProgress,
    PaymentProviderUnavailable,
    WebhookOutcome,
)
from billing.adapters.stripe_webhooks import sign
from billing.domain.payments import Intent, IntentStatus
from billing.errors import PaymentError, PaymentMethodNotFound
from billing.gateways import FakeGateway
from tests.support import figures
from tests.support.billing_data import OCT, seed_conversations
from tests.support.drivers import Clock

pytestmark = pytest.mark.integration
SECRET = "whsec_money"
LEASE = 60
TOKENS = ["pm_card_visa", "pm_card_threeDSecure2Required", "pm_bank_debit",
          "pm_card_chargeCustomerFail", "pm_card_visa"]
# The first default leans to the states localstripe cannot reach.
FIRST = ["pm_card_threeDSecure2Required", "pm_bank_debit"] * 2 + ["pm_card_chargeCustomerFail",
                                                                  "pm_card_visa"]
CALLS = ["create_intent", "confirm_intent", "retrieve_intent", "cancel_intent"]
SETTINGS = settings(max_examples=25, stateful_step_count=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
UNSETTLED_VALUES = ("pending", "confirming", "requires_action", "processing")
PICK = st.integers(min_value=0, max_value=1000)


@dataclass
class MoneyRun:
    """What the examples of one run share: the server and the counts."""

    client: MongoClient[Any]
    db_name: str
    steps: int = 0
    checks: int = 0
    states: set[IntentStatus] = field(default_factory=set)


class MoneyMachine(RuleBasedStateMachine):
    """One example: an org with three open invoices (August to October) on a fresh database;
    then the rules below in any order, the money invariant after every step."""

    def __init__(self, run: MoneyRun) -> None:
        super().__init__()
        self.run = run
        self.name = f"{run.db_name}_{ObjectId()}"
        self.clock = Clock(datetime(2026, 11, 20, tzinfo=UTC))
        self.fake = FakeGateway()
        self.b = Billing(self.run.client, database=self.name, gateway=self.fake, clock=self.clock,
                         webhook_secret=SECRET, payment_lease_seconds=LEASE)
        self.b.setup()
        self.db = self.b.database
        self.org = self.b.orgs.create(name="Acme", currency="usd", per_conversation=50,
                                      per_started_minute=10)
        self.invoices = []
        for month in range(3):  # three open invoices of different months
            start = datetime(2026, 8 + month, 1, tzinfo=UTC)
            seed_conversations(self.db, self.org.id, 2 + month, start=start)
            end = datetime(2026, 9 + month, 1, tzinfo=UTC)
            self.invoices.append(self.b.invoices.create_for_period(self.org.id, start, end))
        assert self.invoices[-1].period_end == OCT[1]

    @initialize(token=st.sampled_from(FIRST))
    def first_default(self, token: str) -> None:
        self.attach(token)

    def attach(self, token: str) -> None:
        self.b.payment_methods.attach(self.org.id, token, request_id=str(ObjectId()),
                                      make_default=True)

    def inv(self, pick: int) -> Any:
        return self.invoices[pick % len(self.invoices)]

    def call(self, fn: Any, *args: Any) -> Any:
        self.run.steps += 1
        try:
            return fn(*args)
        except BillingError:
            return None  # typed errors are allowed; anything else fails the test

    # ---- the host ------------------------------------------------------------------------

    @rule(pick=PICK)
    def pay(self, pick: int) -> None:
        self.call(self.b.invoices.pay, self.org.id, self.inv(pick).id)

    @rule(pick=PICK)
    def cancel(self, pick: int) -> None:
        self.call(self.b.invoices.cancel_payment, self.org.id, self.inv(pick).id)

    @rule(pick=PICK)
    def settle(self, pick: int) -> None:
        self.call(self.b.invoices.settle_payment, self.org.id, self.inv(pick).id)

    @rule(pick=PICK)
    def void(self, pick: int) -> None:
        self.call(self.b.invoices.void, self.org.id, self.inv(pick).id)

    @rule(token=st.sampled_from(TOKENS))
    def new_default(self, token: str) -> None:
        self.call(self.attach, token)

    @rule(seconds=st.sampled_from([1, LEASE + 1, 16 * 60]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def reconcile(self) -> None:
        self.call(lambda: self.b.reconciliation.run(apply=True, checks=["payment"]))

    # ---- Stripe's side -------------------------------------------------------------------

    @rule(call=st.sampled_from(CALLS), after=st.booleans(), transient=st.booleans())
    def stripe_fails_next(self, call: str, after: bool, transient: bool) -> None:
        error: BillingError = PaymentProviderUnavailable("Stripe timed out") if transient \
            else PaymentError("Stripe refused the request", code="resource_missing")
        self.fake.fail_next(call, error, after=after)

    def answer(self, status: IntentStatus, pick: int, moves: Callable[[str], Intent]) -> None:
        """Stripe moves one intent that is in `status` (the `pick`-th), as `moves` does."""
        waiting = [i for i in self.fake.intents.values() if i.status is status]
        if waiting:
            self.run.states.add(moves(waiting[pick % len(waiting)].id).status)

    @rule(pick=PICK, authenticated=st.booleans())
    def customer_answers_3ds(self, pick: int, authenticated: bool) -> None:
        self.answer(IntentStatus.REQUIRES_ACTION, pick, lambda intent_id: self.fake.complete_action(
            intent_id, authenticated=authenticated))

    @rule(pick=PICK, succeeded=st.booleans())
    def bank_answers(self, pick: int, succeeded: bool) -> None:
        self.answer(IntentStatus.PROCESSING, pick, lambda intent_id: self.fake.settle_processing(
            intent_id, succeeded=succeeded))

    @rule(pick=PICK, succeeded=st.booleans())
    def customer_confirms_a_failed_intent_again(self, pick: int, succeeded: bool) -> None:
        """On-session, with the intent's client_secret and a new card: Stripe's recovery after
        a decline or failed 3-D Secure, possible until the intent is canceled."""
        self.answer(IntentStatus.REQUIRES_PAYMENT_METHOD, pick,
                    lambda intent_id: self.fake.confirm_on_session(intent_id,
                                                                   succeeded=succeeded))

    @rule(pick=PICK, twice=st.booleans())
    def webhook(self, pick: int, twice: bool) -> None:
        """Stripe reports an intent's current state (late, maybe twice)."""
        if not self.fake.intents:
            return
        intent = list(self.fake.intents.values())[pick % len(self.fake.intents)]
        kind = {IntentStatus.SUCCEEDED: "payment_intent.succeeded",
                IntentStatus.CANCELED: "payment_intent.canceled",
                IntentStatus.PROCESSING: "payment_intent.processing",
                IntentStatus.REQUIRES_ACTION: "payment_intent.requires_action",
                }.get(intent.status, "payment_intent.payment_failed")
        obj = {"id": intent.id, "object": "payment_intent", "status": intent.status.value,
               "amount": intent.amount, "currency": intent.currency,
               "customer": intent.customer_id, "metadata": self.fake.metadata[intent.id]}
        body = json.dumps({"id": f"evt_{ObjectId()}", "type": kind,
                           "created": int(time.time()), "livemode": False,
                           "data": {"object": obj}}).encode()
        for _ in range(2 if twice else 1):
            result = self.b.webhooks.handle(body, sign(body, secret=SECRET))
            assert result.outcome is not WebhookOutcome.MISMATCH, result

    @rule()
    def default_detached_in_stripe(self) -> None:
        org = self.b.orgs.get(self.org.id)
        if org.default_payment_method_id is None:
            return
        doc = self.db.payment_methods.find_one({"_id": ObjectId(org.default_payment_method_id)})
        if doc is not None and doc.get("stripe_id") in self.fake.methods:
            # Stripe then refuses intents for it (PaymentMethodNotFound, not retryable).
            self.fake.fail_next("create_intent", PaymentMethodNotFound("detached"))

    # ---- checks --------------------------------------------------------------------------

    @rule(pick=PICK)
    def an_open_invoice_with_a_usable_default_can_be_paid(self, pick: int) -> None:
        """Once earlier attempts are settled and leases expired, pay() starts a new attempt
        (or finishes the one Stripe still holds): never wedged."""
        inv = self.inv(pick)
        self.fake._failures.clear()  # noqa: SLF001 - no scripted failure for this probe
        self.clock.advance(LEASE + 1)
        self.call(self.b.invoices.settle_payment, self.org.id, inv.id)
        self.clock.advance(LEASE + 1)
        self.attach("pm_card_visa")
        doc = self.db.invoices.find_one({"_id": ObjectId(inv.id)})
        assert doc is not None
        latest = self.db.payments.find_one({"invoice_id": ObjectId(inv.id),
                                            "attempt": doc.get("payment_attempts", 0)})
        if doc["status"] != "open" or (latest is not None and latest["status"] in (
                "requires_action", "processing")):
            return
        try:
            self.b.invoices.pay(self.org.id, inv.id)
        except (PaymentInProgress, NoDefaultPaymentMethod) as exc:
            raise AssertionError(f"invoice {inv.id} is wedged: {exc.message}") from exc
        after = self.db.invoices.find_one({"_id": ObjectId(inv.id)})
        assert after is not None and after["status"] == "paid", after

    @invariant()
    def money(self) -> None:
        self.run.states.update(i.status for i in self.fake.intents.values())
        for inv in self.invoices:
            doc = self.db.invoices.find_one({"_id": ObjectId(inv.id)})
            assert doc is not None
            taken = self.fake.taken(inv.id)
            self.run.checks += 1
            assert taken <= doc["total"], (taken, doc)
            if doc["status"] == "paid":
                assert doc["amount_paid"] == taken == doc["total"], (taken, doc)
            elif taken:
                # Taken but not known yet (a lost answer, a lost webhook, a failed intent
                # confirmed again): the attempt that took it must still be open, so settling
                # or reconciliation finds it.
                latest = self.db.payments.find_one({
                    "invoice_id": ObjectId(inv.id), "attempt": doc["payment_attempts"]})
                assert latest is not None and (latest["status"] in UNSETTLED_VALUES or (
                    latest["status"] == "failed" and not latest.get("intent_canceled"))), \
                    (taken, doc, latest)
            if doc["status"] == "void":
                assert taken == 0, doc
            live = [i for i in self.fake.intents.values()
                    if self.fake.metadata[i.id]["invoice_id"] == inv.id
                    and i.status in (IntentStatus.SUCCEEDED, IntentStatus.PROCESSING,
                                     IntentStatus.REQUIRES_ACTION,
                                     IntentStatus.REQUIRES_PAYMENT_METHOD)]
            assert len(live) <= 1, live  # never two intents that can take its money

    def teardown(self) -> None:
        self.run.client.drop_database(self.name)


def test_money_is_never_taken_twice_nor_an_invoice_wedged(
    client: MongoClient[Any], db_name: str
) -> None:
    run = MoneyRun(client, db_name)
    try:
        run_state_machine_as_test(lambda: MoneyMachine(run), settings=SETTINGS)
    finally:
        figures.add("money state machine steps", run.steps)
        figures.add("money invariant checks", run.checks)
        figures.seen("stripe intent states reached", *(s.value for s in run.states))
