"""Races and replays at the issue's figures: 64 racers on one period (32 threads and 32 asyncio
tasks at once), concurrent payers on one invoice, one signed webhook delivered 100 times at once,
two `reconcile --apply` runs at once.

tests/integration/test_races.py, test_payments.py and test_webhooks.py cover the same guarantees
with fewer callers and one kind of caller at a time; here sync and async callers share one
period, payers retry until the invoice is settled, and every test checks the database-wide
invariants (tests/support/invariants.py) afterwards.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe
from bson import ObjectId
from pymongo import AsyncMongoClient, MongoClient, monitoring

from billing import (
    AsyncBilling,
    Billing,
    Invoice,
    InvoiceNotPayable,
    InvoiceStatus,
    PaymentInProgress,
    PaymentStatus,
    StateConflict,
    faults,
)
from billing.adapters.stripe_webhooks import sign
from billing.errors import LeaseNotAcquired
from billing.faults import InjectedFault
from billing.plans.webhooks import WebhookOutcome
from tests.conftest import CLIENT_TIMEOUT_MS
from tests.support import figures
from tests.support.billing_data import OCT, dump, expected_total, seed_conversations
from tests.support.invariants import check_all, unbilled_closed
from tests.support.racing import as_tasks, in_threads

pytestmark = pytest.mark.integration
SEP = (datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC))
THREADS = TASKS = 32
CONVERSATIONS, CHUNK = 120, 10  # 12 chunks: every racer meets a half-built draft
PAYERS = 8
REPLAYS = 100
SECRET = "whsec_concurrency"
JOIN_S = 180


class Transactions(monitoring.CommandListener):
    """Counts transaction attempts, commits and the conflicts the server reported (thread-safe:
    sync threads and the event loop share one instance)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started_txns = self.commits = self.conflicts = self.duplicates = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command.get("startTransaction"):
            with self._lock:
                self.started_txns += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.command_name == "commitTransaction":
            with self._lock:
                self.commits += 1
        # Write errors inside an ok:1 reply (bulkWrite/update) carry the conflict codes too.
        reply = event.reply
        codes = [e.get("code") for e in reply.get("writeErrors", []) or []]
        if (err := reply.get("writeConcernError")) is not None:
            codes.append(err.get("code"))
        self._count(codes)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        failure = event.failure if isinstance(event.failure, dict) else {}
        self._count([failure.get("code")])

    def _count(self, codes: list[Any]) -> None:
        with self._lock:
            self.conflicts += codes.count(112)  # WriteConflict
            self.duplicates += codes.count(11000)  # a lost race on a unique index

    @property
    def retried(self) -> int:
        return self.started_txns - self.commits


# ---- (a) 32 threads and 32 asyncio tasks on one org and period --------------------------------

async def test_64_sync_and_async_racers_on_one_period_make_one_invoice(
    mongo_uri: str, db_name: str
) -> None:
    listener = Transactions()
    shared = MongoClient(mongo_uri, timeoutMS=CLIENT_TIMEOUT_MS, event_listeners=[listener])
    aclient: AsyncMongoClient[Any] = AsyncMongoClient(
        mongo_uri, timeoutMS=CLIENT_TIMEOUT_MS, event_listeners=[listener])
    try:
        # No cap on transactions at once (SecantusDB's default is one per instance): the
        # racers' transactions meet in the engine, as on MongoDB.
        sync_b = Billing(shared, database=db_name, max_docs_per_transaction=CHUNK,
                         transaction_retry_seconds=120, max_concurrent_transactions=0)
        sync_b.setup()
        async_b = AsyncBilling(aclient, database=db_name, max_docs_per_transaction=CHUNK,
                               transaction_retry_seconds=120, max_concurrent_transactions=0)
        org = sync_b.orgs.create(name="A", currency="usd", per_conversation=11,
                                 per_started_minute=3)
        docs = seed_conversations(sync_b.database, org.id, CONVERSATIONS)
        # The threads wait on their barrier in a worker thread while the tasks start.
        by_threads, by_tasks = await asyncio.gather(
            asyncio.to_thread(in_threads, [
                lambda: sync_b.invoices.create_for_period(org.id, *OCT)] * THREADS),
            as_tasks([lambda: async_b.invoices.create_for_period(org.id, *OCT)] * TASKS))
    finally:
        await aclient.close()

    try:
        assert by_threads.errors == [] and by_tasks.errors == []
        results = by_threads.results + by_tasks.results
        assert len(results) == THREADS + TASKS
        assert len({r.id for r in results}) == 1  # every racer got the same invoice
        db = sync_b.database
        assert db.invoices.count_documents({"org_id": ObjectId(org.id)}) == 1
        invoice = sync_b.invoices.get(org.id, results[0].id)
        assert (invoice.status, invoice.number, invoice.conversations) == (
            InvoiceStatus.OPEN, 1, CONVERSATIONS)
        assert invoice.total == expected_total(docs, 11, 3)
        assert all(r.total == invoice.total and r.number == 1 for r in results)
        assert db.conversations.count_documents({"line_item_id": None}) == 0
        check_all(db)  # every conversation on exactly one line item of that invoice
    finally:
        shared.close()
    figures.add("racers run", THREADS + TASKS)
    # Each retry is a write conflict or a lost unique-index race the server reported.
    figures.add("transactions retried under races", listener.retried)
    assert listener.retried <= listener.conflicts + listener.duplicates + THREADS + TASKS


