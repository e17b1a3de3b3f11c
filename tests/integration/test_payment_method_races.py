"""Payment methods and Stripe customers under races, lost answers and webhooks (SecantusDB and
the in-memory FakeGateway, sync and async; localstripe where it can show it).

Each test asserts on documents and on Stripe's state (the fake's `customers` and `methods`),
then on the invariant of tests/support/invariants.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
import stripe
from bson import ObjectId
from pymongo.errors import DuplicateKeyError

from billing import (
    AsyncBilling,
    Billing,
    ConfigurationError,
    InvalidTransition,
    PaymentError,
    PaymentProviderUnavailable,
    WebhookOutcome,
)
from billing.adapters.stripe_webhooks import sign
from billing.domain.payments import CardMethod
from billing.gateways import AsyncFakeGateway, FakeGateway
from billing.reconcile_findings import in_shard
from tests.support.invariants import attached_to, check_methods, check_settled, customers_of
from tests.support.racing import as_tasks, in_threads
from tests.support.stripe import VISA, card

pytestmark = pytest.mark.integration
SECRET = "whsec_method_races"
ROUNDS = 10


def new_billing(client: Any, db_name: str, gateway: Any) -> Billing:
    b = Billing(client, database=db_name, gateway=gateway, webhook_secret=SECRET,
                transaction_retry_seconds=60, payment_lease_seconds=30)
    b.setup()
    return b


async def new_abilling(async_client: Any, db_name: str, gateway: Any) -> AsyncBilling:
    b = AsyncBilling(async_client, database=db_name, gateway=gateway, webhook_secret=SECRET,
                     transaction_retry_seconds=60, payment_lease_seconds=30)
    await b.setup()
    return b


def new_org(b: Billing, name: str = "Acme") -> str:
    return b.orgs.create(name=name, currency="usd", per_conversation=50,
                         per_started_minute=10).id


def customer_deleted_event(customer: str) -> bytes:
    return json.dumps({"id": f"evt_{ObjectId()}", "object": "event", "type": "customer.deleted",
                       "created": int(time.time()), "livemode": False,
                       "data": {"object": {"id": customer, "object": "customer"}}}).encode()


def delete_in_stripe(gateway: FakeGateway | AsyncFakeGateway, customer: str) -> None:
    """What deleting a customer in Stripe's dashboard does: gone, its cards detached."""
    gateway.customers.pop(customer, None)
    for method in list(gateway.methods.values()):
        if method.customer_id == customer:
            gateway.methods[method.id] = replace(method, customer_id=None)


