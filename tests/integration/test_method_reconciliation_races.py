"""Reconciliation of payment methods racing live attaches and Stripe's webhooks, and what it
tells the host: a card attached while a run looks is never marked gone nor adopted twice, a
card detached in Stripe during its attach ends detached here, and every method reconciliation
marks detached is told (`payment_method.detached`), as detach() and the webhook tell it.
Sync and async, on the fake gateway; each test asserts on documents, events and Stripe's side.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

import billing._async.reconcile_payment_method_checks as async_checks
from billing import WebhookOutcome, faults
from billing.adapters.stripe_webhooks import sign
from billing.faults import InjectedFault
from tests.support.drivers import Driver

pytestmark = pytest.mark.integration


def new_org(d: Driver, name: str = "A") -> Any:
    return d("orgs.create", name=name, currency="usd", per_conversation=50,
             per_started_minute=10)


def org_doc(d: Driver, org_id: str) -> dict[str, Any]:
    doc = d.db.orgs.find_one({"_id": ObjectId(org_id)})
    assert doc is not None
    return doc


def detached_events(d: Driver, org_id: str) -> list[dict[str, Any]]:
    page = d("events.poll", org_id, after=0, limit=100)
    return [e.data for e in page.events if e.type == "payment_method.detached"]


def test_a_first_attach_while_the_run_looks_is_not_marked_gone(d: Driver) -> None:
    """The run read org B in its page of orgs before B had a customer; while it lists org A's
    cards in Stripe, B attaches its first card. B's card stays active and its default."""
    a, b = new_org(d, "A"), new_org(d, "B")
    d("payment_methods.attach", a.id, "pm_card_visa", request_id="a-1")
    attached = d.during("list_payment_methods", "payment_methods.attach", b.id, "pm_card_visa",
                        request_id="b-1")

    d("reconciliation.run", apply=True, checks=["payment_method"])

    method = attached[0]
    assert not isinstance(method, Exception), method
    doc = d.db.payment_methods.find_one({"_id": ObjectId(method.id)})
    assert doc is not None and doc["status"] == "active"
    assert org_doc(d, b.id)["default_payment_method_id"] == method.id
    assert d.fake.methods[method.stripe_id].customer_id == org_doc(d, b.id)["stripe_customer_id"]
    assert detached_events(d, b.id) == []