# ---- (b) concurrent pay on one invoice against localstripe ------------------------------------

@pytest.fixture
def pay_billing(client: Any, db_name: str, stripe_gateway: Any) -> Billing:
    b = Billing(client, database=db_name, gateway=stripe_gateway, webhook_secret=SECRET,
                payment_lease_seconds=30, transaction_retry_seconds=60)
    b.setup()
    return b


def open_invoice(b: Billing, n: int = 6) -> tuple[Any, Invoice]:
    org = b.orgs.create(name="Acme", currency="usd", per_conversation=50, per_started_minute=10)
    seed_conversations(b.database, org.id, n)
    return org, b.invoices.create_for_period(org.id, *OCT)


def test_payers_retrying_on_one_invoice_charge_it_once(
    pay_billing: Billing, stripe_client: stripe.StripeClient
) -> None:
    org, inv = open_invoice(pay_billing)
    pay_billing.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")
    in_progress: list[int] = []

    def payer() -> Any:
        # A client that retries PaymentInProgress (retryable) until the invoice is settled.
        deadline, busy = time.monotonic() + 60, 0
        try:
            while True:
                try:
                    return pay_billing.invoices.pay(org.id, inv.id).status
                except PaymentInProgress:
                    busy += 1
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
                except InvoiceNotPayable:
                    return InvoiceNotPayable
        finally:
            in_progress.append(busy)

    raced = in_threads([payer] * PAYERS, timeout=JOIN_S)

    assert raced.errors == []
    outcomes = raced.results
    assert outcomes.count(PaymentStatus.SUCCEEDED) == 1
    assert outcomes.count(InvoiceNotPayable) == PAYERS - 1
    customer = pay_billing.orgs.get(org.id).stripe_customer_id
    assert customer is not None
    charges = stripe_client.v1.charges.list(params={"customer": customer}).data
    assert [(c.amount, c.status) for c in charges] == [(inv.total, "succeeded")]
    paid = pay_billing.invoices.get(org.id, inv.id)
    assert (paid.status, paid.amount_paid, paid.payment_lease) == (
        InvoiceStatus.PAID, inv.total, None)
    assert paid.amount_paid == paid.total
    payments = list(pay_billing.database.payments.find({"invoice_id": ObjectId(inv.id)}))
    assert [p["status"] for p in payments] == ["succeeded"]  # one attempt, never a second
    check_all(pay_billing.database)
    figures.add("racers run", PAYERS)
    figures.add("pay calls refused while in progress", sum(in_progress))


class PausedConfirm:
    """The StripeGateway, except that confirm_intent waits until released: a pay() caught
    between taking the invoice's lease and moving the money."""

    def __init__(self, gateway: Any) -> None:
        self._gateway = gateway
        self.entered, self.release = threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gateway, name)

    def confirm_intent(self, intent_id: str, *, idempotency_key: str) -> Any:
        self.entered.set()
        self.release.wait(30)
        return self._gateway.confirm_intent(intent_id, idempotency_key=idempotency_key)


def test_void_racing_a_payment_never_leaves_money_on_a_void_invoice(
    client: Any, db_name: str, stripe_gateway: Any, stripe_client: stripe.StripeClient
) -> None:
    paused = PausedConfirm(stripe_gateway)
    b = Billing(client, database=db_name, gateway=paused, payment_lease_seconds=30,
                transaction_retry_seconds=60)
    b.setup()
    org, inv = open_invoice(b)
    b.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")
    outcome: dict[str, Any] = {}

    def payer() -> None:
        try:
            outcome["pay"] = b.invoices.pay(org.id, inv.id).status
        except BaseException as exc:  # noqa: BLE001 - asserted below
            outcome["pay"] = exc

    racer = threading.Thread(target=payer)
    racer.start()
    assert paused.entered.wait(30), "pay() never reached Stripe"
    try:
        outcome["void"] = b.invoices.void(org.id, inv.id).status
    except (StateConflict, PaymentInProgress) as exc:  # refused while a payment is in flight
        outcome["void"] = exc
    finally:
        paused.release.set()
        racer.join(JOIN_S)

    customer = b.orgs.get(org.id).stripe_customer_id
    charges = stripe_client.v1.charges.list(params={"customer": customer}).data
    moved = [c.amount for c in charges if c.status == "succeeded"]
    final = b.invoices.get(org.id, inv.id)
    figures.add("racers run", 2)
    assert not (final.status is InvoiceStatus.VOID and moved), (
        f"charged {moved} for a void invoice ({outcome})")
    check_all(b.database)


# ---- (c) one signed webhook event delivered 100 times at once ---------------------------------

