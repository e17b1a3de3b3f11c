"""Crashes and server faults: a process killed at every fault point, a database server killed in
the middle of a bounded run, a transaction outliving the server's transaction lifetime.

Each fault point of `billing.faults.POINTS` has a scenario: the operation that reaches it runs
in a child process (tests/support/crash.py) that dies by SIGKILL there (return code -9 proves
it got there), then the same operation is repeated and/or reconciliation runs, and the
invariants are checked on the database and on localstripe: conversations of closed months billed
exactly once, totals equal to their line items, defaults pointing at active methods, Stripe's
attached methods active here, at most one charge per invoice.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import stripe
from bson import ObjectId
from pymongo import MongoClient, monitoring

from billing import Billing, InvoiceStatus
from billing.adapters.stripe_webhooks import sign
from billing.domain.models import PaymentMethodStatus, PaymentStatus
from billing.errors import BillingError, LeaseNotAcquired
from billing.faults import POINTS
from billing.plans.webhooks import WebhookOutcome
from tests.support import figures
from tests.support.billing_data import OCT, dump, expected_total, seed_conversations
from tests.support.crash import KILLED, ServerProcess, run_child
from tests.support.invariants import (
    attached_in_stripe,
    check_charged_once,
    check_closed_months_billed,
    check_methods_match_stripe,
    check_totals_and_links,
)
from tests.support.mongo import secantus_server
from tests.support.stripe import VISA, card

pytestmark = pytest.mark.integration
SECRET = "whsec_crash_tests"
PER_CONV, PER_MIN = 50, 10
PRICES = {"per_conversation": PER_CONV, "per_started_minute": PER_MIN}
SHORT_LEASE = 1.0  # seconds: the lease a killed child holds (payments, reconciliation)


@dataclass
class Crash:
    """What a scenario needs: the parent's Billing and Stripe client, and how to start a child."""

    b: Billing
    sc: stripe.StripeClient
    uri: str
    database: str
    stripe_url: str

    def crash(self, point: str, op: str, *, options: dict[str, Any] | None = None,
              **args: Any) -> None:
        proc = run_child(point, op, uri=self.uri, database=self.database,
                         stripe_url=self.stripe_url, args=args, options=options)
        assert proc.returncode == KILLED, (
            f"{point}: the child was not killed there (exit {proc.returncode})\n"
            f"{proc.stderr[-3000:]}")

    def org(self, name: str = "Acme", conversations: int = 0) -> Any:
        org = self.b.orgs.create(name=name, currency="usd", **PRICES)
        if conversations:
            seed_conversations(self.b.database, org.id, conversations)
        return org

    def card(self) -> str:
        """A new card PaymentMethod in localstripe, not attached to anyone yet."""
        return card(self.sc, VISA)

    def reconcile(self) -> Any:
        """apply=True, stale_after=0; waits out the lease of a killed run (it is short)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                return self.b.reconciliation.run(apply=True, stale_after=timedelta(0))
            except LeaseNotAcquired:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.25)

    def paying_org(self, conversations: int = 5) -> tuple[Any, Any, Any]:
        org = self.org(conversations=conversations)
        inv = self.b.invoices.create_for_period(org.id, *OCT)
        method = self.b.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")
        return org, inv, method

    def pay_after_lease(self, org: Any, inv: Any) -> Any:
        """Retry pay() as a second process would: PaymentInProgress until the lease expires."""
        deadline = time.monotonic() + 30
        while True:
            try:
                return self.b.invoices.pay(org.id, inv.id)
            except BillingError as exc:
                if not exc.retryable or time.monotonic() > deadline:
                    raise
                time.sleep(0.25)

    def all_invariants(self) -> None:
        """After a final reconciliation: nothing outstanding, every invariant holds."""
        report = self.reconcile()
        assert not report.outstanding, report.as_json()
        check_closed_months_billed(self.b.database)
        check_methods_match_stripe(self.b, self.sc)
        check_charged_once(self.b, self.sc)
        assert self.b.reconciliation.run(stale_after=timedelta(0)).clean


@pytest.fixture(scope="module")
def secantus_mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This module's own SecantusDB: a killed child leaves its transaction open, and other
    writers wait for the server to expire it; 1 s instead of the suite's 5 s."""
    with secantus_server(tmp_path_factory.mktemp("secantus-crashes"),
                         transaction_lifetime_seconds=1) as uri:
        yield uri