@pytest.mark.parametrize("d", ["async"], indirect=True)  # interleaved by asyncio tasks
def test_a_card_being_attached_is_not_adopted_so_make_default_holds(
    d: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run reads the org's methods; an attach of a new card with make_default starts and
    attaches it in Stripe; the run then sees the card in Stripe, unknown to the methods it read,
    and goes to adopt it. The pending attach holds that card: the run leaves it, and the attach
    activates it as the org's default."""
    assert d.loop is not None
    org = new_org(d)
    d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-0")
    card = d.fake.create_card("4242424242424242")
    in_stripe, go_on = asyncio.Event(), asyncio.Event()
    attaching: list[Any] = []

    async def held_in_stripe() -> None:  # inside the attach's Stripe call, after it acted
        in_stripe.set()
        await go_on.wait()

    real = async_checks.live_methods_of_org

    async def read_then_attach(direct: Any, oid: ObjectId) -> list[dict[str, Any]]:
        docs = await real(direct, oid)
        if not attaching:
            d.fake.during("attach", held_in_stripe)
            attaching.append(asyncio.ensure_future(d.b.payment_methods.attach(
                org.id, card, request_id="r-1", make_default=True)))
            await in_stripe.wait()
        return docs

    monkeypatch.setattr(async_checks, "live_methods_of_org", read_then_attach)

    async def scenario() -> Any:
        report = await d.b.reconciliation.run(apply=True, checks=["payment_method"])
        go_on.set()
        return report, await attaching[0]

    report, method = d.loop.run_until_complete(scenario())

    assert method.stripe_id == card
    assert org_doc(d, org.id)["default_payment_method_id"] == method.id, report.as_json()
    assert d.db.payment_methods.count_documents({"org_id": ObjectId(org.id),
                                                 "stripe_id": card, "status": "active"}) == 1


def test_a_card_detached_in_stripe_during_its_attach_ends_detached(d: Driver) -> None:
    """The customer removes the card in Stripe right after the attach reached Stripe, before
    the attach recorded it: the webhook is answered 503 (an attach holds the card), not
    recorded, and Stripe's next delivery detaches what the attach activated."""
    org = new_org(d)
    d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-0")
    customer = org_doc(d, org.id)["stripe_customer_id"]
    card = d.fake.create_card("4242424242424242")

    def detached_in_stripe() -> tuple[bytes, str]:
        d.fake.methods[card] = replace(d.fake.methods[card], customer_id=None)
        body = json.dumps({"id": "evt_detached_during_attach", "object": "event",
                           "type": "payment_method.detached", "created": int(time.time()),
                           "livemode": False,
                           "data": {"object": {"id": card, "object": "payment_method",
                                               "customer": None},
                                    "previous_attributes": {"customer": customer}}}).encode()
        return body, sign(body, secret="whsec_test")

    first = d.during_with("attach", "webhooks.handle", detached_in_stripe)
    method = d("payment_methods.attach", org.id, card, request_id="r-1", make_default=True)

    assert first[0].outcome is WebhookOutcome.RETRY and first[0].http_status == 503
    again = d("webhooks.handle", *detached_in_stripe())  # Stripe delivers it again
    assert again.outcome is WebhookOutcome.PROCESSED
    doc = d.db.payment_methods.find_one({"_id": ObjectId(method.id)})
    assert doc is not None and doc["status"] == "detached"
    assert org_doc(d, org.id)["default_payment_method_id"] is None
    assert [e["payment_method_id"] for e in detached_events(d, org.id)] == [method.id]


def test_a_detach_finished_by_reconciliation_is_told(d: Driver) -> None:
    org = new_org(d)
    pm = d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-1")
    with faults.active({"payment_methods.detach.after_stripe": "raise"}), \
            pytest.raises(InjectedFault):
        d("payment_methods.detach", org.id, pm.id)  # died after Stripe's detach

    d("reconciliation.run", apply=True, checks=["payment_method"], stale_after=timedelta(0))

    doc = d.db.payment_methods.find_one({"_id": ObjectId(pm.id)})
    assert doc is not None and doc["status"] == "detached"
    assert [(e["payment_method_id"], e["by"]) for e in detached_events(d, org.id)] == [
        (pm.id, "billing")]


def test_a_card_gone_from_stripe_found_by_reconciliation_is_told(d: Driver) -> None:
    org = new_org(d)
    pm = d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-1")
    # Detached in Stripe's dashboard; its payment_method.detached webhook was lost.
    d.fake.methods[pm.stripe_id] = replace(d.fake.methods[pm.stripe_id], customer_id=None)

    d("reconciliation.run", apply=True, checks=["payment_method"], stale_after=timedelta(0))

    doc = d.db.payment_methods.find_one({"_id": ObjectId(pm.id)})
    assert doc is not None and doc["status"] == "detached"
    assert org_doc(d, org.id)["default_payment_method_id"] is None
    assert [(e["payment_method_id"], e["by"]) for e in detached_events(d, org.id)] == [
        (pm.id, "stripe")]


def test_without_a_gateway_what_needs_stripe_is_reported_not_failed(
        d: Driver, client: Any) -> None:
    """A run without a gateway (the CLI without STRIPE_API_KEY) runs the local checks: an
    interrupted detach, a stale attach and an orphan's method are found, but repairing them
    needs Stripe, so they are reported for a run with one; nothing is written or failed."""
    from billing import Billing

    org = new_org(d)
    kept = d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-1")
    d.db.payment_methods.update_one({"_id": ObjectId(kept.id)},
                                    {"$set": {"status": "detaching"}})
    stale = d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-2")
    d.db.payment_methods.update_one({"_id": ObjectId(stale.id)}, {"$set": {
        "status": "pending", "created_at": d.clock.now - timedelta(days=1)}})
    gone = new_org(d, "deleted")
    orphan = d("payment_methods.attach", gone.id, "pm_card_visa", request_id="r-3")
    d.db.orgs.delete_one({"_id": ObjectId(gone.id)})
    methods = list(d.db.payment_methods.find())
    local = Billing(client, database=d.db.name)

    report = local.reconciliation.run(checks=["payment_method"], apply=True,
                                      stale_after=timedelta(hours=1))

    found = {f.ids[0]: f for f in report.findings}
    assert set(found) >= {kept.id, stale.id, orphan.id}
    for method in (kept, stale, orphan):
        assert found[method.id].result == "reported" and not found[method.id].repairable
        assert "STRIPE_API_KEY" in found[method.id].action
    assert list(d.db.payment_methods.find()) == methods