def processing_payment(b: Billing) -> tuple[Any, Invoice, dict[str, Any]]:
    """A payment confirmed in Stripe whose pay() died before recording it: only the
    payment_intent.succeeded webhook can settle it."""
    org, inv = open_invoice(b, 4)
    b.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")
    with faults.active({"payments.after_confirm": "raise"}), pytest.raises(InjectedFault):
        b.invoices.pay(org.id, inv.id)
    payment = b.database.payments.find_one({"invoice_id": ObjectId(inv.id)})
    assert payment is not None and payment["status"] == "confirming" and payment["intent_id"]
    return org, inv, payment


def test_one_event_delivered_100_times_at_once_has_one_effect(
    pay_billing: Billing, stripe_client: stripe.StripeClient
) -> None:
    org, inv, payment = processing_payment(pay_billing)
    payload = json.dumps({
        "id": f"evt_{ObjectId()}", "object": "event", "type": "payment_intent.succeeded",
        "created": int(time.time()), "livemode": False,
        "data": {"object": {
            "id": payment["intent_id"], "object": "payment_intent", "status": "succeeded",
            "amount": payment["amount"], "currency": payment["currency"],
            "metadata": {"org_id": org.id, "invoice_id": inv.id,
                         "payment_id": str(payment["_id"])}}}}).encode()
    header = sign(payload, secret=SECRET)
    before = pay_billing.invoices.get(org.id, inv.id)

    raced = in_threads([lambda: pay_billing.webhooks.handle(payload, header)] * REPLAYS,
                       timeout=JOIN_S)

    results = raced.results
    assert raced.errors == [] and len(results) == REPLAYS
    outcomes = [r.outcome for r in results]
    assert outcomes.count(WebhookOutcome.PROCESSED) == 1, outcomes
    assert outcomes.count(WebhookOutcome.DUPLICATE) == REPLAYS - 1
    assert {r.http_status for r in results} == {200}
    db = pay_billing.database
    assert db.webhook_events.count_documents({}) == 1
    assert db.webhook_log.count_documents({}) == 0  # no delivery failed and was audited
    paid = pay_billing.invoices.get(org.id, inv.id)
    assert (paid.status, paid.amount_paid) == (InvoiceStatus.PAID, paid.total)
    assert paid.version == before.version + 1  # the invoice changed exactly once
    stored = db.payments.find_one({"_id": payment["_id"]})
    assert stored is not None and stored["status"] == "succeeded"
    customer = pay_billing.orgs.get(org.id).stripe_customer_id
    charges = stripe_client.v1.charges.list(params={"customer": customer}).data
    assert [c.amount for c in charges if c.status == "succeeded"] == [inv.total]
    settled = dump(db)
    assert pay_billing.webhooks.handle(payload, sign(payload, secret=SECRET)).outcome is \
        WebhookOutcome.DUPLICATE
    assert dump(db) == settled
    check_all(db)
    figures.add("webhook replays", REPLAYS)
    figures.add("racers run", REPLAYS)


# ---- (d) two reconcile --apply runs at once ---------------------------------------------------

ROUNDS = 3
ORGS_PER_ROUND = 4


def test_two_reconcile_apply_runs_at_once_do_nothing_twice(client: Any, db_name: str) -> None:
    b = Billing(client, database=db_name, transaction_retry_seconds=60)
    b.setup()
    db = b.database
    refused = ran = 0
    for round_no in range(ROUNDS):
        # Fresh damage each round: September never invoiced, October late arrivals.
        orgs = []
        for i in range(ORGS_PER_ROUND):
            org = b.orgs.create(name=f"r{round_no}-{i}", currency="usd", per_conversation=50,
                                per_started_minute=10)
            seed_conversations(db, org.id, 3)
            b.invoices.create_for_period(org.id, *OCT)
            seed_conversations(db, org.id, 2, start=OCT[0] + timedelta(days=5))
            seed_conversations(db, org.id, 4, start=SEP[0])
            orgs.append(org)
        raced = in_threads([lambda: b.reconciliation.run(apply=True)] * 2, timeout=JOIN_S)

        reports = raced.results
        refusals = [e for e in raced.errors if isinstance(e, LeaseNotAcquired)]
        assert raced.errors_except(LeaseNotAcquired) == []
        assert len(reports) + len(refusals) == 2
        assert reports, "both runs were refused: the lease was never taken"
        assert all(r.clean for r in reports), [f.as_json() for r in reports
                                                for f in r.outstanding]
        refused, ran = refused + len(refusals), ran + len(reports)
        for org in orgs:
            invoices = list(db.invoices.find({"org_id": ObjectId(org.id)}).sort(
                [("period_start", 1), ("supplement", 1)]))
            # Nothing twice: one September invoice and one October supplement, per org.
            assert [(i["period_start"].month, i["supplement"], i["conversations"])
                    for i in invoices] == [(9, 0, 4), (10, 0, 3), (10, 1, 2)], org.name
        assert unbilled_closed(db, OCT[1]) == []
        assert db.reconciliation_leases.count_documents({}) == 0  # released
        assert db.reconciliation_runs.count_documents({"status": "finished"}) == ran
        check_all(db)
    figures.add("racers run", 2 * ROUNDS)
    figures.add("reconcile runs refused by the lease", refused, of=2 * ROUNDS)