@pytest.fixture
def crash(client: Any, db_name: str, mongo_uri: str, stripe_url: str,
          stripe_client: stripe.StripeClient, stripe_gateway: Any) -> Crash:
    b = Billing(client, database=db_name, gateway=stripe_gateway, webhook_secret=SECRET,
                transaction_retry_seconds=60, payment_lease_seconds=SHORT_LEASE)
    b.setup()
    return Crash(b, stripe_client, mongo_uri, db_name, stripe_url)


def oid(value: Any) -> ObjectId:
    return ObjectId(str(value))


# ---- one scenario per fault point ----------------------------------------------------------------

BOUNDED = {"max_docs_per_transaction": 5}


def invoice_run(recover: str) -> Callable[[Crash, str], None]:
    """A bounded run of 12 conversations (3 chunks) killed at `point`; recovered by repeating the
    call or by reconciliation; one open invoice with all 12 either way."""
    def scenario(t: Crash, point: str) -> None:
        org = t.org()
        docs = seed_conversations(t.b.database, org.id, 12)
        t.crash(point, "create_for_period", org=org.id, options=BOUNDED)
        for inv in t.b.database.invoices.find({"org_id": oid(org.id)}):
            assert inv["status"] == "draft" and not inv["complete"]  # never opened half-billed
        check_totals_and_links(t.b.database)
        if recover == "repeat":
            t.b.invoices.create_for_period(org.id, *OCT)
        else:
            t.reconcile()
        (inv,) = t.b.database.invoices.find({"org_id": oid(org.id)})
        assert inv["status"] == "open" and inv["number"] == 1 and inv["conversations"] == 12
        assert inv["total"] == expected_total(docs, PER_CONV, PER_MIN)
    return scenario


def finalize(t: Crash, point: str) -> None:
    org = t.org(conversations=6)
    draft = t.b.invoices.create_for_period(org.id, *OCT, finalize=False)
    t.crash(point, "finalize", org=org.id, invoice=draft.id)
    assert t.b.invoices.get(org.id, draft.id).status is InvoiceStatus.DRAFT
    opened = t.b.invoices.finalize(org.id, draft.id)
    assert opened.status is InvoiceStatus.OPEN and opened.number == 1
    assert t.b.database.orgs.find_one({"_id": oid(org.id)})["invoice_seq"] == 1


def void(t: Crash, point: str) -> None:
    org = t.org(conversations=6)
    inv = t.b.invoices.create_for_period(org.id, *OCT)
    t.crash(point, "void", org=org.id, invoice=inv.id)
    assert t.b.invoices.get(org.id, inv.id).status is InvoiceStatus.OPEN
    assert t.b.invoices.void(org.id, inv.id).status is InvoiceStatus.VOID
    assert t.b.database.conversations.count_documents(
        {"org_id": oid(org.id), "line_item_id": None}) == 0  # still billed by the void invoice


def line_item(t: Crash, point: str) -> None:
    org = t.org(conversations=6)
    draft = t.b.invoices.create_for_period(org.id, *OCT, finalize=False)
    t.crash(point, "add_line_item", org=org.id, invoice=draft.id)
    assert t.b.invoices.get(org.id, draft.id).total == draft.total  # rolled back
    t.b.line_items.add(org.id, draft.id, description="Setup fee", quantity=1, unit_amount=5000)
    after = t.b.invoices.get(org.id, draft.id)
    assert after.total == draft.total + 5000
    assert t.b.database.line_items.count_documents({"kind": "manual"}) == 1
    t.b.invoices.finalize(org.id, draft.id)


def customer(t: Crash, point: str) -> None:
    """Killed between creating the customer and recording it: once its claim expires, the
    repeat finds that customer (localstripe ignores idempotency keys) instead of making another."""
    org = t.org()
    t.crash(point, "attach", org=org.id, request_id="r-1",
            options={"payment_lease_seconds": SHORT_LEASE})
    assert t.b.orgs.get(org.id).stripe_customer_id is None  # created in Stripe, not recorded
    method = t.b.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")
    assert method.status is PaymentMethodStatus.ACTIVE
    stored = t.b.orgs.get(org.id)
    assert stored.default_payment_method_id == method.id
    made = [c.id for c in t.sc.v1.customers.list(params={"limit": 100}).auto_paging_iter()
            if c.metadata and c.metadata.to_dict().get("org_id") == org.id]
    assert made == [stored.stripe_customer_id]


