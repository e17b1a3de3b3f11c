"""The org's Stripe customer: reconciliation deletes only customers billing made for the org
(never another system's, which may carry an org_id too), and a creation taken over leaves an
audit window in which reconciliation finds what the earlier call made (sync, fake gateway)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from bson import ObjectId

from billing import Billing, PaymentProviderUnavailable
from billing.gateways import FakeGateway
from tests.support.invariants import customers_of
from tests.support.stripe import VISA

pytestmark = pytest.mark.integration
LEASE = 1.0


def test_a_customer_another_system_made_for_the_org_is_never_deleted(
    client: Any, db_name: str
) -> None:
    gateway = FakeGateway(replay_customer_keys=False)
    b = Billing(client, database=db_name, gateway=gateway, transaction_retry_seconds=60,
                payment_lease_seconds=30)
    b.setup()
    org = b.orgs.create(name="Acme", currency="usd", per_conversation=50,
                        per_started_minute=10).id
    source = gateway.create_card(VISA)
    # A lost create answer, then a retry that takes the creation over: an audit window.
    gateway.fail_next("create_customer", PaymentProviderUnavailable("reset"), after=True)
    with pytest.raises(PaymentProviderUnavailable):
        b.payment_methods.attach(org, source, request_id="r-1")
    b.payment_methods.attach(org, source, request_id="r-1")
    stored = b.database.orgs.find_one({"_id": ObjectId(org)})
    assert stored["customer_audit"] is not None

    # The host's CRM integration makes its own Stripe customer for the org at the same time,
    # tagging it with the org's id (no billing_generation: billing did not make it).
    theirs = "cus_crm_1"
    gateway.customers[theirs] = {"org_id": org, "name": "Acme (CRM)"}
    gateway._created[theirs] = int(time.time())

    dry = b.reconciliation.run(checks=["payment_method"])
    flagged = [f for f in dry.findings if f.ids == [theirs]]
    b.reconciliation.run(apply=True, checks=["payment_method"])
    # README: the only deletion is of an *extra* customer (our metadata says billing created
    # it for this org ...). This one has no billing metadata: billing must leave it alone.
    assert theirs in gateway.customers, (
        "reconciliation deleted a customer billing never created: "
        f"{[(f.summary, f.action) for f in flagged]}")
    assert flagged == []


class SlowFirstCreate(FakeGateway):
    """The first create_customer request reaches Stripe late (network), after `before` ran."""

    before: Any = None

    def create_customer(self, **kw: Any) -> str:
        hook, self.before = self.before, None
        if hook is not None:
            hook()
        return super().create_customer(**kw)


def test_a_taken_over_creation_recorded_by_the_slow_holder_leaves_an_audit_window(
    client: Any, db_name: str
) -> None:
    gateway = SlowFirstCreate(replay_customer_keys=False)  # localstripe: keys not honoured
    b = Billing(client, database=db_name, gateway=gateway, transaction_retry_seconds=60,
                payment_lease_seconds=LEASE)
    b.setup()
    org = b.orgs.create(name="Acme", currency="usd", per_conversation=50,
                        per_started_minute=10).id
    second = gateway.create_card(VISA)

    def another_call_takes_over() -> None:
        time.sleep(LEASE + 0.2)  # the slow holder's claim expires
        gateway.fail_next("create_customer", PaymentProviderUnavailable("reset"), after=True)
        with pytest.raises(PaymentProviderUnavailable):  # takes over, finds none, answer lost
            b.payment_methods.attach(org, second, request_id="r-2")

    gateway.before = another_call_takes_over
    b.payment_methods.attach(org, gateway.create_card(VISA), request_id="r-1")  # slow holder
    b.payment_methods.attach(org, second, request_id="r-2")  # the taker's caller retries

    stored = b.database.orgs.find_one({"_id": ObjectId(org)})
    made = customers_of(gateway, org)
    extra = [c for c in made if c != stored["stripe_customer_id"]]
    assert len(made) == 2 and len(extra) == 1  # the taker's customer is left in Stripe

    report = b.reconciliation.run(checks=["payment_method"])
    found = {f.ids[0] for f in report.findings if f.ids}
    assert stored.get("customer_audit") is not None and extra[0] in found, (
        f"customer_audit={stored.get('customer_audit')}; extra customer {extra[0]} made by "
        f"billing for org {org} is never found by reconciliation: findings {found}")