def org_doc(b: Billing | AsyncBilling, org_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = b.database.client[b.database.name].orgs.find_one(
        {"_id": ObjectId(org_id)})
    return doc


# ---- 1. attach racing customer.deleted -------------------------------------------------------

class DeletedDuringAttach(FakeGateway):
    """Stripe attaches the card, then the customer is deleted and its event processed before
    the attach's answer reaches billing."""

    webhook: Callable[[bytes], Any] | None = None

    def attach(self, *, payment_method: str, customer_id: str,
               idempotency_key: str) -> CardMethod:
        attached = super().attach(payment_method=payment_method, customer_id=customer_id,
                                  idempotency_key=idempotency_key)
        if self.webhook is not None:
            delete_in_stripe(self, customer_id)
            result = self.webhook(customer_deleted_event(customer_id))
            assert result.outcome is WebhookOutcome.PROCESSED, result
            self.webhook = None
        return attached


class AsyncDeletedDuringAttach(AsyncFakeGateway):
    webhook: Callable[[bytes], Any] | None = None

    async def attach(self, *, payment_method: str, customer_id: str,
                     idempotency_key: str) -> CardMethod:
        attached = await super().attach(payment_method=payment_method, customer_id=customer_id,
                                        idempotency_key=idempotency_key)
        if self.webhook is not None:
            delete_in_stripe(self, customer_id)
            result = await self.webhook(customer_deleted_event(customer_id))
            assert result.outcome is WebhookOutcome.PROCESSED, result
            self.webhook = None
        return attached


def test_customer_deleted_while_attaching_leaves_no_default_on_nothing(
    client: Any, db_name: str
) -> None:
    gateway = DeletedDuringAttach()
    b = new_billing(client, db_name, gateway)
    org = new_org(b)
    b.payment_methods.attach(org, gateway.create_card(VISA), request_id="r-1")
    gateway.webhook = lambda payload: b.webhooks.handle(payload, sign(payload, secret=SECRET))

    with pytest.raises(PaymentError, match="no longer the org's"):
        b.payment_methods.attach(org, gateway.create_card(VISA), request_id="r-2",
                                 make_default=True)

    stored = org_doc(b, org)
    assert stored["stripe_customer_id"] is None and stored["default_payment_method_id"] is None
    statuses = {d["request_id"]: d["status"] for d in b.database.payment_methods.find()}
    assert statuses == {"r-1": "detached", "r-2": "failed"}
    check_methods(b.database, gateway)
    assert b.reconciliation.run(stale_after=timedelta(0)).clean
    # The next attach makes a new customer and uses it.
    again = b.payment_methods.attach(org, gateway.create_card(VISA), request_id="r-3")
    stored = org_doc(b, org)
    assert stored["default_payment_method_id"] == again.id
    assert attached_to(gateway, stored["stripe_customer_id"]) == {again.stripe_id}
    check_settled(b.database, gateway)


async def test_async_customer_deleted_while_attaching_leaves_no_default_on_nothing(
    async_client: Any, client: Any, db_name: str
) -> None:
    gateway = AsyncDeletedDuringAttach()
    b = await new_abilling(async_client, db_name, gateway)
    org = (await b.orgs.create(name="A", currency="usd", per_conversation=5,
                               per_started_minute=1)).id
    await b.payment_methods.attach(org, gateway.create_card(VISA), request_id="r-1")

    async def deliver(payload: bytes) -> Any:
        return await b.webhooks.handle(payload, sign(payload, secret=SECRET))

    gateway.webhook = deliver
    with pytest.raises(PaymentError, match="no longer the org's"):
        await b.payment_methods.attach(org, gateway.create_card(VISA), request_id="r-2")
    view = client[db_name]
    stored = view.orgs.find_one({"_id": ObjectId(org)})
    assert stored["stripe_customer_id"] is None and stored["default_payment_method_id"] is None
    assert view.payment_methods.count_documents({"status": "active"}) == 0
    check_methods(view, gateway)  # type: ignore[arg-type]


# ---- 2. attach cancelled after its commit ----------------------------------------------------

async def test_attach_timed_out_after_its_commit_stays_active_in_both_places(
    async_client: Any, client: Any, db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = AsyncFakeGateway()
    b = await new_abilling(async_client, db_name, gateway)
    org = (await b.orgs.create(name="A", currency="usd", per_conversation=5,
                               per_started_minute=1)).id
    uow = b._uow
    real_run = uow.run

    async def slow_after_activation(work: Any) -> Any:
        result = await real_run(work)
        if getattr(work, "__name__", "") == "activate":
            await asyncio.sleep(30)  # the caller's timeout fires here, after the commit
        return result

    monkeypatch.setattr(uow, "run", slow_after_activation)
    source = gateway.create_card(VISA)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(b.payment_methods.attach(org, source, request_id="r-1"), 2)
    monkeypatch.undo()

    view = client[db_name]
    doc = view.payment_methods.find_one({"request_id": "r-1"})
    assert doc is not None and doc["status"] == "active"
    stored = view.orgs.find_one({"_id": ObjectId(org)})
    assert stored["default_payment_method_id"] == str(doc["_id"])
    assert gateway.methods[source].customer_id == stored["stripe_customer_id"]  # not undone
    again = await b.payment_methods.attach(org, source, request_id="r-1")
    assert again.id == str(doc["_id"]) and again.status.value == "active"
    check_settled(view, gateway)  # type: ignore[arg-type]


def test_attach_failing_after_its_commit_stays_active_in_both_places(
    client: Any, db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = FakeGateway()
    b = new_billing(client, db_name, gateway)
    org = new_org(b)
    real_run = b._uow.run

    def fail_after_activation(work: Any) -> Any:
        result = real_run(work)
        if getattr(work, "__name__", "") == "activate":
            raise KeyboardInterrupt  # interrupted after the commit, before returning
        return result

    monkeypatch.setattr(b._uow, "run", fail_after_activation)
    source = gateway.create_card(VISA)
    with pytest.raises(KeyboardInterrupt):
        b.payment_methods.attach(org, source, request_id="r-1")
    monkeypatch.undo()
    doc = b.database.payment_methods.find_one({"request_id": "r-1"})
    assert doc is not None and doc["status"] == "active"
    assert gateway.methods[source].customer_id == org_doc(b, org)["stripe_customer_id"]
    check_settled(b.database, gateway)


# ---- 3. set_default racing detach -------------------------------------------------------------

def test_set_default_racing_detach_never_leaves_a_default_on_a_detached_method(
    client: Any, db_name: str
) -> None:
    gateway = FakeGateway()
    b = new_billing(client, db_name, gateway)
    for round_ in range(ROUNDS):
        org = new_org(b, f"org {round_}")
        b.payment_methods.attach(org, gateway.create_card(VISA), request_id="r-1")
        second = b.payment_methods.attach(org, gateway.create_card(VISA), request_id="r-2")
        raced = in_threads([partial(b.payment_methods.set_default, org, second.id),
                            partial(b.payment_methods.detach, org, second.id)], timeout=120)
        assert raced.errors_except(InvalidTransition) == [], raced.errors
        stored = org_doc(b, org)
        assert stored["default_payment_method_id"] != second.id, round_
        assert b.database.payment_methods.find_one(
            {"_id": ObjectId(second.id)})["status"] == "detached"
        check_methods(b.database, gateway)
    check_settled(b.database, gateway)


async def test_async_set_default_racing_detach_never_leaves_a_default_on_a_detached_method(
    async_client: Any, client: Any, db_name: str
) -> None:
    gateway = AsyncFakeGateway()
    b = await new_abilling(async_client, db_name, gateway)
    view = client[db_name]
    for round_ in range(ROUNDS):
        org = (await b.orgs.create(name=f"org {round_}", currency="usd", per_conversation=5,
                                   per_started_minute=1)).id
        await b.payment_methods.attach(org, gateway.create_card(VISA), request_id="r-1")
        second = await b.payment_methods.attach(org, gateway.create_card(VISA),
                                                request_id="r-2")
        raced = await as_tasks([partial(b.payment_methods.set_default, org, second.id),
                                partial(b.payment_methods.detach, org, second.id)])
        assert raced.errors_except(InvalidTransition) == [], raced.errors
        stored = view.orgs.find_one({"_id": ObjectId(org)})
        assert stored["default_payment_method_id"] != second.id, round_
    check_settled(view, gateway)  # type: ignore[arg-type]


# ---- 4. adopted twice ------------------------------------------------------------------------

def test_overlapping_reconcile_shards_adopt_a_card_once(client: Any, db_name: str) -> None:
    gateway = FakeGateway()
    b = new_billing(client, db_name, gateway)
    for round_ in range(ROUNDS // 2):
        org = new_org(b, f"org {round_}")
        b.payment_methods.attach(org, gateway.create_card(VISA), request_id="r-1")
        customer = org_doc(b, org)["stripe_customer_id"]
        stray = gateway.create_card(VISA)  # attached in Stripe's dashboard, unknown here
        gateway.methods[stray] = replace(gateway.methods[stray], customer_id=customer)
        half = (0, 2) if in_shard(org, (0, 2)) else (1, 2)
        raced = in_threads([partial(b.reconciliation.run, apply=True, shard=shard)
                            for shard in ((0, 1), half)], timeout=120)
        assert raced.errors == []
        adopted = list(b.database.payment_methods.find({"stripe_id": stray}))
        assert [d["status"] for d in adopted] == ["active"], adopted
    check_settled(b.database, gateway)


def test_the_database_refuses_two_live_records_of_one_card(client: Any, db_name: str) -> None:
    b = new_billing(client, db_name, FakeGateway())
    org = ObjectId(new_org(b))
    base = {"org_id": org, "stripe_id": "pm_x", "source": "pm_x",
            "created_at": datetime.now(UTC)}
    b.database.payment_methods.insert_one({**base, "request_id": "a", "status": "active"})
    b.database.payment_methods.insert_one({**base, "request_id": "old", "status": "detached"})
    for status in ("active", "detaching"):
        with pytest.raises(DuplicateKeyError):
            b.database.payment_methods.insert_one({**base, "request_id": f"b-{status}",
                                                   "status": status})
    b.setup()  # idempotent on the existing database


def test_setup_over_duplicate_live_records_is_a_configuration_error(
    client: Any, db_name: str
) -> None:
    b = new_billing(client, db_name, FakeGateway())
    org = ObjectId(new_org(b))
    b.database.payment_methods.drop_index("live_stripe_id")  # a database from before the index
    base = {"org_id": org, "stripe_id": "pm_x", "source": "pm_x", "status": "active",
            "created_at": datetime.now(UTC)}
    b.database.payment_methods.insert_many([{**base, "request_id": "a"},
                                            {**base, "request_id": "b"}])
    with pytest.raises(ConfigurationError, match="two live records of one Stripe method"):
        b.setup()
    b.database.payment_methods.update_one({"request_id": "b"},
                                          {"$set": {"status": "detached"}})
    b.setup()
    assert "live_stripe_id" in b.database.payment_methods.index_information()


# ---- 5. customer re-created after deletion ----------------------------------------------------

def test_after_customer_deleted_the_next_attach_makes_a_new_customer(
    client: Any, db_name: str
) -> None:
    gateway = FakeGateway(replay_customer_keys=True)  # Stripe replays keys for 24 hours
    b = new_billing(client, db_name, gateway)
    org = new_org(b)
    b.payment_methods.attach(org, gateway.create_card(VISA), request_id="r-1")
    first = org_doc(b, org)["stripe_customer_id"]
    delete_in_stripe(gateway, first)
    payload = customer_deleted_event(first)
    assert b.webhooks.handle(payload, sign(payload, secret=SECRET)).outcome is \
        WebhookOutcome.PROCESSED

    method = b.payment_methods.attach(org, gateway.create_card(VISA), request_id="r-2")
    second = org_doc(b, org)["stripe_customer_id"]
    assert second != first and second in gateway.customers
    assert attached_to(gateway, second) == {method.stripe_id}
    assert org_doc(b, org)["default_payment_method_id"] == method.id
    check_settled(b.database, gateway)


# ---- 6. one Stripe customer per org ----------------------------------------------------------

def test_two_concurrent_first_attaches_make_one_customer(client: Any, db_name: str) -> None:
    gateway = FakeGateway(replay_customer_keys=False)  # as localstripe: keys ignored
    b = new_billing(client, db_name, gateway)
    for round_ in range(ROUNDS // 2):
        org = new_org(b, f"org {round_}")
        raced = in_threads([partial(b.payment_methods.attach, org, gateway.create_card(VISA),
                                    request_id=request) for request in ("r-1", "r-2")],
                           timeout=120)
        assert raced.errors == []
        assert customers_of(gateway, org) == [org_doc(b, org)["stripe_customer_id"]]
    check_settled(b.database, gateway)


async def test_eight_gathered_attaches_with_one_request_id_make_one_customer_and_method(
    async_client: Any, client: Any, db_name: str
) -> None:
    gateway = AsyncFakeGateway(replay_customer_keys=False)
    b = await new_abilling(async_client, db_name, gateway)
    org = (await b.orgs.create(name="A", currency="usd", per_conversation=5,
                               per_started_minute=1)).id
    source = gateway.create_card(VISA)
    raced = await as_tasks([lambda: b.payment_methods.attach(org, source, request_id="r-1")] * 8)
    assert raced.errors == []
    results = raced.results
    view = client[db_name]
    stored = view.orgs.find_one({"_id": ObjectId(org)})
    assert customers_of(gateway, org) == [stored["stripe_customer_id"]]  # type: ignore[arg-type]
    assert {r.id for r in results} == {stored["default_payment_method_id"]}
    assert view.payment_methods.count_documents({}) == 1
    check_settled(view, gateway)  # type: ignore[arg-type]


def test_a_lost_create_customer_answer_is_found_not_made_again(
    client: Any, db_name: str
) -> None:
    gateway = FakeGateway(replay_customer_keys=False)
    b = new_billing(client, db_name, gateway)
    org = new_org(b)
    source = gateway.create_card(VISA)
    gateway.fail_next("create_customer", PaymentProviderUnavailable("connection reset"),
                      after=True)
    with pytest.raises(PaymentProviderUnavailable):
        b.payment_methods.attach(org, source, request_id="r-1")
    assert len(customers_of(gateway, org)) == 1 and org_doc(b, org)["stripe_customer_id"] is None

    method = b.payment_methods.attach(org, source, request_id="r-1")  # the caller retries
    assert customers_of(gateway, org) == [org_doc(b, org)["stripe_customer_id"]]
    assert method.status.value == "active"
    check_settled(b.database, gateway)


def test_reconciliation_deletes_only_empty_extra_customers_billing_made_for_the_org(
    client: Any, db_name: str
) -> None:
    gateway = FakeGateway(replay_customer_keys=False)
    b = new_billing(client, db_name, gateway)
    org, other = new_org(b), new_org(b, "Other")
    source = gateway.create_card(VISA)
    gateway.fail_next("create_customer", PaymentProviderUnavailable("reset"), after=True)
    with pytest.raises(PaymentProviderUnavailable):
        b.payment_methods.attach(org, source, request_id="r-1")
    b.payment_methods.attach(org, source, request_id="r-1")  # takes the creation over
    assert org_doc(b, org)["customer_audit"] is not None
    current = org_doc(b, org)["stripe_customer_id"]
    # Customers made for the org around then by callers that lost the race.
    empty = gateway.create_customer(org_id=org, name="A", idempotency_key="old-1")
    with_card = gateway.create_customer(org_id=org, name="A", idempotency_key="old-2")
    kept_card = gateway.create_card(VISA)
    gateway.methods[kept_card] = replace(gateway.methods[kept_card], customer_id=with_card)
    not_ours = gateway.create_customer(org_id=other, name="B", idempotency_key="other")
    gateway.customers[not_ours]["org_id"] = "someone else"

    dry = b.reconciliation.run(checks=["payment_method"])
    found = {f.ids[0] for f in dry.findings if f.ids and f.ids[0].startswith("cus_")}
    assert found == {empty, with_card}
    assert all("irreversible" in f.action or "person" in f.action for f in dry.findings
               if f.ids and f.ids[0].startswith("cus_"))
    report = b.reconciliation.run(apply=True, checks=["payment_method"])
    results = {f.ids[0]: f.result for f in report.findings if f.ids}
    assert results[empty] == "repaired" and results[with_card] == "reported"
    assert empty not in gateway.customers
    assert {current, with_card, not_ours} <= gateway.customers.keys()
    assert gateway.methods[kept_card].customer_id == with_card


# ---- reconciliation of orgs whose customer is gone -------------------------------------------

def test_reconciliation_detaches_methods_of_an_org_without_a_customer(
    client: Any, db_name: str
) -> None:
    gateway = FakeGateway()
    b = new_billing(client, db_name, gateway)
    org = new_org(b)
    method = b.payment_methods.attach(org, gateway.create_card(VISA), request_id="r-1")
    # What the old attach race left: no customer, an active default attached to nothing.
    customer = org_doc(b, org)["stripe_customer_id"]
    delete_in_stripe(gateway, customer)
    b.database.orgs.update_one({"_id": ObjectId(org)}, {"$set": {"stripe_customer_id": None}})

    dry = b.reconciliation.run(checks=["payment_method"], stale_after=timedelta(0))
    assert {f.repair_kind for f in dry.findings} == {"gone"}
    b.reconciliation.run(apply=True, checks=["payment_method"])
    doc = b.database.payment_methods.find_one({"_id": ObjectId(method.id)})
    assert doc["status"] == "detached"
    assert org_doc(b, org)["default_payment_method_id"] is None
    assert b.reconciliation.run(checks=["payment_method"]).clean


# ---- localstripe -----------------------------------------------------------------------------

def test_concurrent_first_attaches_make_one_customer_on_localstripe(
    client: Any, db_name: str, stripe_client: stripe.StripeClient, stripe_gateway: Any
) -> None:
    b = new_billing(client, db_name, stripe_gateway)
    org = new_org(b)
    sources = [card(stripe_client, VISA) for _ in range(4)]
    raced = in_threads([partial(b.payment_methods.attach, org, source, request_id=f"r-{i}")
                        for i, source in enumerate(sources)], timeout=120)
    assert raced.errors == []
    made = [c.id for c in stripe_client.v1.customers.list(params={"limit": 100})
            .auto_paging_iter() if c.metadata and c.metadata.to_dict().get("org_id") == org]
    customer = org_doc(b, org)["stripe_customer_id"]
    assert made == [customer]
    listed = stripe_client.v1.payment_methods.list(params={"customer": customer, "type": "card"})
    assert {m.id for m in listed.data} == set(sources)


def test_reconciliation_forgets_a_customer_deleted_in_stripe_whose_event_was_lost(
    client: Any, db_name: str
) -> None:
    gateway = FakeGateway(replay_customer_keys=True)
    b = new_billing(client, db_name, gateway)
    org = new_org(b)
    method = b.payment_methods.attach(org, gateway.create_card(VISA), request_id="r-1")
    dead = org_doc(b, org)["stripe_customer_id"]
    delete_in_stripe(gateway, dead)  # no customer.deleted reaches billing

    dry = b.reconciliation.run(checks=["payment_method"])
    assert [f.repair_kind for f in dry.findings] == ["customer_gone"]
    b.reconciliation.run(apply=True, checks=["payment_method"])
    stored = org_doc(b, org)
    assert stored["stripe_customer_id"] is None and stored["default_payment_method_id"] is None
    assert b.database.payment_methods.find_one(
        {"_id": ObjectId(method.id)})["status"] == "detached"
    again = b.payment_methods.attach(org, gateway.create_card(VISA), request_id="r-2")
    assert org_doc(b, org)["stripe_customer_id"] not in (None, dead)
    assert again.status.value == "active"
    check_settled(b.database, gateway)


def test_customer_deleted_concurrently_with_the_activation_transaction(
    client: Any, db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The webhook runs while the activation's transaction is open (and has not set a new
    default, so without a write on the org the two would write disjoint documents)."""
    gateway = FakeGateway()
    b = new_billing(client, db_name, gateway)
    org = new_org(b)
    b.payment_methods.attach(org, gateway.create_card(VISA), request_id="r-1")
    customer = org_doc(b, org)["stripe_customer_id"]
    webhook: list[threading.Thread] = []

    def during_activation(name: str) -> None:
        if name == "payment_methods.attach.after_write" and not webhook:
            delete_in_stripe(gateway, customer)
            payload = customer_deleted_event(customer)
            webhook.append(threading.Thread(target=b.webhooks.handle,
                                            args=(payload, sign(payload, secret=SECRET))))
            webhook[0].start()
            webhook[0].join(timeout=1.5)  # it commits now unless it conflicts with us

    monkeypatch.setattr("billing._sync.payment_methods.faults.hit", during_activation)
    b.payment_methods.attach(org, gateway.create_card(VISA), request_id="r-2")
    webhook[0].join(timeout=60)
    monkeypatch.undo()

    stored = org_doc(b, org)
    assert stored["stripe_customer_id"] is None and stored["default_payment_method_id"] is None
    assert b.database.payment_methods.count_documents({"status": "active"}) == 0
    check_methods(b.database, gateway)