def attach(recover: str) -> Callable[[Crash, str], None]:
    def scenario(t: Crash, point: str) -> None:
        org = t.org()
        source = t.card()  # a pm_ id, as Stripe.js hands the host: known before the attach
        t.crash(point, "attach", org=org.id, request_id="r-1", source=source)
        pending = t.b.database.payment_methods.find_one({"org_id": oid(org.id)})
        assert pending is not None and pending["status"] == "pending"
        customer_id = t.b.orgs.get(org.id).stripe_customer_id
        assert customer_id and len(attached_in_stripe(t.sc, customer_id)) == 1
        t.reconcile()  # Stripe shows it on the customer: the pending attach is activated
        again = t.b.payment_methods.attach(org.id, source, request_id="r-1")
        assert again.status is PaymentMethodStatus.ACTIVE and again.id == str(pending["_id"])
        assert attached_in_stripe(t.sc, customer_id) == {again.stripe_id}
    return scenario


def detach(t: Crash, point: str) -> None:
    org = t.org()
    method = t.b.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")
    t.crash(point, "detach", org=org.id, method=method.id)
    assert t.b.orgs.get(org.id).default_payment_method_id is None  # cleared before Stripe
    t.reconcile()
    doc = t.b.database.payment_methods.find_one({"_id": oid(method.id)})
    assert doc is not None and doc["status"] == "detached"
    assert attached_in_stripe(t.sc, t.b.orgs.get(org.id).stripe_customer_id) == set()


def pay(t: Crash, point: str) -> None:
    org, inv, _ = t.paying_org()
    t.crash(point, "pay", org=org.id, invoice=inv.id,
            options={"payment_lease_seconds": SHORT_LEASE})
    assert t.b.invoices.get(org.id, inv.id).status is InvoiceStatus.OPEN
    customer_id = str(t.b.orgs.get(org.id).stripe_customer_id)
    moved = [c for c in t.sc.v1.charges.list(params={"customer": customer_id}).data
             if c.status == "succeeded"]
    assert len(moved) == (1 if point in ("payments.after_confirm",
                                         "payments.settle.after_write") else 0)
    payment = t.pay_after_lease(org, inv)
    assert payment.status is PaymentStatus.SUCCEEDED and payment.amount == inv.total
    paid = t.b.invoices.get(org.id, inv.id)
    assert paid.status is InvoiceStatus.PAID and paid.amount_paid == inv.total
    check_charged_once(t.b, t.sc)


def refund(t: Crash, point: str) -> None:
    """A paid invoice partly refunded, the process killed after Stripe refunded and before the
    record: the repeat (same request id, once the lease expired) finds that refund, makes none."""
    org, inv, _ = t.paying_org()
    t.pay_after_lease(org, inv)
    t.crash(point, "credit_note", org=org.id, invoice=inv.id, amount=100, request_id="cn-1",
            options={"payment_lease_seconds": SHORT_LEASE})
    (doc,) = t.b.database.credit_notes.find({"org_id": oid(org.id)})
    assert doc["refund"]["status"] == "pending" and doc["refund"]["stripe_id"] is None
    time.sleep(SHORT_LEASE)
    note = t.b.credit_notes.create(org.id, inv.id, amount=100, reason="order_change",
                                   request_id="cn-1")
    assert note.id == str(doc["_id"]) and note.refund is not None
    assert note.refund.status.value == "succeeded"
    intent = str(note.refund.intent_id)
    refunds = t.sc.v1.refunds.list(params={"payment_intent": intent}).data
    assert [r.amount for r in refunds] == [100] and refunds[0].id == note.refund.stripe_id
    current = t.b.invoices.get(org.id, inv.id)
    assert current.amount_credited == 100 and current.total == inv.total


