"""What an attach ends with when it is finished by reconciliation, meets a card reconciliation
adopted, a card whose detach is under way or done, or an org whose Stripe customer is gone:
`make_default` is honoured however the attach ends, a card Stripe detached (for good) never
becomes active again, and every refusal advises something that can be done.
Sync and async, on the fake gateway; each test asserts on documents, events and Stripe's side.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest
from bson import ObjectId

from billing import WebhookOutcome, faults
from billing.adapters.stripe_webhooks import sign
from billing.errors import PaymentError, PaymentMethodNotFound, PaymentProviderUnavailable
from billing.faults import InjectedFault
from tests.integration.test_method_reconciliation_races import new_org, org_doc
from tests.support.drivers import Driver

pytestmark = pytest.mark.integration
VISA = "4242424242424242"


def events(d: Driver, org_id: str, kind: str) -> list[dict[str, Any]]:
    page = d("events.poll", org_id, after=0, limit=100)
    return [e.data for e in page.events if e.type == kind]


# ---- make_default ------------------------------------------------------------------------------

def test_an_interrupted_attach_finished_by_reconciliation_becomes_the_default_it_asked(
    d: Driver,
) -> None:
    """Card A is the org's default; an attach of card B with make_default=True fails after
    Stripe attached B, and its undo in Stripe fails too: the pending record is left for
    reconciliation, which activates B as the default the attach asked for. The host's repeat
    of the request returns B."""
    org = new_org(d)
    first = d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-a")
    card = d.fake.create_card(VISA)
    d.fake.fail_next("detach", PaymentProviderUnavailable("Stripe is unavailable", code=None))
    with faults.active({"payment_methods.attach.after_stripe": "raise"}), \
            pytest.raises(InjectedFault):
        d("payment_methods.attach", org.id, card, request_id="r-b", make_default=True)
    assert org_doc(d, org.id)["default_payment_method_id"] == first.id

    d.clock.advance(3600)  # the pending attach is stale
    report = d("reconciliation.run", apply=True, checks=["payment_method"])
    again = d("payment_methods.attach", org.id, card, request_id="r-b", make_default=True)

    assert [f.result for f in report.findings] == ["repaired"], report.as_json()
    assert (again.stripe_id, again.status.value) == (card, "active")
    assert org_doc(d, org.id)["default_payment_method_id"] == again.id
    assert [(e["payment_method_id"], e["default"]) for e in events(
        d, org.id, "payment_method.attached")] == [(first.id, first.id), (again.id, again.id)]
    assert d.fake.methods[card].customer_id == org_doc(d, org.id)["stripe_customer_id"]


def test_make_default_holds_for_a_card_reconciliation_adopted(d: Driver) -> None:
    """A SetupIntent attached the card to the org's customer in Stripe; reconciliation adopted
    it (not as the default). The host then records the card it collected with
    make_default=True: the adopted method is returned, and it is the org's default."""
    org = new_org(d)
    old = d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-old")
    customer = org_doc(d, org.id)["stripe_customer_id"]
    card = d.fake.create_card(VISA)
    d.fake.methods[card] = replace(d.fake.methods[card], customer_id=customer)  # SetupIntent
    report = d("reconciliation.run", apply=True, checks=["payment_method"])
    assert [f.result for f in report.findings] == ["repaired"], report.as_json()  # adopted
    assert org_doc(d, org.id)["default_payment_method_id"] == old.id

    method = d("payment_methods.attach", org.id, card, request_id="r-new", make_default=True)

    assert (method.stripe_id, method.status.value) == (card, "active")
    assert org_doc(d, org.id)["default_payment_method_id"] == method.id
    assert d.db.payment_methods.count_documents(
        {"org_id": ObjectId(org.id), "stripe_id": card, "status": "active"}) == 1
    assert d.fake.methods[card].customer_id == customer


# ---- a card Stripe detached for good -----------------------------------------------------------

def detached_event(card: str, customer: str) -> tuple[bytes, str]:
    body = json.dumps({"id": f"evt_detached_{card}", "object": "event",
                       "type": "payment_method.detached", "created": int(time.time()),
                       "livemode": False,
                       "data": {"object": {"id": card, "object": "payment_method",
                                           "customer": None},
                                "previous_attributes": {"customer": customer}}}).encode()
    return body, sign(body, secret="whsec_test")


