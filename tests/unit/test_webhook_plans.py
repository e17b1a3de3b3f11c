"""The webhook decision table (billing.plans.webhooks), from hand-built records; no database.

`lookup` says what a verified event needs read (or decides it at once); `on_intent` and
`on_customer` decide from what was read. Each decision says the outcome, the effect and the
writes; the service only reads, asks and applies.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

from billing.adapters import schema
from billing.adapters.stripe_webhooks import StripeEvent
from billing.adapters.writes import Write
from billing.domain.models import (
    Invoice,
    InvoiceStatus,
    Org,
    Payment,
    PaymentMethod,
    PaymentMethodStatus,
    PaymentStatus,
)
from billing.plans import events
from billing.plans import webhooks as plans
from billing.plans.webhooks import Decision, Effect, ReadCustomer, ReadPayment, WebhookOutcome
from tests.unit.factories import NOW, invoice, oid, org

Doc = dict[str, Any]
CUSTOMER = "cus_1"
INTENT = "pi_1"


def event(kind: str, obj: Doc, *, previous: Doc | None = None) -> StripeEvent:
    return StripeEvent(id="evt_1", type=kind, created=0, data_object=obj, livemode=False,
                       previous_attributes=previous or {})


def records(*, payment_status: PaymentStatus = PaymentStatus.PROCESSING,
            invoice_status: InvoiceStatus = InvoiceStatus.OPEN,
            customer: str | None = CUSTOMER) -> tuple[Org, Invoice, Payment]:
    owner = org()
    inv = invoice(owner, status=invoice_status, complete=True).model_copy(update={
        "total": 1250, "subtotal": 1250, "payment_attempts": 1})
    pay = Payment(id=oid(), org_id=owner.id, invoice_id=inv.id, attempt=1,
                  status=payment_status, amount=1250, currency="usd", idempotency_key="k",
                  customer_id=customer, intent_id=INTENT, created_at=NOW)
    return owner, inv, pay


def intent(status: str, **fields: Any) -> Doc:
    return {"id": INTENT, "status": status, "amount": 1250, "currency": "usd",
            "customer": CUSTOMER, **fields}


def sets(writes: list[Write], collection: str) -> list[Doc]:
    return [w.doc.get("$set", w.doc) for w in writes if w.collection == collection]


def decide(kind: str, obj: Doc, owner: Org, inv: Invoice, pay: Payment, **kw: Any) -> Decision:
    return plans.on_intent(kind, obj, pay, inv, org_id=ObjectId(owner.id), now=NOW, **kw)


# ---- what to read ------------------------------------------------------------------------------

def test_a_processed_event_is_a_duplicate_whatever_it_says() -> None:
    step = plans.lookup(event("payment_intent.succeeded", intent("succeeded")),
                        already_processed=True)
    assert step == Decision(WebhookOutcome.DUPLICATE, "already processed")


def test_an_event_type_not_handled_is_ignored() -> None:
    step = plans.lookup(event("invoice.created", {"id": "in_1"}), already_processed=False)
    assert isinstance(step, Decision)
    assert (step.outcome, step.effect, step.writes) == (WebhookOutcome.IGNORED, Effect.NONE, [])


@pytest.mark.parametrize("metadata", [None, {}, {"org_id": 7}, {"org_id": "not-an-id"}, "x"])
def test_an_intent_without_our_org_is_not_ours(metadata: Any) -> None:
    step = plans.lookup(event("payment_intent.succeeded", intent("succeeded", metadata=metadata)),
                        already_processed=False)
    assert isinstance(step, Decision)
    assert step.outcome is WebhookOutcome.IGNORED and step.org_id is None


def test_an_intent_event_reads_the_payment_of_its_intent_in_its_org() -> None:
    org_id = ObjectId()
    obj = intent("succeeded", metadata={"org_id": str(org_id)})
    assert plans.lookup(event("payment_intent.succeeded", obj), already_processed=False) == \
        ReadPayment(org_id, INTENT)
    no_id = {**obj, "id": None}
    step = plans.lookup(event("payment_intent.succeeded", no_id), already_processed=False)
    assert step == Decision(WebhookOutcome.IGNORED, "event has no intent id", org_id=org_id)


def test_customer_events_read_the_org_of_the_customer() -> None:
    assert plans.lookup(event("customer.deleted", {"id": CUSTOMER}),
                        already_processed=False) == ReadCustomer(CUSTOMER, None)
    detached = event("payment_method.detached", {"id": "pm_1", "customer": None},
                     previous={"customer": CUSTOMER})
    assert plans.lookup(detached, already_processed=False) == ReadCustomer(CUSTOMER, "pm_1")
    nobody = plans.lookup(event("payment_method.detached", {"id": "pm_1"}),
                          already_processed=False)
    assert isinstance(nobody, Decision) and nobody.outcome is WebhookOutcome.IGNORED


# ---- payment intents ---------------------------------------------------------------------------

def test_succeeded_pays_the_invoice_and_tells_the_host() -> None:
    owner, inv, pay = records()
    box = events.Outbox(ObjectId(owner.id), 0, NOW)
    d = decide("payment_intent.succeeded", intent("succeeded"), owner, inv, pay, box=box)
    assert (d.outcome, d.effect, d.org_id) == (
        WebhookOutcome.PROCESSED, Effect.SETTLE_PAYMENT, ObjectId(owner.id))
    assert sets(d.writes, schema.PAYMENTS)[0]["status"] == "succeeded"
    assert sets(d.writes, schema.INVOICES)[0]["status"] == "paid"
    assert sets(d.writes, schema.INVOICES)[0]["amount_paid"] == 1250
    assert [e["type"] for e in sets(d.writes, schema.EVENTS)] == ["invoice.paid"]


def test_payment_failed_records_the_reason_and_leaves_the_invoice_open() -> None:
    owner, inv, pay = records()
    error = {"code": "card_declined", "message": "Your card was declined."}
    d = decide("payment_intent.payment_failed",
               intent("requires_payment_method", last_payment_error=error), owner, inv, pay)
    assert d.outcome is WebhookOutcome.PROCESSED
    [payment] = sets(d.writes, schema.PAYMENTS)
    assert (payment["status"], payment["failure_code"]) == ("failed", "card_declined")
    assert sets(d.writes, schema.INVOICES) == []


def test_the_last_scheduled_failure_makes_the_invoice_uncollectible() -> None:
    owner, inv, pay = records()
    d = decide("payment_intent.payment_failed", intent("requires_payment_method"), owner, inv,
               pay, failures=2, days=(0, 2, 4))
    assert sets(d.writes, schema.INVOICES)[0]["status"] == "uncollectible"


@pytest.mark.parametrize(("kind", "status", "recorded"), [
    ("payment_intent.processing", "processing", "processing"),
    ("payment_intent.requires_action", "requires_action", "requires_action"),
    ("payment_intent.canceled", "canceled", "canceled"),
])
def test_other_intent_events_move_the_attempt(kind: str, status: str, recorded: str) -> None:
    owner, inv, pay = records(payment_status=PaymentStatus.CONFIRMING)
    d = decide(kind, intent(status), owner, inv, pay)
    assert d.outcome is WebhookOutcome.PROCESSED
    assert sets(d.writes, schema.PAYMENTS)[0]["status"] == recorded
    assert d.detail == f"payment {pay.id}: {recorded}"


def test_an_intent_of_no_payment_here_is_ignored() -> None:
    owner, inv, _ = records()
    d = plans.on_intent("payment_intent.succeeded", intent("succeeded"), None, inv,
                        org_id=ObjectId(owner.id), now=NOW)
    assert (d.outcome, d.writes) == (WebhookOutcome.IGNORED, [])
    assert d.detail == f"no payment here has intent {INTENT}"


@pytest.mark.parametrize(("field", "value"), [
    ("amount", 1), ("amount", "1250"), ("currency", "eur"), ("customer", "cus_other"),
])
def test_an_intent_that_disagrees_with_our_payment_changes_nothing(field: str, value: Any
                                                                   ) -> None:
    owner, inv, pay = records()
    d = decide("payment_intent.succeeded", intent("succeeded", **{field: value}), owner, inv,
               pay)
    assert (d.outcome, d.effect, d.writes) == (WebhookOutcome.MISMATCH, Effect.NONE, [])
    assert "nothing changed" in d.detail


def test_a_customer_missing_on_either_side_is_no_mismatch() -> None:
    owner, inv, pay = records(customer=None)
    d = decide("payment_intent.succeeded", intent("succeeded"), owner, inv, pay)
    assert d.outcome is WebhookOutcome.PROCESSED
    d = decide("payment_intent.succeeded", intent("succeeded", customer=None), *records())
    assert d.outcome is WebhookOutcome.PROCESSED


@pytest.mark.parametrize(("was", "kind", "status"), [
    (PaymentStatus.SUCCEEDED, "payment_intent.payment_failed", "requires_payment_method"),
    (PaymentStatus.SUCCEEDED, "payment_intent.processing", "processing"),
    (PaymentStatus.CANCELED, "payment_intent.succeeded", "succeeded"),
    (PaymentStatus.FAILED, "payment_intent.processing", "processing"),
    (PaymentStatus.FAILED, "payment_intent.requires_action", "requires_action"),
])
def test_a_settled_attempt_never_moves_backwards(was: PaymentStatus, kind: str,
                                                 status: str) -> None:
    paid = InvoiceStatus.PAID if was is PaymentStatus.SUCCEEDED else InvoiceStatus.OPEN
    owner, inv, pay = records(payment_status=was, invoice_status=paid)
    d = decide(kind, intent(status), owner, inv, pay)
    assert (d.outcome, d.writes) == (WebhookOutcome.PROCESSED, [])
    assert d.detail == f"payment {pay.id}: {was.value}"


def test_a_failed_attempt_that_succeeded_after_all_pays_the_invoice() -> None:
    owner, inv, pay = records(payment_status=PaymentStatus.FAILED)
    d = decide("payment_intent.succeeded", intent("succeeded"), owner, inv, pay)
    assert sets(d.writes, schema.INVOICES)[0]["status"] == "paid"


# ---- customers and payment methods -------------------------------------------------------------

def method(owner: Org, stripe_id: str, status: PaymentMethodStatus = PaymentMethodStatus.ACTIVE
           ) -> PaymentMethod:
    return PaymentMethod(id=oid(), org_id=owner.id, request_id=stripe_id, status=status,
                         stripe_id=stripe_id, customer_id=CUSTOMER,
                         created_at=NOW - timedelta(days=1))


def customer_org() -> Org:
    return org().model_copy(update={"stripe_customer_id": CUSTOMER})


def test_no_org_with_the_customer_is_not_ours() -> None:
    for deleted in (True, False):
        d = plans.on_customer(None, [], deleted=deleted, now=NOW)
        assert d == Decision(WebhookOutcome.IGNORED, "no org has this customer")


def test_a_method_detached_in_stripe_is_detached_here_and_stops_being_the_default() -> None:
    owner = customer_org()
    pm = method(owner, "pm_1")
    owner = owner.model_copy(update={"default_payment_method_id": pm.id})
    d = plans.on_customer(owner, [pm], deleted=False, now=NOW)
    assert (d.outcome, d.effect, d.org_id) == (
        WebhookOutcome.PROCESSED, Effect.DETACH_METHOD, ObjectId(owner.id))
    assert sets(d.writes, schema.PAYMENT_METHODS)[0]["status"] == "detached"
    assert sets(d.writes, schema.ORGS) == [{"default_payment_method_id": None}]


def test_a_method_not_live_here_is_ignored() -> None:
    owner = customer_org()
    d = plans.on_customer(owner, [], deleted=False, now=NOW)
    assert (d.outcome, d.writes, d.detail) == (
        WebhookOutcome.IGNORED, [], "payment method not active here")


def test_a_deleted_customer_takes_every_live_method_with_it() -> None:
    owner = customer_org()
    methods = [method(owner, "pm_1"), method(owner, "pm_2", PaymentMethodStatus.DETACHING)]
    box = events.Outbox(ObjectId(owner.id), 3, NOW)
    d = plans.on_customer(owner, methods, deleted=True, now=NOW, box=box)
    assert (d.outcome, d.effect) == (WebhookOutcome.PROCESSED, Effect.DETACH_ALL)
    assert d.detail == "customer deleted: 2 methods detached"
    assert [s["status"] for s in sets(d.writes, schema.PAYMENT_METHODS)] == ["detached"] * 2
    assert sets(d.writes, schema.ORGS)[0]["stripe_customer_id"] is None
    told = [e["type"] for e in sets(d.writes, schema.EVENTS)]
    assert told == ["payment_method.detached"] * 2


def test_the_record_of_an_event_says_what_was_decided() -> None:
    owner = customer_org()
    d = plans.on_customer(owner, [], deleted=False, now=NOW)
    record = plans.processed(event("payment_method.detached", {"id": "pm_9"}), d, NOW)
    assert record.collection == schema.WEBHOOK_EVENTS and record.op == "insert"
    assert record.doc == {"_id": "evt_1", "type": "payment_method.detached",
                          "outcome": "ignored", "detail": "payment method not active here",
                          "org_id": ObjectId(owner.id), "processed_at": NOW}
