"""Billing events (the outbox): one event per state change, in its transaction (a rolled-back
change writes none), numbered per org without gaps; poll pages and watch resumes (SecantusDB)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient, MongoClient

from billing import AsyncBilling, Billing, InvalidInput, PaymentError, PaymentRequiresAction, faults
from billing.faults import InjectedFault
from billing.gateways import FakeGateway
from tests.support.billing_data import OCT, seed_conversations
from tests.support.drivers import FLAVOURS, Clock, Driver

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.fixture(params=FLAVOURS)
def d(request: pytest.FixtureRequest, mongo_uri: str, db_name: str) -> Iterator[Driver]:
    driver = Driver(request.param, mongo_uri, db_name, clock=Clock(NOW))
    try:
        yield driver
    finally:
        driver.close()


def events(d: Driver, org_id: str) -> list[tuple[int, str]]:
    return [(e["seq"], e["type"]) for e in d.db.billing_events.find(
        {"org_id": ObjectId(org_id)}).sort("seq", 1)]


def invoice_for(d: Driver, token: str | None = "pm_card_visa", n: int = 3) -> tuple[Any, Any]:
    org = d("orgs.create", name="Acme", currency="usd", per_conversation=50, per_started_minute=10)
    seed_conversations(d.db, org.id, n)
    inv = d("invoices.create_for_period", org.id, *OCT)
    if token:
        d("payment_methods.attach", org.id, token, request_id=f"r-{ObjectId()}")
    return org, inv


def test_each_state_change_writes_one_event_in_commit_order(d: Driver) -> None:
    org, inv = invoice_for(d)
    d("invoices.pay", org.id, inv.id)
    kinds = [k for _, k in events(d, org.id)]
    assert kinds[0] == "invoice.finalized" and kinds[-1] == "invoice.paid"
    assert [s for s, _ in events(d, org.id)] == list(range(1, len(kinds) + 1))  # no gaps
    paid = d.db.billing_events.find_one({"org_id": ObjectId(org.id), "type": "invoice.paid"})
    assert paid is not None and paid["data"]["invoice_id"] == inv.id
    assert paid["data"]["amount_paid"] == inv.total and paid["expires_at"] > NOW


def test_failures_requires_action_uncollectible_and_void_are_told(d: Driver) -> None:
    org, inv = invoice_for(d, "pm_card_chargeCustomerFail")
    d("orgs.set_collection_schedule", org.id, [0])
    with pytest.raises(PaymentError):
        d("invoices.pay", org.id, inv.id)
    assert [k for _, k in events(d, org.id)][-2:] == ["payment.failed", "invoice.uncollectible"]
    failed = d.db.billing_events.find_one({"org_id": ObjectId(org.id), "type": "payment.failed"})
    assert failed is not None and failed["data"]["failure_code"] == "card_declined"
    org2, inv2 = invoice_for(d, "pm_card_threeDSecure2Required")
    with pytest.raises(PaymentRequiresAction):
        d("invoices.pay", org2.id, inv2.id)
    d("invoices.void", org2.id, inv2.id)
    assert [k for _, k in events(d, org2.id)][-2:] == ["payment.requires_action",
                                                        "invoice.voided"]


@pytest.mark.parametrize("point, call", [
    ("invoice.chunk.after_write", "bill"),
    ("invoice.void.after_write", "void"),
    ("payments.settle.after_write", "pay"),
])
def test_a_rolled_back_change_writes_no_event(d: Driver, point: str, call: str) -> None:
    org, inv = (invoice_for(d) if call != "bill" else (None, None))
    if call == "bill":
        org = d("orgs.create", name="A", currency="usd", per_conversation=5, per_started_minute=1)
        seed_conversations(d.db, org.id, 2)
    before = d.db.billing_events.count_documents({})
    with faults.active({point: "raise"}), pytest.raises(InjectedFault):
        if call == "bill":
            d("invoices.create_for_period", org.id, *OCT)
        elif call == "void":
            d("invoices.void", org.id, inv.id)
        else:
            d("invoices.pay", org.id, inv.id)
    assert d.db.billing_events.count_documents({}) == before


def test_poll_pages_after_a_number_and_events_hold_no_secret(d: Driver) -> None:
    org, inv = invoice_for(d)
    d("invoices.pay", org.id, inv.id)
    first = d("events.poll", org.id, after=0, limit=1)
    assert [e.seq for e in first.events] == [1] and first.next_after == 1
    rest = d("events.poll", org.id, after=first.next_after)
    assert [e.seq for e in rest.events] == list(range(2, 2 + len(rest.events)))
    empty = d("events.poll", org.id, after=rest.next_after)
    assert empty.events == [] and empty.next_after == rest.next_after
    text = json.dumps([e.model_dump(mode="json") for e in first.events + rest.events])
    assert "whsec_" not in text and "sk_" not in text and "424242" not in text
    for bad in ({"after": -1}, {"after": "1"}, {"limit": 0}, {"limit": 1001}):
        with pytest.raises(InvalidInput):
            d("events.poll", org.id, **bad)


def test_watch_follows_commits_and_resumes_after_a_token(
    client: MongoClient[Any], db_name: str
) -> None:
    b = Billing(client, database=db_name, gateway=FakeGateway(), clock=Clock(NOW))
    b.setup()
    orgs = [b.orgs.create(name=f"O{i}", currency="usd", per_conversation=5,
                          per_started_minute=1) for i in range(3)]
    stream = b.events.watch()
    seen = []
    for org in orgs:
        seed_conversations(b.database, org.id, 2)
        b.invoices.create_for_period(org.id, *OCT)
    for item in itertools.islice(stream, 3):
        seen.append(item)
    stream.close()
    assert [w.event.type for w in seen] == ["invoice.finalized"] * 3
    assert [w.event.org_id for w in seen] == [o.id for o in orgs]
    # A restart: resume right after the first one.
    again = b.events.watch(resume_after=seen[0].resume_token)
    resumed = list(itertools.islice(again, 2))
    again.close()
    assert [w.event.id for w in resumed] == [w.event.id for w in seen[1:]]


async def test_async_watch_resumes_too(async_client: AsyncMongoClient[Any], db_name: str,
                                       mongo_uri: str) -> None:
    b = AsyncBilling(async_client, database=db_name, clock=Clock(NOW))
    await b.setup()
    org = await b.orgs.create(name="A", currency="usd", per_conversation=5, per_started_minute=1)
    sync_db: MongoClient[Any] = MongoClient(mongo_uri)
    try:
        stream = await b.events.watch(org_id=org.id)
        seed_conversations(sync_db[db_name], org.id, 2)
        await b.invoices.create_for_period(org.id, *OCT)
        seed_conversations(sync_db[db_name], org.id, 2,
                           start=OCT[0] - timedelta(days=31))
        await b.invoices.create_for_period(org.id, OCT[0] - timedelta(days=31), OCT[0])
        got = []
        async for item in stream:
            got.append(item)
            if len(got) == 2:
                break
        await stream.close()
        assert [w.event.seq for w in got] == [1, 2]
        async with await b.events.watch(org_id=org.id,
                                        resume_after=got[0].resume_token) as again:
            async for item in again:
                assert item.event.seq == 2
                break
    finally:
        sync_db.close()


def test_payment_method_changes_are_told(d: Driver) -> None:
    org = d("orgs.create", name="A", currency="usd", per_conversation=5, per_started_minute=1)
    method = d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-1")
    d("payment_methods.detach", org.id, method.id)
    assert events(d, org.id) == [(1, "payment_method.attached"), (2, "payment_method.detached")]
    attached = d.db.billing_events.find_one({"org_id": ObjectId(org.id), "seq": 1})
    assert attached is not None and attached["data"]["payment_method_id"] == method.id
    assert attached["data"]["last4"] == "4242" and "number" not in attached["data"]


def test_a_finding_left_for_a_person_is_told(d: Driver) -> None:
    org = d("orgs.create", name="A", currency="usd", per_conversation=5, per_started_minute=1)
    d.db.conversations.insert_one({"org_id": ObjectId(org.id), "started_at": "yesterday",
                                   "ended_at": OCT[0] + timedelta(days=3), "line_item_id": None})
    report = d("reconciliation.run", apply=True, checks=["malformed"])
    assert [f.result for f in report.findings] == ["reported"]
    assert events(d, org.id) == [(1, "reconciliation.finding")]
    told = d.db.billing_events.find_one({"org_id": ObjectId(org.id)})
    assert told is not None and told["data"]["check"] == "malformed"
    d("reconciliation.run")  # a dry run tells nothing
    assert len(events(d, org.id)) == 1