def test_a_repeat_attach_answered_before_a_detach_finished_never_activates_the_card(
    d: Driver,
) -> None:
    """Card X is the org's default (M1). A second attach of X (a double submit) reaches Stripe,
    which answers with X still on the customer; meanwhile the org's detach of M1 runs to the
    end (Stripe detaches X for good, its webhook applied to M1). The second attach records its
    answer after: refused, nothing active on X, no default, a new payment method advised."""
    org = new_org(d)
    card = d.fake.create_card(VISA)
    m1 = d("payment_methods.attach", org.id, card, request_id="r-1")
    customer = org_doc(d, org.id)["stripe_customer_id"]
    detach = d.during("attach", "payment_methods.detach", org.id, m1.id)
    hooks = d.during_with("detach", "webhooks.handle", lambda: detached_event(card, customer))

    with pytest.raises(PaymentError) as refused:
        d("payment_methods.attach", org.id, card, request_id="r-2")

    assert "attach a new payment method" in refused.value.message
    assert not isinstance(detach[0], Exception), detach
    assert hooks[0].outcome is WebhookOutcome.PROCESSED
    statuses = {doc["request_id"]: doc["status"] for doc in d.db.payment_methods.find(
        {"org_id": ObjectId(org.id)})}
    assert statuses == {"r-1": "detached", "r-2": "failed"}
    assert org_doc(d, org.id)["default_payment_method_id"] is None
    assert d.fake.methods[card].customer_id is None
    assert [e["payment_method_id"] for e in events(d, org.id, "payment_method.detached")] == [
        m1.id]
    again = d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-3")  # the advice
    assert org_doc(d, org.id)["default_payment_method_id"] == again.id


def test_a_card_being_detached_is_refused_with_advice_that_can_be_followed(d: Driver) -> None:
    """The org's detach of M1 (card X) is under way when the host attaches X again: refused,
    advising a new payment method, not X again once the detach has finished (Stripe never
    attaches X again). The advice, followed, attaches."""
    org = new_org(d)
    card = d.fake.create_card(VISA)
    m1 = d("payment_methods.attach", org.id, card, request_id="r-1")
    with faults.active({"payment_methods.detach.after_mark": "raise"}), \
            pytest.raises(InjectedFault):
        d("payment_methods.detach", org.id, m1.id)  # under way: M1 is detaching

    with pytest.raises(PaymentError) as refused:
        d("payment_methods.attach", org.id, card, request_id="r-2")
    d("payment_methods.detach", org.id, m1.id)  # the detach finishes
    with pytest.raises(PaymentError):  # X again: Stripe refuses it
        d("payment_methods.attach", org.id, card, request_id="r-3")
    new = d("payment_methods.attach", org.id, d.fake.create_card(VISA), request_id="r-4")

    assert "attach a new payment method" in refused.value.message
    assert "again once" not in refused.value.message
    assert new.status.value == "active"
    assert org_doc(d, org.id)["default_payment_method_id"] == new.id
    statuses = {doc["request_id"]: doc["status"] for doc in d.db.payment_methods.find(
        {"org_id": ObjectId(org.id)})}
    assert statuses == {"r-1": "detached", "r-2": "failed", "r-3": "failed", "r-4": "active"}


# ---- the org's Stripe customer is gone ---------------------------------------------------------

def test_attach_after_the_customer_was_deleted_in_stripe_advises_reconciliation(
    d: Driver,
) -> None:
    """The org's Stripe customer was deleted in Stripe and its customer.deleted event never
    processed: attaching fails every time while the org records that customer. The error says
    so and advises reconciliation; once it has run, the advice's attach succeeds on a new
    customer."""
    org = new_org(d)
    old = d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-1")
    customer = org_doc(d, org.id)["stripe_customer_id"]
    d.fake.customers.pop(customer)  # deleted in Stripe; no webhook processed

    with pytest.raises(PaymentMethodNotFound) as refused:
        d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-2")
    report = d("reconciliation.run", apply=True, org_id=org.id, checks=["payment_method"])
    new = d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-3")

    assert f"billing reconcile --apply --org {org.id}" in refused.value.message
    assert [f.result for f in report.findings] == ["repaired"], report.as_json()
    statuses = {doc["request_id"]: doc["status"] for doc in d.db.payment_methods.find(
        {"org_id": ObjectId(org.id)})}
    assert statuses == {"r-1": "detached", "r-2": "failed", "r-3": "active"}
    now = org_doc(d, org.id)
    assert now["stripe_customer_id"] not in (None, customer)
    assert now["default_payment_method_id"] == new.id
    assert d.fake.methods[new.stripe_id].customer_id == now["stripe_customer_id"]
    assert [e["payment_method_id"] for e in events(d, org.id, "payment_method.detached")] == [
        old.id]