def webhook(t: Crash, point: str) -> None:
    """payment_method.detached for an active method, the process killed in the transaction;
    Stripe redelivers (a fresh signature) and the effect happens once."""
    org = t.org()
    method = t.b.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")
    customer_id = t.b.orgs.get(org.id).stripe_customer_id
    t.sc.v1.payment_methods.detach(str(method.stripe_id))
    payload = json.dumps({
        "id": f"evt_{ObjectId()}", "object": "event", "type": "payment_method.detached",
        "created": int(time.time()), "livemode": False,
        "data": {"object": {"id": method.stripe_id, "object": "payment_method",
                            "customer": None},
                 "previous_attributes": {"customer": customer_id}}}).encode()
    t.crash(point, "webhook", payload=payload.decode(), secret=SECRET,
            options={"webhook_secret": SECRET})
    assert t.b.database.webhook_events.count_documents({}) == 0
    result = t.b.webhooks.handle(payload, sign(payload, secret=SECRET))
    assert result.outcome is WebhookOutcome.PROCESSED, result
    replay = t.b.webhooks.handle(payload, sign(payload, secret=SECRET))
    assert replay.outcome is WebhookOutcome.DUPLICATE
    doc = t.b.database.payment_methods.find_one({"_id": oid(method.id)})
    assert doc is not None and doc["status"] == "detached"


def reconcile_release(t: Crash, point: str) -> None:
    org = t.org(conversations=7)
    gone = t.b.invoices.create_for_period(org.id, *OCT)
    t.b.database.invoices.delete_one({"_id": oid(gone.id)})  # orphan line items
    t.crash(point, "reconcile", lease_seconds=SHORT_LEASE)
    assert t.b.database.line_items.count_documents({"invoice_id": oid(gone.id)}) == 2
    t.reconcile()
    assert t.b.database.line_items.count_documents({"invoice_id": oid(gone.id)}) == 0
    (inv,) = t.b.database.invoices.find({"org_id": oid(org.id)})
    assert inv["conversations"] == 7 and inv["status"] == "open"


def reconcile_retotal(t: Crash, point: str) -> None:
    org = t.org(conversations=4)
    inv = t.b.invoices.create_for_period(org.id, *OCT)
    t.b.database.invoices.update_one({"_id": oid(inv.id)}, {"$set": {"subtotal": 1, "total": 1}})
    t.crash(point, "reconcile", lease_seconds=SHORT_LEASE)
    assert t.b.database.invoices.find_one({"_id": oid(inv.id)})["total"] == 1
    t.reconcile()
    assert t.b.invoices.get(org.id, inv.id).total == inv.total


def reconcile_methods(t: Crash, point: str) -> None:
    """Two methods: the second's detach interrupted (detaching) for the Stripe step, or detached
    in Stripe behind our back (still active here) for the local step."""
    org = t.org()
    first = t.b.payment_methods.attach(org.id, "pm_card_visa", request_id="r-1")
    second = t.b.payment_methods.attach(org.id, "pm_card_visa", request_id="r-2")
    if point.endswith("after_stripe"):
        t.b.database.payment_methods.update_one({"_id": oid(second.id)},
                                                {"$set": {"status": "detaching"}})
    else:
        t.sc.v1.payment_methods.detach(str(second.stripe_id))
    t.crash(point, "reconcile", lease_seconds=SHORT_LEASE)
    customer_id = t.b.orgs.get(org.id).stripe_customer_id
    assert attached_in_stripe(t.sc, customer_id) == {first.stripe_id}
    t.reconcile()
    doc = t.b.database.payment_methods.find_one({"_id": oid(second.id)})
    assert doc is not None and doc["status"] == "detached"
    assert t.b.orgs.get(org.id).default_payment_method_id == first.id


