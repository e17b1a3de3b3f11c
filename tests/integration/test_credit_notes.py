"""Credit notes and refunds, sync and async, on SecantusDB with the fake gateway.

Each test asserts on documents, money moved in the gateway and errors, never on which calls
were made.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

from billing import (
    ConfigurationError,
    CreditExceedsTotal,
    CreditNoteStatus,
    InvalidInput,
    InvalidMoney,
    InvoiceNotCreditable,
    InvoiceNotFound,
    InvoiceNotPayable,
    InvoiceStatus,
    LineItemNotFound,
    OrgNotFound,
    PaymentError,
    PaymentInProgress,
    PaymentProviderUnavailable,
    PaymentStatus,
    RefundFailed,
    RefundStatus,
    WebhookOutcome,
)
from billing.adapters.stripe_webhooks import sign
from billing.domain.models import LineItemKind
from tests.support.billing_data import OCT, dump, seed_conversations
from tests.support.drivers import LEASE, Driver
from tests.support.racing import Raced, as_tasks, in_threads

pytestmark = pytest.mark.integration
REASON = "order_change"


def open_invoice(d: Driver, *, token: str = "pm_card_visa", n: int = 4,
                 name: str = "Acme") -> tuple[Any, Any]:
    """An org with a default card and an open invoice of 4 conversations: 200 + 30 = 230."""
    org = d("orgs.create", name=name, currency="usd", per_conversation=50,
            per_started_minute=10)
    seed_conversations(d.db, org.id, n)
    inv = d("invoices.create_for_period", org.id, *OCT)
    d("payment_methods.attach", org.id, token, request_id=f"r-{token}")
    return org, inv


def paid_invoice(d: Driver, *, token: str = "pm_card_visa") -> tuple[Any, Any]:
    org, inv = open_invoice(d, token=token)
    payment = d("invoices.pay", org.id, inv.id)
    assert payment.status is PaymentStatus.SUCCEEDED
    return org, d("invoices.get", org.id, inv.id)


def pending_refund(d: Driver) -> tuple[Any, Any, Any]:
    """An invoice paid by bank debit (processing, then succeeded) and a credit note of 80 on it
    whose refund Stripe is still processing."""
    org, inv = open_invoice(d, token="pm_bank_debit")
    with pytest.raises(PaymentInProgress):
        d("invoices.pay", org.id, inv.id)
    (intent_id,) = d.fake.intents
    d.fake.settle_processing(intent_id, succeeded=True)
    d("invoices.settle_payment", org.id, inv.id)
    note = d("credit_notes.create", org.id, inv.id, amount=80, reason=REASON, request_id="cn-1")
    assert note.refund is not None and note.refund.status is RefundStatus.PENDING
    return org, inv, note


def stored(d: Driver, inv: Any) -> dict[str, Any]:
    doc = d.db.invoices.find_one({"_id": ObjectId(inv.id)})
    assert doc is not None
    return doc


def events(d: Driver, org: Any) -> list[str]:
    return [e["type"] for e in d.db.billing_events.find({"org_id": ObjectId(org.id)}).sort(
        "seq", 1)]


def check_credits(d: Driver, inv: Any) -> None:
    """The money properties: credited <= total; the credited amount is the sum of the issued
    credit notes; what was refunded is at most what was paid; line items and total unchanged."""
    doc = stored(d, inv)
    notes = list(d.db.credit_notes.find({"invoice_id": ObjectId(inv.id)}))
    issued = [n for n in notes if n["status"] == "issued"]
    assert doc["amount_credited"] == sum(n["amount"] for n in issued) <= doc["total"]
    assert doc["total"] == inv.total
    items = d.db.line_items.find({"invoice_id": ObjectId(inv.id)})
    assert sorted(li["amount"] for li in items) == sorted(li.amount for li in inv.line_items)
    assert d.fake.refunded(inv.id) <= d.fake.taken(inv.id) == doc.get("amount_paid", 0)
    refunds = sum(n["refund"]["amount"] for n in notes if n.get("refund")
                  and n["refund"]["status"] == "succeeded")
    assert refunds == d.fake.refunded(inv.id)


def test_a_partial_credit_lowers_what_pay_charges(d: Driver) -> None:
    org, inv = open_invoice(d)
    note = d("credit_notes.create", org.id, inv.id, amount=100, reason=REASON,
             request_id="cn-1", memo="two calls were tests")

    assert note.number == 1 and note.amount == 100 and note.refund is None
    assert note.status is CreditNoteStatus.ISSUED
    current = d("invoices.get", org.id, inv.id)
    assert current.status is InvoiceStatus.OPEN and current.total == 230
    assert current.amount_credited == 100 and current.amount_due == 130
    payment = d("invoices.pay", org.id, inv.id)
    assert payment.amount == 130 and d.fake.taken(inv.id) == 130
    paid = d("invoices.get", org.id, inv.id)
    assert paid.status is InvoiceStatus.PAID and paid.amount_paid == 130
    assert events(d, org) == ["invoice.finalized", "payment_method.attached",
                              "credit_note.created", "invoice.paid"]
    check_credits(d, inv)


def test_a_full_credit_settles_the_invoice_without_a_charge(d: Driver) -> None:
    org, inv = open_invoice(d)
    d("credit_notes.create", org.id, inv.id, amount=30, reason=REASON, request_id="cn-1")
    d("credit_notes.create", org.id, inv.id, amount=200, reason="duplicate", request_id="cn-2")

    current = d("invoices.get", org.id, inv.id)
    assert current.status is InvoiceStatus.PAID and current.amount_paid == 0
    assert current.amount_due == 0 and current.total == 230
    with pytest.raises(InvoiceNotPayable):
        d("invoices.pay", org.id, inv.id)
    assert d.fake.intents == {}
    assert events(d, org)[-2:] == ["credit_note.created", "invoice.paid"]
    with pytest.raises(CreditExceedsTotal):
        d("credit_notes.create", org.id, inv.id, amount=1, reason=REASON, request_id="cn-3")
    check_credits(d, inv)


def test_line_credits_are_bounded_per_line_item(d: Driver) -> None:
    org, inv = open_invoice(d)
    minutes = inv.item(LineItemKind.MINUTES)
    note = d("credit_notes.create", org.id, inv.id, lines=[(minutes.id, 20)], reason=REASON,
             request_id="cn-1")
    assert note.amount == 20 and [li.amount for li in note.lines] == [20]
    before = dump(d.db)
    with pytest.raises(CreditExceedsTotal):
        d("credit_notes.create", org.id, inv.id, lines=[(minutes.id, 11)], reason=REASON,
          request_id="cn-2")
    with pytest.raises(LineItemNotFound):
        d("credit_notes.create", org.id, inv.id, lines=[(str(ObjectId()), 1)], reason=REASON,
          request_id="cn-3")
    assert dump(d.db) == before
    d("credit_notes.create", org.id, inv.id, lines=[{"line_item_id": minutes.id, "amount": 10}],
      reason=REASON, request_id="cn-4")
    assert d("invoices.get", org.id, inv.id).amount_due == 200
    check_credits(d, inv)


def test_numbers_are_per_org_and_repeats_are_idempotent(d: Driver) -> None:
    org, inv = open_invoice(d)
    other, other_inv = open_invoice(d, name="Other")
    first = d("credit_notes.create", org.id, inv.id, amount=10, reason=REASON, request_id="a")
    again = d("credit_notes.create", org.id, inv.id, amount=10, reason=REASON, request_id="a")
    second = d("credit_notes.create", org.id, inv.id, amount=5, reason=REASON, request_id="b")
    theirs = d("credit_notes.create", other.id, other_inv.id, amount=5, reason=REASON,
               request_id="a")
    assert again == first and (first.number, second.number, theirs.number) == (1, 2, 1)
    assert d("invoices.get", org.id, inv.id).amount_credited == 15
    assert [n.id for n in d("credit_notes.list", org.id)] == [first.id, second.id]
    assert d("credit_notes.get", org.id, first.id) == first
    seed_conversations(d.db, org.id, 2, start=OCT[0].replace(month=9))
    september = d("invoices.create_for_period", org.id, OCT[0].replace(month=9), OCT[0])
    with pytest.raises(InvalidInput):  # one request id names one credit note
        d("credit_notes.create", org.id, september.id, amount=5, reason=REASON, request_id="a")


def test_a_repeated_request_id_asking_for_another_credit_is_refused(d: Driver) -> None:
    org, inv = open_invoice(d)
    minutes = inv.item(LineItemKind.MINUTES)
    first = d("credit_notes.create", org.id, inv.id, amount=20, reason=REASON,
              request_id="cn-1", memo="tests")
    by_lines = d("credit_notes.create", org.id, inv.id, lines=[(minutes.id, 10)],
                 reason=REASON, request_id="cn-2")
    before = dump(d.db)
    for changes, field in (({"amount": 200}, "amount"), ({"amount": None,
                           "lines": [(minutes.id, 20)]}, "lines"),
                           ({"reason": "duplicate"}, "reason"), ({"memo": "other"}, "memo")):
        call = {"amount": 20, "reason": REASON, "request_id": "cn-1", "memo": "tests",
                **changes}
        with pytest.raises(InvalidInput, match=f"{first.id} with .*asks for {field}"):
            d("credit_notes.create", org.id, inv.id, **call)
    with pytest.raises(InvalidInput, match="this call asks for lines"):
        d("credit_notes.create", org.id, inv.id, lines=[(minutes.id, 11)], reason=REASON,
          request_id="cn-2")
    with pytest.raises(InvalidInput, match="this call asks for amount 10"):
        d("credit_notes.create", org.id, inv.id, amount=10, reason=REASON, request_id="cn-2")
    assert dump(d.db) == before
    assert d("credit_notes.create", org.id, inv.id, amount=20, reason=REASON,
             request_id="cn-1", memo="tests", refund=False) == first
    assert d("credit_notes.create", org.id, inv.id, lines=[(minutes.id.upper(), 10)],
             reason=REASON, request_id="cn-2") == by_lines
    assert d("invoices.get", org.id, inv.id).amount_credited == 30


def test_a_repeat_on_a_paid_invoice_must_ask_for_the_same_settlement(d: Driver) -> None:
    org, inv = paid_invoice(d)
    note = d("credit_notes.create", org.id, inv.id, amount=50, reason=REASON,
             request_id="cn-1")
    with pytest.raises(InvalidInput, match="settlement refund"):
        d("credit_notes.create", org.id, inv.id, amount=50, reason=REASON,
          request_id="cn-1", refund=False)
    assert d("credit_notes.create", org.id, inv.id, amount=50, reason=REASON,
             request_id="cn-1", refund=True) == note
    assert d.fake.refunded(inv.id) == 50


def test_line_item_ids_are_accepted_in_upper_case(d: Driver) -> None:
    org, inv = open_invoice(d)
    minutes = inv.item(LineItemKind.MINUTES)
    note = d("credit_notes.create", org.id.upper(), inv.id.upper(),
             lines=[(minutes.id.upper(), 10)], reason=REASON, request_id="cn-1")
    assert note.amount == 10 and [li.line_item_id for li in note.lines] == [minutes.id]
    with pytest.raises(InvalidInput, match="listed twice"):
        d("credit_notes.create", org.id, inv.id, lines=[(minutes.id, 1), (minutes.id.upper(),
          1)], reason=REASON, request_id="cn-2")
    with pytest.raises(CreditExceedsTotal):  # the same item's credits, whatever the spelling
        d("credit_notes.create", org.id, inv.id, lines=[(minutes.id.upper(), 21)],
          reason=REASON, request_id="cn-3")
    check_credits(d, inv)


def test_bad_input_is_refused_and_writes_nothing(d: Driver) -> None:
    org, inv = open_invoice(d)
    other, other_inv = open_invoice(d, name="Other")
    seed_conversations(d.db, org.id, 2, start=OCT[0].replace(month=9))
    draft = d("invoices.create_for_period", org.id, OCT[0].replace(month=9), OCT[0],
              finalize=False)
    _, voided = open_invoice(d, name="Voided")
    d("invoices.void", voided.org_id, voided.id)
    before = dump(d.db)
    cases: list[tuple[type[Exception], Any, Any, dict[str, Any]]] = [
        (InvalidMoney, org.id, inv.id, {"amount": -1}),
        (InvalidMoney, org.id, inv.id, {"amount": 0}),
        (InvalidMoney, org.id, inv.id, {"amount": 1.5}),
        (CreditExceedsTotal, org.id, inv.id, {"amount": 231}),
        (InvoiceNotFound, org.id, other_inv.id, {"amount": 1}),
        (OrgNotFound, str(ObjectId()), inv.id, {"amount": 1}),
        (InvoiceNotCreditable, org.id, draft.id, {"amount": 1}),
        (InvoiceNotCreditable, voided.org_id, voided.id, {"amount": 1}),
        (LineItemNotFound, org.id, inv.id, {"lines": [(other_inv.line_items[0].id, 1)]}),
        (InvalidInput, org.id, inv.id, {"amount": 1, "lines": [(inv.line_items[0].id, 1)]}),
        (InvalidInput, org.id, inv.id, {}),
        (InvalidInput, org.id, inv.id, {"amount": 1, "reason": "because"}),
        (InvalidInput, org.id, inv.id, {"amount": 1, "refund": True}),  # nothing paid yet
        (InvalidInput, org.id, inv.id, {"amount": 1, "request_id": {"$ne": None}}),
        (InvalidInput, {"$ne": None}, inv.id, {"amount": 1}),
    ]
    for error, org_id, invoice_id, kwargs in cases:
        call = {"reason": REASON, "request_id": "bad", **kwargs}
        with pytest.raises(error):
            d("credit_notes.create", org_id, invoice_id, **call)
    assert dump(d.db) == before


def test_a_preview_writes_nothing_and_names_the_note_its_request_id_issued(d: Driver) -> None:
    org, inv = open_invoice(d)
    call = {"amount": 100, "reason": REASON, "request_id": "cn-1"}
    before = dump(d.db)

    preview = d("credit_notes.preview", org.id, inv.id, **call)

    assert preview.existing_id is None and dump(d.db) == before
    assert (preview.credit_note.number, preview.credit_note.amount) == (1, 100)
    assert preview.invoice == d("invoices.get", org.id, inv.id)
    note = d("credit_notes.create", org.id, inv.id, **call)
    assert note.id != preview.credit_note.id  # a preview's id is never stored

    again = d("credit_notes.preview", org.id, inv.id, **call)

    assert again.existing_id == note.id and again.credit_note == note
    assert (again.invoice.amount_credited, again.invoice.amount_due) == (100, 130)
    other = d("credit_notes.preview", org.id, inv.id, **{**call, "request_id": "cn-2"})
    assert other.existing_id is None and other.credit_note.number == 2


def test_a_payment_in_flight_refuses_a_credit(d: Driver) -> None:
    org, inv = open_invoice(d, token="pm_bank_debit")
    with pytest.raises(PaymentInProgress):
        d("invoices.pay", org.id, inv.id)  # processing: the bank answers later
    before = dump(d.db)
    with pytest.raises(PaymentInProgress) as refused:
        d("credit_notes.create", org.id, inv.id, amount=10, reason=REASON, request_id="cn-1")
    assert refused.value.retryable and dump(d.db) == before
    (intent_id,) = d.fake.intents
    d.fake.settle_processing(intent_id, succeeded=False)
    d("invoices.settle_payment", org.id, inv.id)
    d("credit_notes.create", org.id, inv.id, amount=10, reason=REASON, request_id="cn-1")
    assert d("invoices.get", org.id, inv.id).amount_due == 220


def test_a_lease_held_by_pay_refuses_a_credit(d: Driver) -> None:
    org, inv = open_invoice(d)
    seen = d.during("create_intent", "credit_notes.create", org.id, inv.id, amount=10,
                    reason=REASON, request_id="cn-1")
    d("invoices.pay", org.id, inv.id)
    assert len(seen) == 1 and isinstance(seen[0], PaymentInProgress)
    assert d.fake.taken(inv.id) == 230 and d.db.credit_notes.count_documents({}) == 0


def test_a_paid_invoice_is_refunded_once(d: Driver) -> None:
    org, inv = paid_invoice(d)
    note = d("credit_notes.create", org.id, inv.id, amount=100, reason="duplicate",
             request_id="cn-1")
    assert note.refund is not None and note.refund.status is RefundStatus.SUCCEEDED
    assert note.refund.stripe_id in d.fake.refunds and d.fake.refunded(inv.id) == 100
    again = d("credit_notes.create", org.id, inv.id, amount=100, reason="duplicate",
              request_id="cn-1")
    assert again == note and len(d.fake.refunds) == 1
    current = d("invoices.get", org.id, inv.id)
    assert current.status is InvoiceStatus.PAID and current.amount_credited == 100
    with pytest.raises(CreditExceedsTotal):
        d("credit_notes.create", org.id, inv.id, amount=131, reason=REASON, request_id="cn-2")
    out = d("credit_notes.create", org.id, inv.id, amount=130, reason=REASON, request_id="cn-3",
            refund=False)
    assert out.refund is None and out.settlement.value == "out_of_band"
    with pytest.raises(CreditExceedsTotal):
        d("credit_notes.create", org.id, inv.id, amount=1, reason=REASON, request_id="cn-4")
    assert events(d, org)[-3:] == ["credit_note.created", "refund.succeeded",
                                   "credit_note.created"]
    check_credits(d, inv)


def test_a_refund_after_a_partial_credit_is_bounded_by_what_was_paid(d: Driver) -> None:
    org, inv = open_invoice(d)
    d("credit_notes.create", org.id, inv.id, amount=100, reason=REASON, request_id="cn-1")
    d("invoices.pay", org.id, inv.id)
    assert d.fake.taken(inv.id) == 130
    with pytest.raises(CreditExceedsTotal):  # what is left to credit is what was paid
        d("credit_notes.create", org.id, inv.id, amount=131, reason=REASON, request_id="cn-2")
    d("credit_notes.create", org.id, inv.id, amount=130, reason=REASON, request_id="cn-2")
    assert d.fake.refunded(inv.id) == 130
    check_credits(d, inv)


def test_a_lost_refund_answer_is_found_not_refunded_again(d: Driver) -> None:
    org, inv = paid_invoice(d)
    d.fake.fail_next("refund", PaymentProviderUnavailable("timeout"), after=True)
    with pytest.raises(PaymentProviderUnavailable):
        d("credit_notes.create", org.id, inv.id, amount=50, reason=REASON, request_id="cn-1")
    (doc,) = d.db.credit_notes.find()
    assert doc["refund"]["status"] == "pending" and doc["refund"]["lease"] is None
    note = d("credit_notes.create", org.id, inv.id, amount=50, reason=REASON, request_id="cn-1")
    assert note.refund is not None and note.refund.status is RefundStatus.SUCCEEDED
    assert len(d.fake.refunds) == 1 and d.fake.refunded(inv.id) == 50
    check_credits(d, inv)


def test_a_refund_failing_before_stripe_acted_is_made_by_the_repeat(d: Driver) -> None:
    org, inv = paid_invoice(d)
    d.fake.fail_next("refund", PaymentProviderUnavailable("timeout"))
    with pytest.raises(PaymentProviderUnavailable):
        d("credit_notes.create", org.id, inv.id, amount=50, reason=REASON, request_id="cn-1")
    assert d.fake.refunds == {}
    note = d("credit_notes.finish_refund", org.id, str(d.db.credit_notes.find_one()["_id"]))
    assert note.refund is not None and note.refund.status is RefundStatus.SUCCEEDED
    assert len(d.fake.refunds) == 1 and d.fake.refunded(inv.id) == 50
    check_credits(d, inv)


def test_a_refused_refund_voids_the_credit_note(d: Driver) -> None:
    org, inv = paid_invoice(d)
    d.fake.fail_next("refund", PaymentError("refused", code="charge_disputed"))
    with pytest.raises(RefundFailed) as failed:
        d("credit_notes.create", org.id, inv.id, amount=50, reason=REASON, request_id="cn-1")
    assert failed.value.code == "charge_disputed"
    (doc,) = d.db.credit_notes.find()
    assert doc["status"] == "void" and doc["refund"]["status"] == "failed"
    assert d("invoices.get", org.id, inv.id).amount_credited == 0
    assert events(d, org)[-2:] == ["credit_note.created", "refund.failed"]
    with pytest.raises(RefundFailed):  # a repeat says so too
        d("credit_notes.create", org.id, inv.id, amount=50, reason=REASON, request_id="cn-1")
    d("credit_notes.create", org.id, inv.id, amount=230, reason=REASON, request_id="cn-2")
    assert d.fake.refunded(inv.id) == 230
    check_credits(d, inv)


def test_a_pending_refund_settles_later(d: Driver) -> None:
    org, inv, note = pending_refund(d)
    assert note.refund.stripe_id is not None and note.refund.lease is None
    assert d("credit_notes.finish_refund", org.id, note.id).refund.status is \
        RefundStatus.PENDING
    d.fake.settle_refund(note.refund.stripe_id, succeeded=False)
    with pytest.raises(RefundFailed):
        d("credit_notes.finish_refund", org.id, note.id)
    assert d("invoices.get", org.id, inv.id).amount_credited == 0
    check_credits(d, inv)


def test_a_refund_in_progress_elsewhere_is_not_made_twice(d: Driver) -> None:
    org, inv = paid_invoice(d)
    d.fake.fail_next("refund", PaymentProviderUnavailable("timeout"), after=True)
    seen = d.during("refund", "credit_notes.create", org.id, inv.id, amount=50, reason=REASON,
                    request_id="cn-1")
    with pytest.raises(PaymentProviderUnavailable):
        d("credit_notes.create", org.id, inv.id, amount=50, reason=REASON, request_id="cn-1")
    assert len(seen) == 1 and isinstance(seen[0], PaymentInProgress)  # the lease was held
    d.clock.advance(LEASE + 1)
    note = d("credit_notes.create", org.id, inv.id, amount=50, reason=REASON, request_id="cn-1")
    assert note.refund is not None and note.refund.status is RefundStatus.SUCCEEDED
    assert len(d.fake.refunds) == 1
    check_credits(d, inv)


def race(d: Driver, org: Any, inv: Any, n: int, amount: int) -> Raced[Any]:
    """n credit notes of `amount` on the invoice at once (threads, or tasks on one loop)."""
    def call(i: int) -> Any:
        return d.b.credit_notes.create(org.id, inv.id, amount=amount, reason=REASON,
                                       request_id=f"race-{i}")

    calls = [lambda i=i: call(i) for i in range(n)]  # type: ignore[misc]
    if d.loop is None:
        return in_threads(calls)
    return d.loop.run_until_complete(as_tasks(calls))


def test_concurrent_credits_together_over_the_total_are_refused(d: Driver) -> None:
    org, inv = open_invoice(d)
    raced = race(d, org, inv, 4, 100)  # 230 to credit: two fit
    assert len(raced.results) == 2 and raced.errors_except(CreditExceedsTotal) == []
    assert sorted(n.number for n in raced.results) == [1, 2]
    assert d("invoices.get", org.id, inv.id).amount_due == 30
    check_credits(d, inv)


def test_concurrent_refunds_together_over_the_payment_are_refused(d: Driver) -> None:
    org, inv = paid_invoice(d)
    raced = race(d, org, inv, 3, 100)
    assert len(raced.results) == 2 and raced.errors_except(CreditExceedsTotal) == []
    assert d.fake.refunded(inv.id) == 200 and len(d.fake.refunds) == 2
    check_credits(d, inv)


def refund_event(kind: str, obj: dict[str, Any]) -> tuple[bytes, str]:
    body = json.dumps({"id": f"evt_{ObjectId()}", "type": kind, "created": int(time.time()),
                       "livemode": False, "data": {"object": obj}}).encode()
    return body, sign(body, secret="whsec_test")


def as_stripe_sends(d: Driver, refund_id: str, **changes: Any) -> dict[str, Any]:
    r = d.fake.refunds[refund_id]
    return {"id": r.id, "object": "refund", "amount": r.amount, "currency": r.currency,
            "payment_intent": r.intent_id, "status": r.status.value, "metadata": r.metadata,
            **changes}


def test_refund_webhooks_settle_our_refund_once(d: Driver) -> None:
    org, inv, note = pending_refund(d)
    d.fake.settle_refund(note.refund.stripe_id, succeeded=True)
    body, sig = refund_event("refund.updated", as_stripe_sends(d, note.refund.stripe_id))
    assert d("webhooks.handle", body, sig).outcome is WebhookOutcome.PROCESSED
    assert d("webhooks.handle", body, sig).outcome is WebhookOutcome.DUPLICATE
    settled = d("credit_notes.get", org.id, note.id)
    assert settled.refund is not None and settled.refund.status is RefundStatus.SUCCEEDED
    for late in ("pending", "canceled"):  # out of order, or not Stripe's: nothing moves
        body, sig = refund_event("refund.updated", as_stripe_sends(d, note.refund.stripe_id,
                                                                   status=late))
        d("webhooks.handle", body, sig)
    assert d("credit_notes.get", org.id, note.id) == settled
    assert events(d, org)[-1] == "refund.succeeded"
    check_credits(d, inv)


def bank_returns(d: Driver, refund_id: str) -> tuple[bytes, str]:
    """Stripe marks a succeeded card refund failed (the card's account was closed) and sends
    `refund.failed`."""
    d.fake.refunds[refund_id] = replace(d.fake.refunds[refund_id], status=RefundStatus.FAILED,
                                        failure_reason="expired_or_canceled_card")
    return refund_event("refund.failed", as_stripe_sends(
        d, refund_id, failure_reason="expired_or_canceled_card"))


def test_a_card_refund_the_bank_returns_voids_its_credit_note_once(d: Driver) -> None:
    org, inv = paid_invoice(d)  # 230 taken by card
    note = d("credit_notes.create", org.id, inv.id, amount=100, reason=REASON,
             request_id="cn-1")
    assert note.refund is not None and note.refund.status is RefundStatus.SUCCEEDED
    body, sig = bank_returns(d, note.refund.stripe_id)

    result = d("webhooks.handle", body, sig)

    assert result.outcome is WebhookOutcome.PROCESSED
    failed = d("credit_notes.get", org.id, note.id)
    assert failed.status is CreditNoteStatus.VOID and failed.refund is not None
    assert failed.refund.status is RefundStatus.FAILED
    assert failed.refund.failure_code == "expired_or_canceled_card"
    current = d("invoices.get", org.id, inv.id)  # the card payment stands, nothing is due
    assert current.status is InvoiceStatus.PAID and current.amount_credited == 0
    assert current.amount_paid == 230 and current.amount_due == 0
    assert events(d, org)[-3:] == ["credit_note.created", "refund.succeeded", "refund.failed"]
    again, sig = refund_event("refund.failed", as_stripe_sends(d, note.refund.stripe_id))
    d("webhooks.handle", again, sig)  # a second delivery, under another event id
    back, sig = refund_event("refund.updated", as_stripe_sends(d, note.refund.stripe_id,
                                                               status="succeeded"))
    d("webhooks.handle", back, sig)  # a failed refund never moves again
    assert d("credit_notes.get", org.id, note.id) == failed
    assert events(d, org).count("refund.failed") == 1
    check_credits(d, inv)
    d("credit_notes.create", org.id, inv.id, amount=230, reason=REASON, request_id="cn-2")
    assert d.fake.refunded(inv.id) == 230  # what came back is refundable again
    check_credits(d, inv)


def test_a_returned_refund_keeps_the_earlier_credit_and_nothing_becomes_due(
        d: Driver) -> None:
    org, inv = open_invoice(d)
    d("credit_notes.create", org.id, inv.id, amount=100, reason=REASON, request_id="cn-1")
    d("invoices.pay", org.id, inv.id)  # 130 by card
    note = d("credit_notes.create", org.id, inv.id, amount=130, reason=REASON,
             request_id="cn-2")
    assert d("invoices.get", org.id, inv.id).amount_credited == 230
    body, sig = bank_returns(d, note.refund.stripe_id)

    d("webhooks.handle", body, sig)

    current = d("invoices.get", org.id, inv.id)
    assert current.status is InvoiceStatus.PAID and current.amount_credited == 100
    assert current.amount_paid == 130 and current.amount_due == 0
    check_credits(d, inv)


def test_reconciliation_records_a_returned_refund_whose_webhook_was_lost(d: Driver) -> None:
    org, inv = paid_invoice(d)
    note = d("credit_notes.create", org.id, inv.id, amount=100, reason=REASON,
             request_id="cn-1")
    bank_returns(d, note.refund.stripe_id)  # its webhook never arrives

    dry = d("reconciliation.run", org_id=org.id)
    [returned] = dry.findings
    assert returned.repair_kind == "finish_refund" and returned.ids == [note.id]
    report = d("reconciliation.run", apply=True, org_id=org.id)

    assert [f.result for f in report.findings] == ["repaired"]
    assert d("credit_notes.get", org.id, note.id).status is CreditNoteStatus.VOID
    assert d("invoices.get", org.id, inv.id).amount_credited == 0
    assert events(d, org).count("refund.failed") == 1
    assert d("reconciliation.run", org_id=org.id).clean
    check_credits(d, inv)


def test_a_failed_refund_webhook_voids_the_credit_note(d: Driver) -> None:
    org, inv, note = pending_refund(d)
    d.fake.settle_refund(note.refund.stripe_id, succeeded=False)
    charge = {"id": "ch_1", "object": "charge", "metadata": {},
              "refunds": {"data": [as_stripe_sends(d, note.refund.stripe_id)]}}
    body, sig = refund_event("charge.refunded", charge)
    assert d("webhooks.handle", body, sig).outcome is WebhookOutcome.PROCESSED
    failed = d("credit_notes.get", org.id, note.id)
    assert failed.status is CreditNoteStatus.VOID and failed.refund is not None
    assert failed.refund.status is RefundStatus.FAILED
    assert d("invoices.get", org.id, inv.id).amount_credited == 0
    assert events(d, org)[-1] == "refund.failed"
    check_credits(d, inv)


def test_a_charge_refunded_event_with_one_refund_that_disagrees_is_a_mismatch(
    d: Driver
) -> None:
    """`charge.refunded` lists the charge's refunds: ours as we recorded it (applied), and one
    that names ours with another amount. The event is a mismatch, audited and reported for a
    person, not `processed`, which would hide the disagreement."""
    org, inv, note = pending_refund(d)
    d.fake.settle_refund(note.refund.stripe_id, succeeded=True)
    ours = as_stripe_sends(d, note.refund.stripe_id)
    charge = {"id": "ch_1", "object": "charge", "metadata": {},
              "refunds": {"data": [ours, {**ours, "amount": ours["amount"] + 1}]}}
    body, sig = refund_event("charge.refunded", charge)

    result = d("webhooks.handle", body, sig)

    assert result.outcome is WebhookOutcome.MISMATCH and result.http_status == 200
    settled = d("credit_notes.get", org.id, note.id)
    assert settled.refund is not None and settled.refund.status is RefundStatus.SUCCEEDED
    assert d.db.webhook_log.count_documents({"event_id": result.event_id}) == 1
    found = d("reconciliation.run", checks=["payment"]).findings
    assert [f.ids for f in found] == [[result.event_id]]
    check_credits(d, inv)


def test_refund_webhooks_trust_our_records_not_their_metadata(d: Driver) -> None:
    org, inv, note = pending_refund(d)
    before = dump(d.db)
    for changes in ({"amount": 81}, {"currency": "eur"}, {"payment_intent": "pi_other"}):
        body, sig = refund_event("refund.updated", as_stripe_sends(
            d, note.refund.stripe_id, status="succeeded", **changes))
        assert d("webhooks.handle", body, sig).outcome is WebhookOutcome.MISMATCH
    unknown, sig = refund_event("refund.updated", {
        **as_stripe_sends(d, note.refund.stripe_id, status="failed"), "id": "re_unknown",
        "metadata": {"org_id": org.id}})
    assert d("webhooks.handle", unknown, sig).outcome is WebhookOutcome.IGNORED
    foreign, sig = refund_event("refund.updated", {"id": "re_x", "status": "failed"})
    assert d("webhooks.handle", foreign, sig).outcome is WebhookOutcome.IGNORED
    after = dump(d.db)
    for name in ("credit_notes", "invoices", "billing_events"):
        assert after[name] == before[name]


def test_reconciliation_finishes_a_stuck_refund_once(d: Driver) -> None:
    org, inv = paid_invoice(d)
    d.fake.fail_next("refund", PaymentProviderUnavailable("timeout"), after=True)
    with pytest.raises(PaymentProviderUnavailable):
        d("credit_notes.create", org.id, inv.id, amount=50, reason=REASON, request_id="cn-1")
    d.clock.advance(60)
    dry = d("reconciliation.run", org_id=org.id, stale_after=timedelta(seconds=30))
    [stuck] = [f for f in dry.findings if f.repair_kind == "finish_refund"]
    assert stuck.check.value == "payment" and stuck.result == "found"
    report = d("reconciliation.run", apply=True, org_id=org.id,
               stale_after=timedelta(seconds=30))
    [done] = [f for f in report.findings if f.repair_kind == "finish_refund"]
    assert done.result == "repaired"
    assert len(d.fake.refunds) == 1 and d.fake.refunded(inv.id) == 50
    (doc,) = d.db.credit_notes.find()
    assert doc["refund"]["status"] == "succeeded"
    assert d("reconciliation.run", org_id=org.id, stale_after=timedelta(0)).clean
    check_credits(d, inv)


def test_reconciliation_reports_credits_that_disagree_with_credit_notes(d: Driver) -> None:
    org, inv = open_invoice(d)
    d("credit_notes.create", org.id, inv.id, amount=50, reason=REASON, request_id="cn-1")
    assert d("reconciliation.run", org_id=org.id).clean
    d.db.invoices.update_one({"_id": ObjectId(inv.id)}, {"$inc": {"amount_credited": 5}})
    report = d("reconciliation.run", org_id=org.id)
    [off] = [f for f in report.findings if f.check.value == "payment"]
    assert off.ids == [inv.id] and not off.repairable


def test_without_a_gateway_unpaid_invoices_are_credited_and_refunds_refused(
        d: Driver, billing: Any) -> None:
    org, inv = open_invoice(d)
    _, paid = paid_invoice(d)
    note = billing.credit_notes.create(org.id, inv.id, amount=30, reason=REASON, request_id="x")
    assert note.settlement.value == "amount_due"
    before = dump(d.db)
    with pytest.raises(ConfigurationError):
        billing.credit_notes.create(paid.org_id, paid.id, amount=30, reason=REASON,
                                    request_id="y")
    assert dump(d.db) == before
    billing.credit_notes.create(paid.org_id, paid.id, amount=30, reason=REASON,
                                request_id="y", refund=False)
