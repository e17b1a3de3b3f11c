"""A hypothesis state machine over payment methods and Stripe customers, on SecantusDB and the
in-memory FakeGateway.

Rules: attach (new cards, repeated request ids, a card already attached here under a new request
id), detach, set_default, Stripe's `customer.deleted` and `payment_method.detached` webhooks
(Stripe's state changed first, as Stripe does), `reconcile --apply` on overlapping shards, a
failure armed for the next call of any gateway method (before its effect, or after it: "applied
in Stripe, answer lost"), and a customer deleted in Stripe while an attach is between Stripe
and its activation. Typed errors are allowed results; anything else fails the run.

After every step (tests/support/invariants.py): each org's default is an active method of
that org, attached in Stripe to the org's current customer; every active record is; at most one
live record per Stripe method; no card sits on another customer made for the org. At the end,
reconciliation settles everything: no pending or detaching record, the current customer's cards
are exactly the active records, and no other customer made for the org is left.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from pymongo import MongoClient

from billing import (
    Billing,
    BillingError,
    LeaseNotAcquired,
    PaymentProviderUnavailable,
    WebhookOutcome,
)
from billing.adapters.stripe_webhooks import sign
from billing.domain.payments import CardMethod
from billing.gateways import FakeGateway
from tests.support import figures
from tests.support.invariants import check_methods, check_settled
from tests.support.stripe import VISA

pytestmark = pytest.mark.integration
SECRET = "whsec_method_machine"
MACHINE_SETTINGS = settings(max_examples=12, stateful_step_count=25, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow], database=None)
GATEWAY_CALLS = ["create_customer", "find_customers", "delete_customer", "attach", "detach",
                 "list_payment_methods"]
SHARDS = [(0, 1), (0, 2), (1, 2)]
ORG = st.integers(min_value=0, max_value=1)
PICK = st.integers(min_value=0, max_value=10_000)


def lost() -> PaymentProviderUnavailable:
    return PaymentProviderUnavailable("injected: the connection to Stripe broke")


class RacingGateway(FakeGateway):
    """The fake gateway, plus: a hook run right after the next attach took effect in Stripe,
    before its answer reaches the caller (what a webhook processed meanwhile looks like)."""

    after_attach: Any = None

    def attach(self, *, payment_method: str, customer_id: str,
               idempotency_key: str) -> CardMethod:
        card = super().attach(payment_method=payment_method, customer_id=customer_id,
                              idempotency_key=idempotency_key)
        hook, self.after_attach = self.after_attach, None
        if hook is not None:
            hook(customer_id)
        return card


@dataclass
class MethodRun:
    """What the examples of one run share: the server and the counts."""

    client: MongoClient[Any]
    db_name: str
    counts: Counter[str] = field(default_factory=Counter)
    examples: Iterator[int] = field(default_factory=lambda: itertools.count(1))


class MethodMachine(RuleBasedStateMachine):
    """One example: two orgs on a fresh database and a gateway that can lose answers; then the
    rules below in any order, the methods' invariant after every step."""

    def __init__(self, run: MethodRun) -> None:
        super().__init__()
        self.run, self.counts = run, run.counts
        self.name = f"{run.db_name}_{next(run.examples)}"
        self.run.client.drop_database(self.name)
        self.gateway = RacingGateway(replay_customer_keys=False)
        self.b = Billing(self.run.client, database=self.name, gateway=self.gateway,
                         webhook_secret=SECRET, payment_lease_seconds=30,
                         transaction_retry_seconds=30)
        self.b.setup()
        self.db = self.b.database
        self.orgs = [self.b.orgs.create(name=f"org {i}", currency="usd",
                                        per_conversation=50, per_started_minute=10)
                     for i in range(2)]
        self.requests = itertools.count(1)
        self.armed = 0  # failures armed and maybe not consumed: reconcile may then fail

    def attempt(self, call: Any) -> Any:
        self.counts["steps"] += 1
        try:
            return call()
        except BillingError as exc:
            self.counts[type(exc).__name__] += 1
            return None

    def pick(self, pick: int, query: dict[str, Any]) -> dict[str, Any] | None:
        docs = list(self.db.payment_methods.find(query).sort("_id", 1))
        return docs[pick % len(docs)] if docs else None

    def deliver(self, kind: str, obj: dict[str, Any],
                previous: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"id": f"evt_{ObjectId()}", "object": "event", "type": kind,
                                "created": int(time.time()), "livemode": False,
                                "data": {"object": obj}}
        if previous is not None:
            body["data"]["previous_attributes"] = previous
        payload = json.dumps(body).encode()
        result = self.b.webhooks.handle(payload, sign(payload, secret=SECRET))
        assert result.outcome in (WebhookOutcome.PROCESSED, WebhookOutcome.IGNORED), result

    def delete_customer_in_stripe(self, customer: str) -> None:
        """Someone deletes the customer in Stripe's dashboard; Stripe sends the event."""
        self.counts["customer.deleted"] += 1
        self.gateway.customers.pop(customer, None)
        for method in list(self.gateway.methods.values()):
            if method.customer_id == customer:
                self.gateway.methods[method.id] = replace(method, customer_id=None)
        self.deliver("customer.deleted", {"id": customer, "object": "customer"})

    # ---- the host ----------------------------------------------------------------------

    @rule(o=ORG, make_default=st.booleans(), repeat=st.sampled_from([False, False, True]),
          reuse=st.sampled_from([False, False, False, True]), pick=PICK)
    def attach(self, o: int, make_default: bool, repeat: bool, reuse: bool,
               pick: int) -> None:
        org = self.orgs[o].id
        request = "r-repeat" if repeat else f"r-{next(self.requests)}"
        held = self.pick(pick, {"org_id": ObjectId(org), "status": "active"})
        if repeat:
            source = f"pm_repeat_{o}"  # one card per org: a repeat names the same one
            if source not in self.gateway.methods:
                self.gateway.methods[source] = CardMethod(
                    id=source, customer_id=None, brand="visa", last4=VISA[-4:],
                    exp_month=12, exp_year=2034)
                self.gateway._numbers[source] = VISA
        elif reuse and held is not None:
            source = held["stripe_id"]  # the same card again, under a new request id
        else:
            source = self.gateway.create_card(VISA)
        self.attempt(lambda: self.b.payment_methods.attach(
            org, source, request_id=request, make_default=make_default))

    @rule(pick=PICK)
    def detach(self, pick: int) -> None:
        if (doc := self.pick(pick, {})) is not None:
            self.attempt(lambda: self.b.payment_methods.detach(doc["org_id"], doc["_id"]))

    @rule(pick=PICK)
    def set_default(self, pick: int) -> None:
        if (doc := self.pick(pick, {})) is not None:
            self.attempt(lambda: self.b.payment_methods.set_default(doc["org_id"],
                                                                    doc["_id"]))

    # ---- Stripe's side -----------------------------------------------------------------

    @rule(o=ORG)
    def customer_deleted(self, o: int) -> None:
        org = self.db.orgs.find_one({"_id": ObjectId(self.orgs[o].id)})
        if org is not None and org.get("stripe_customer_id"):
            self.delete_customer_in_stripe(org["stripe_customer_id"])

    @rule(o=ORG)
    def customer_deleted_during_next_attach(self, o: int) -> None:
        """The next attach's customer is deleted (and the event processed) between Stripe
        attaching the card and our activation."""
        self.counts["steps"] += 1
        self.gateway.after_attach = self.delete_customer_in_stripe

    @rule(pick=PICK)
    def method_detached_in_stripe(self, pick: int) -> None:
        doc = self.pick(pick, {"status": "active"})
        method = self.gateway.methods.get(doc["stripe_id"]) if doc else None
        if doc is None or method is None or method.customer_id is None:
            return
        self.counts["payment_method.detached"] += 1
        self.gateway.methods[method.id] = replace(method, customer_id=None)
        self.deliver("payment_method.detached",
                     {"id": method.id, "object": "payment_method", "customer": None},
                     previous={"customer": method.customer_id})

    @rule(call=st.sampled_from(GATEWAY_CALLS), after=st.booleans())
    def gateway_fails_next(self, call: str, after: bool) -> None:
        self.counts["steps"] += 1
        self.counts[f"armed {call}{' after' if after else ''}"] += 1
        self.armed += 1
        self.gateway.fail_next(call, lost(), after=after)

    # ---- the operator ------------------------------------------------------------------

    @rule(shard=st.sampled_from(SHARDS))
    def reconcile(self, shard: tuple[int, int]) -> None:
        self.counts["steps"] += 1
        try:
            report = self.b.reconciliation.run(apply=True, shard=shard,
                                               stale_after=timedelta(0))
        except (LeaseNotAcquired, PaymentProviderUnavailable):
            return
        failed = [f.as_json() for f in report.findings if f.result == "failed"]
        assert failed == [] or self.armed, failed

    # ---- after every step --------------------------------------------------------------

    @invariant()
    def consistent(self) -> None:
        check_methods(self.db, self.gateway)

    def teardown(self) -> None:
        try:
            self.gateway._failures.clear()
            self.gateway.after_attach = None
            report = self.b.reconciliation.run(apply=True, stale_after=timedelta(0))
            assert [f.as_json() for f in report.findings if f.result == "failed"] == []
            check_settled(self.db, self.gateway)
            again = self.b.reconciliation.run(stale_after=timedelta(0))
            assert again.clean, again.as_json()
            self.counts["examples"] += 1
        finally:
            self.run.client.drop_database(self.name)


def test_payment_method_state_machine(client: MongoClient[Any], db_name: str) -> None:
    run = MethodRun(client, db_name)
    try:
        run_state_machine_as_test(lambda: MethodMachine(run), settings=MACHINE_SETTINGS)
    finally:
        figures.add("payment-method machine steps", run.counts["steps"])
        figures.add("payment-method machine examples", run.counts["examples"])