SCENARIOS: dict[str, Callable[[Crash, str], None]] = {
    "invoice.chunk.before_write": invoice_run("repeat"),
    "invoice.chunk.after_write": invoice_run("reconcile"),
    "invoice.between_chunks": invoice_run("reconcile"),
    "invoice.finalize.after_write": finalize,
    "invoice.void.after_write": void,
    "line_items.after_write": line_item,
    "customer.after_create": customer,
    "payment_methods.attach.after_stripe": attach("reconcile"),
    "payment_methods.attach.after_write": attach("reconcile"),
    "payment_methods.detach.after_mark": detach,
    "payment_methods.detach.after_stripe": detach,
    "payments.after_claim": pay,
    "payments.after_create_intent": pay,
    "payments.after_confirm": pay,
    "payments.settle.after_write": pay,
    "webhooks.after_write": webhook,
    "credit_notes.after_refund": refund,
    "reconcile.release.after_write": reconcile_release,
    "reconcile.retotal.after_write": reconcile_retotal,
    "reconcile.methods.after_stripe": reconcile_methods,
    "reconcile.methods.after_write": reconcile_methods,
}


def test_every_fault_point_has_a_crash_scenario() -> None:
    assert set(SCENARIOS) == set(POINTS)


@pytest.mark.parametrize("point", POINTS)
def test_killed_at_fault_point_then_recovered(crash: Crash, point: str) -> None:
    ok = False
    try:
        scenario = SCENARIOS.get(point)
        if scenario is None:
            pytest.fail(f"fault point {point} has no crash scenario: add one to SCENARIOS")
        scenario(crash, point)
        crash.all_invariants()
        ok = True
    finally:
        figures.add("fault points survived", 1 if ok else 0, of=1)


# ---- server faults -------------------------------------------------------------------------------

@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A durable SecantusDB of the test's own (a child process) that the test kills and
    restarts; not parametrized by backend: a real mongod cannot be killed from here."""
    srv = ServerProcess(tmp_path / "db", transaction_lifetime_seconds=2)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_database_killed_mid_run_then_restarted_leaves_a_resumable_draft(
    server: ServerProcess,
) -> None:
    """SIGKILL of the database server during a 20-chunk run, restarted on the same storage after
    `down_seconds` (the client's operations time out after 3 s): the run either finished (its
    transaction was retried on the restarted server) or raised a typed retryable error; what
    committed is consistent and a repeat finishes the one invoice."""
    ok = False
    try:
        client: MongoClient[Any] = MongoClient(server.uri, timeoutMS=3_000)
        b = Billing(client, database="billing", max_docs_per_transaction=20,
                    transaction_retry_seconds=20)
        b.setup()
        org = b.orgs.create(name="Acme", currency="usd", **PRICES)
        docs = seed_conversations(b.database, org.id, 400)  # 20 chunks
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append(b.invoices.create_for_period(org.id, *OCT))
            except BaseException as exc:  # noqa: BLE001 - judged below
                outcome.append(exc)

        worker = threading.Thread(target=run)
        watcher: MongoClient[Any] = MongoClient(server.uri, timeoutMS=5_000)
        with watcher:
            worker.start()
            deadline = time.monotonic() + 60
            while watcher.billing.conversations.count_documents(
                    {"line_item_id": {"$ne": None}}) < 60:
                assert time.monotonic() < deadline and worker.is_alive(), outcome
                time.sleep(0.02)
        server.kill()  # mid-run: at least 3 chunks committed, most still to do
        time.sleep(2)
        server.start()
        worker.join(timeout=120)
        assert not worker.is_alive()
        (result,) = outcome
        if isinstance(result, BaseException):  # typed and retryable, never a pymongo error
            assert isinstance(result, BillingError) and result.retryable, repr(result)

        check_totals_and_links(b.database)  # nothing half-written: marks match committed line items
        drafts = list(b.database.invoices.find({"org_id": oid(org.id)}))
        assert len(drafts) == 1
        inv = b.invoices.create_for_period(org.id, *OCT)  # resumes (or returns) the one invoice
        assert inv.id == str(drafts[0]["_id"]) and inv.status is InvoiceStatus.OPEN
        assert inv.conversations == 400 and inv.total == expected_total(docs, PER_CONV, PER_MIN)
        check_closed_months_billed(b.database)
        client.close()
        ok = True
    finally:
        figures.add("server faults survived", 1 if ok else 0, of=1)


class Failures(monitoring.CommandListener):
    """Failed server commands, by code name: evidence of what the server did."""

    def __init__(self) -> None:
        self.codes: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.codes.append(str(event.failure.get("codeName")))


def slow_clock(slow: Callable[[], bool], seconds: float) -> Callable[[], datetime]:
    """A clock that takes `seconds` to answer while `slow()`: the invoice run reads it inside its
    transaction callback, between the snapshot read and the writes."""
    def clock() -> datetime:
        if slow():
            time.sleep(seconds)
        return datetime.now(UTC)
    return clock


def test_transaction_outliving_the_server_lifetime_is_retried_and_never_half_written(
    server: ServerProcess,
) -> None:
    """The server (2 s transaction lifetime) aborts the callback's transaction while it sleeps in
    the clock; the write then gets NoSuchTransaction (TransientTransactionError): retried with a
    fresh transaction, or a typed retryable error, and never half-written."""
    ok = False
    try:
        failures = Failures()
        client: MongoClient[Any] = MongoClient(server.uri, timeoutMS=20_000,
                                               event_listeners=[failures])
        slow_calls = {1}  # the clock's second call: the first transaction's callback
        calls = [0]

        def slow() -> bool:
            calls[0] += 1
            return calls[0] - 1 in slow_calls

        b = Billing(client, database="billing", transaction_retry_seconds=20,
                    clock=slow_clock(slow, 3.0))
        b.setup()
        org = b.orgs.create(name="Acme", currency="usd", **PRICES)
        docs = seed_conversations(b.database, org.id, 10)
        before = dump(b.database)
        calls[0] = 0
        try:
            inv = b.invoices.create_for_period(org.id, *OCT)
        except BillingError as exc:
            assert exc.retryable, repr(exc)
            assert dump(b.database) == before  # nothing written
            inv = b.invoices.create_for_period(org.id, *OCT)
        assert "NoSuchTransaction" in failures.codes  # the server really expired it
        assert inv.status is InvoiceStatus.OPEN and inv.conversations == 10
        assert inv.total == expected_total(docs, PER_CONV, PER_MIN)
        check_closed_months_billed(b.database)
        client.close()
        ok = True
    finally:
        figures.add("server faults survived", 1 if ok else 0, of=1)


def test_an_unreachable_database_gives_up_within_transaction_retry_seconds(
    server: ServerProcess,
) -> None:
    """Billing(transaction_retry_seconds=1) with the server down: a typed retryable error within
    a few seconds, not a call blocked for pymongo's 120 s."""
    ok = False
    client: MongoClient[Any] = MongoClient(server.uri, timeoutMS=1_000)
    try:
        b = Billing(client, database="billing", transaction_retry_seconds=1)
        b.setup()
        org = b.orgs.create(name="Acme", currency="usd", **PRICES)
        seed_conversations(b.database, org.id, 5)
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append(b.invoices.create_for_period(org.id, *OCT))
            except BaseException as exc:  # noqa: BLE001 - judged below
                outcome.append(exc)

        server.kill()
        worker = threading.Thread(target=run)
        worker.start()
        worker.join(timeout=4)  # 1 s of retries, plus one 1 s attempt, plus slack
        gave_up = not worker.is_alive()
        server.start()  # lets a call still retrying finish, so the thread ends
        worker.join(timeout=60)
        assert gave_up, "still retrying 4 s into a call with transaction_retry_seconds=1"
        (result,) = outcome
        assert isinstance(result, BillingError) and result.retryable, repr(result)
        ok = True
    finally:
        client.close()
        figures.add("server faults survived", 1 if ok else 0, of=1)


def test_killed_mid_collect_then_rerun_charges_once_and_settles(crash: Crash) -> None:
    org, inv, _ = crash.paying_org()
    crash.crash("payments.after_confirm", "collect", lease_seconds=SHORT_LEASE,
                options={"payment_lease_seconds": SHORT_LEASE})
    deadline = time.monotonic() + 30
    while crash.b.invoices.get(org.id, inv.id).status is not InvoiceStatus.PAID:
        assert time.monotonic() < deadline, "the rerun never settled the killed run's attempt"
        time.sleep(0.25)  # both leases the killed run held are short
        with contextlib.suppress(LeaseNotAcquired):
            crash.b.collections.run(apply=True)
    check_charged_once(crash.b, crash.sc)
    attempts = list(crash.b.database.payments.find({"invoice_id": ObjectId(inv.id)}))
    assert [a["status"] for a in attempts] == ["succeeded"]
