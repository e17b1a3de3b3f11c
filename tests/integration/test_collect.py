"""Collection runs (`collections.run`): due invoices charged once under the retry schedule,
declines retried on their day, 3-D Secure and processing reported as waiting, lost cards waiting
for a new default, concurrent runs never making two attempts (sync and async, SecantusDB)."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from bson import ObjectId

from billing import LeaseNotAcquired, PaymentProviderUnavailable, WebhookOutcome
from billing.collection_runs import Result
from tests.integration.test_payment_states import event
from tests.support.billing_data import OCT, dump, seed_conversations
from tests.support.drivers import NOW, Clock, Driver
from tests.support.racing import in_threads

pytestmark = pytest.mark.integration
FINALIZED = NOW  # where the `d` fixture's clock starts
SEP = (OCT[0] - timedelta(days=30), OCT[0])


def org_with_invoice(d: Driver, token: str, *, name: str = "Acme") -> tuple[Any, Any]:
    org = d("orgs.create", name=name, currency="usd", per_conversation=50, per_started_minute=10)
    seed_conversations(d.db, org.id, 3)
    inv = d("invoices.create_for_period", org.id, *OCT)
    d("payment_methods.attach", org.id, token, request_id=f"r-{ObjectId()}")
    return org, inv


def results(report: Any) -> dict[str, str]:
    return {i.invoice_id: i.result.value for i in report.items}


def test_a_dry_run_lists_what_is_due_and_writes_nothing(d: Driver) -> None:
    _, due = org_with_invoice(d, "pm_card_visa")
    _, waiting = org_with_invoice(d, "pm_card_threeDSecure2Required", name="Three")
    before = dump(d.db)
    report = d("collections.run")
    assert dump(d.db) == before and d.fake.intents == {}
    assert results(report) == {due.id: "would_charge", waiting.id: "would_charge"}
    assert report.charged() == {"usd": due.total + waiting.total} and not report.ok


def test_declines_are_retried_on_their_day_and_a_new_card_is_due_at_once(d: Driver) -> None:
    org, inv = org_with_invoice(d, "pm_card_chargeCustomerFail")
    d("orgs.set_collection_schedule", org.id, [0, 3, 5])
    first = d("collections.run", apply=True)
    assert results(first) == {inv.id: "declined"} and not first.ok
    again = d("collections.run", apply=True)  # the same day: not due, nothing charged
    assert results(again) == {inv.id: "not_due"} and again.ok
    assert len(d.fake.intents) == 1
    d.clock.advance(3 * 86_400)
    third = d("collections.run", apply=True)
    assert results(third) == {inv.id: "declined"} and len(d.fake.intents) == 2
    d("payment_methods.attach", org.id, "pm_card_visa", request_id="new", make_default=True)
    paid = d("collections.run", apply=True)  # a new default: due at once, not on day 5
    assert results(paid) == {inv.id: "paid"} and paid.ok
    assert d.fake.taken(inv.id) == inv.total
    assert d("collections.run", apply=True).items == []  # paid: nothing more


def test_the_last_failure_makes_the_invoice_uncollectible_and_collection_stops(
    d: Driver
) -> None:
    org, inv = org_with_invoice(d, "pm_card_chargeCustomerFail")
    d("orgs.set_collection_schedule", org.id, [0, 1])
    d("collections.run", apply=True)
    d.clock.advance(86_400)
    d("collections.run", apply=True)
    doc = d.db.invoices.find_one({"_id": ObjectId(inv.id)})
    assert doc is not None and doc["status"] == "uncollectible"
    d.clock.advance(30 * 86_400)
    assert d("collections.run", apply=True).items == []
    assert len(d.fake.intents) == 2


def test_three_d_secure_and_processing_wait_and_are_not_retried(d: Driver) -> None:
    _, secure = org_with_invoice(d, "pm_card_threeDSecure2Required")
    _, debit = org_with_invoice(d, "pm_bank_debit", name="Debit")
    first = d("collections.run", apply=True)
    assert results(first) == {secure.id: "waiting", debit.id: "waiting"} and not first.ok
    d.clock.advance(10 * 86_400)
    second = d("collections.run", apply=True)
    assert results(second) == {secure.id: "waiting", debit.id: "waiting"}
    assert len(d.fake.intents) == 2  # no new attempt while Stripe holds one


def test_a_lost_card_waits_for_a_new_default(d: Driver) -> None:
    org, inv = org_with_invoice(d, "pm_card_lostCard")
    assert results(d("collections.run", apply=True)) == {inv.id: "declined"}
    d.clock.advance(30 * 86_400)
    waiting = d("collections.run", apply=True)
    assert results(waiting) == {inv.id: "needs_method"} and len(d.fake.intents) == 1
    doc = d.db.invoices.find_one({"_id": ObjectId(inv.id)})
    assert doc is not None and doc["status"] == "open"  # no attempt was burnt
    d("payment_methods.attach", org.id, "pm_card_visa", request_id="new", make_default=True)
    assert results(d("collections.run", apply=True)) == {inv.id: "paid"}


def test_an_audit_record_per_apply_run_and_the_lease(d: Driver) -> None:
    _, inv = org_with_invoice(d, "pm_card_visa")
    report = d("collections.run", apply=True)
    run = d.db.collection_runs.find_one({"_id": ObjectId(report.run_id)})
    assert run is not None and run["status"] == "finished"
    assert run["charged"] == {"usd": inv.total}
    assert d.db.reconciliation_leases.count_documents({}) == 0  # released
    d.db.reconciliation_leases.insert_one({"_id": "collect:shard:0/1", "holder": "other",
                                           "expires_at": FINALIZED + timedelta(hours=1)})
    with pytest.raises(LeaseNotAcquired):
        d("collections.run", apply=True)


def test_a_killed_runs_record_is_closed_by_the_run_that_takes_over_its_lease(
    d: Driver
) -> None:
    """A run SIGKILLed mid-collection leaves its record `running` and its lease until it
    expires; the run that takes the lapsed lease over marks that record `abandoned` (as
    reconciliation does), instead of leaving it running forever."""
    _, inv = org_with_invoice(d, "pm_card_visa")
    dead = ObjectId()  # what the killed run left: its record, its lease
    d.db.collection_runs.insert_one({"_id": dead, "status": "running", "mode": "apply",
                                     "started_at": FINALIZED, "finished_at": None})
    d.db.reconciliation_leases.insert_one({"_id": "collect:shard:0/1", "holder": str(dead),
                                           "expires_at": FINALIZED + timedelta(seconds=300)})
    with pytest.raises(LeaseNotAcquired):  # still valid: the next run waits it out
        d("collections.run", apply=True)
    assert d.db.collection_runs.find_one({"_id": dead})["status"] == "running"
    d.clock.advance(301)

    report = d("collections.run", apply=True)

    closed = d.db.collection_runs.find_one({"_id": dead})
    assert closed["status"] == "abandoned" and closed["finished_at"] is not None
    assert report.run_id in closed["error"]
    assert d.db.collection_runs.find_one({"_id": ObjectId(report.run_id)})["status"] == \
        "finished"
    assert results(report) == {inv.id: "paid"} and d.fake.taken(inv.id) == inv.total


def test_an_invoice_paid_by_another_call_while_the_run_charges_is_not_a_failure(
    d: Driver
) -> None:
    """The run reads an org's open invoices, then charges them one by one; while it charges the
    first, the host pays the other (its own `pay()`). The run then finds that one paid: it
    charges nothing more and reports no failure (exit 0), as had it read it paid."""
    org, first = org_with_invoice(d, "pm_card_visa")
    seed_conversations(d.db, org.id, 2, start=SEP[0])
    second = d("invoices.create_for_period", org.id, *SEP)
    # Inside the run's first confirm (whichever invoice it charges first): the host pays both;
    # the one the run holds is refused (PaymentInProgress), the other is paid.
    host = [d.during("confirm_intent", "invoices.pay", org.id, inv.id)
            for inv in (first, second)]

    report = d("collections.run", apply=True)

    outcomes = [type(out[0]).__name__ for out in host]
    assert sorted(outcomes) == ["Payment", "PaymentInProgress"]
    assert [i.result for i in report.items] == [Result.PAID]
    assert report.ok
    for inv in (first, second):
        assert d.fake.taken(inv.id) == inv.total  # once each
        assert d.db.payments.count_documents({"invoice_id": ObjectId(inv.id)}) == 1
        assert d("invoices.get", org.id, inv.id).status.value == "paid"


def test_an_attempt_settled_by_another_call_while_the_run_settles_is_reported_once(
    d: Driver
) -> None:
    """Both invoices of an org wait on a `processing` debit that Stripe has since charged (its
    webhooks were lost). The run reads both as waiting and settles them one by one; while it
    asks Stripe about the first, the host settles the other (`invoices.settle_payment`). The
    run then finds that one paid by someone else: it reports it no more than one it had read
    paid, so the runs' reports of money collected add up to what was collected."""
    org, first = org_with_invoice(d, "pm_bank_debit")
    seed_conversations(d.db, org.id, 2, start=SEP[0])
    second = d("invoices.create_for_period", org.id, *SEP)
    assert set(results(d("collections.run", apply=True)).values()) == {"waiting"}
    for intent_id in list(d.fake.intents):
        d.fake.settle_processing(intent_id)  # Stripe charged both; no webhook came
    host = [d.during("retrieve_intent", "invoices.settle_payment", org.id, inv.id)
            for inv in (first, second)]

    report = d("collections.run", apply=True)

    # The host's two settles ran inside the run's first question to Stripe: the invoice the
    # run held was refused to the host (PaymentInProgress), the other settled by the host.
    assert sorted(type(out[0]).__name__ for out in host) == ["Payment", "PaymentInProgress"]
    assert [i.result for i in report.items] == [Result.PAID]
    assert report.charged() == {"usd": report.items[0].amount}
    for inv in (first, second):
        assert d.fake.taken(inv.id) == inv.total  # once each
        assert d("invoices.get", org.id, inv.id).status.value == "paid"


def test_a_late_webhook_that_frees_the_runs_lease_lets_only_one_run_report_the_payment(
    d: Driver
) -> None:
    """A debit Stripe has since charged (its webhook lost) is settled by run A; while A asks
    Stripe, a late `payment_intent.processing` webhook releases A's hold on the invoice, and a
    run B on that org takes it and records the success first. A then records nothing new: only
    B reports the payment."""
    org, inv = org_with_invoice(d, "pm_bank_debit")
    assert results(d("collections.run", apply=True)) == {inv.id: "waiting"}
    (intent_id,) = d.fake.intents
    pay = d.db.payments.find_one({"invoice_id": ObjectId(inv.id)})
    assert pay is not None and pay["status"] == "processing"
    d.fake.settle_processing(intent_id)  # Stripe charged; no webhook yet
    late = {"id": intent_id, "object": "payment_intent", "status": "processing",
            "amount": pay["amount"], "currency": pay["currency"],
            "customer": pay["customer_id"], "metadata": {"org_id": org.id}}
    hook = d.during("retrieve_intent", "webhooks.handle", *event("payment_intent.processing",
                                                                 late))
    other = d.during("retrieve_intent", "collections.run", apply=True, org_id=org.id)

    report_a = d("collections.run", apply=True)

    assert hook[0].outcome is WebhookOutcome.PROCESSED, hook
    report_b = other[0]
    paid = [i for r in (report_a, report_b) for i in r.items if i.result is Result.PAID]
    assert len(paid) == 1, [i.as_json() for i in paid]
    assert d.fake.taken(inv.id) == inv.total == paid[0].amount
    assert d("invoices.get", org.id, inv.id).status.value == "paid"


def test_the_run_reports_what_it_charged_after_a_credit_note_lowered_the_amount_due(
    d: Driver
) -> None:
    """The run reads the org's open invoices, then charges them one by one; while it charges
    the first, the host credits the second. The second is charged its new amount due, and the
    run reports (and audits) that amount, not the one it read."""
    org, first = org_with_invoice(d, "pm_card_visa")
    seed_conversations(d.db, org.id, 2, start=SEP[0])
    second = d("invoices.create_for_period", org.id, *SEP)
    credited = [d.during("confirm_intent", "credit_notes.create", org.id, inv.id, amount=60,
                         reason="order_change", request_id=f"cn-{inv.id}")
                for inv in (first, second)]

    report = d("collections.run", apply=True)

    # Inside the first charge: the invoice being charged refuses a credit, the other takes it.
    assert sorted(type(c[0]).__name__ for c in credited) == ["CreditNote", "PaymentInProgress"]
    taken = d.fake.taken(first.id) + d.fake.taken(second.id)
    assert taken == first.total + second.total - 60
    assert [i.result for i in report.items] == [Result.PAID, Result.PAID]
    assert report.charged() == {"usd": taken}
    audit = d.db.collection_runs.find_one({"_id": ObjectId(report.run_id)})
    assert audit is not None and audit["charged"] == {"usd": taken}


def test_one_orgs_bad_document_never_stops_the_run_for_the_others(d: Driver) -> None:
    """An invoice the validator accepts but billing cannot read (no `created_at`): its org is
    reported as failed, with the error, and the next org is still charged."""
    bad_org, bad = org_with_invoice(d, "pm_card_visa", name="Bad")
    good_org, good = org_with_invoice(d, "pm_card_visa", name="Good")
    assert ObjectId(bad_org.id) < ObjectId(good_org.id)  # read first
    d.db.invoices.update_one({"_id": ObjectId(bad.id)}, {"$unset": {"created_at": ""}})

    report = d("collections.run", apply=True)

    assert results(report) == {good.id: "paid"}
    assert d.fake.taken(good.id) == good.total and d.fake.taken(bad.id) == 0
    assert [e["org_id"] for e in report.errors] == [bad_org.id] and not report.ok
    assert "UnreadableDocument" in report.errors[0]["error"]
    assert report.as_json()["errors"] == report.errors and report.orgs_scanned == 2


def test_an_invoice_billing_cannot_read_keeps_the_orgs_charges_in_the_report(d: Driver) -> None:
    """The run charges an org's first invoice, then its second fails on a line item billing
    cannot read: the charge stays in the report, its total and its audit, and the bad invoice
    is reported failed with the error."""
    org, first = org_with_invoice(d, "pm_card_visa")
    seed_conversations(d.db, org.id, 2, start=SEP[0])
    second = d("invoices.create_for_period", org.id, *SEP)
    d.db.line_items.update_one({"invoice_id": ObjectId(second.id)},
                               {"$unset": {"description": ""}})
    seen: list[Any] = []

    report = d("collections.run", apply=True,
               progress=lambda done, total, org_run: seen.append(org_run))

    assert d.fake.taken(first.id) == first.total > 0 and d.fake.taken(second.id) == 0
    assert results(report) == {first.id: "paid", second.id: "failed"} and not report.ok
    assert "UnreadableDocument" in report.items[1].detail
    assert report.charged() == {"usd": first.total}
    audit = d.db.collection_runs.find_one({"_id": ObjectId(report.run_id)})
    assert audit is not None and audit["charged"] == {"usd": first.total}
    assert [i.invoice_id for i in seen[0].items] == [first.id, second.id]


def test_stripe_not_answering_is_not_reported_as_a_decline(d: Driver) -> None:
    """Confirmed in Stripe (the money moved) but neither the answer nor a retrieve came back:
    the attempt is in flight, reported waiting; Stripe unreachable before anything was sent:
    failed. Neither is `declined` (the attempt failed)."""
    _, charged = org_with_invoice(d, "pm_card_visa", name="Charged")
    d.fake.fail_next("confirm_intent", PaymentProviderUnavailable("timeout"), after=True)
    d.fake.fail_next("retrieve_intent", PaymentProviderUnavailable("timeout"))
    first = d("collections.run", apply=True)
    assert d.fake.taken(charged.id) == charged.total
    assert results(first) == {charged.id: "waiting"}

    _, unsent = org_with_invoice(d, "pm_card_visa", name="Unsent")
    d.fake.fail_next("create_intent", PaymentProviderUnavailable("connection refused"))
    second = d("collections.run", apply=True, org_id=unsent.org_id)
    assert d.fake.taken(unsent.id) == 0
    assert results(second) == {unsent.id: "failed"} and not second.ok


def test_an_open_invoice_of_zero_is_marked_paid_without_stripe(d: Driver) -> None:
    org = d("orgs.create", name="Free", currency="usd", per_conversation=0,
            per_started_minute=0)
    seed_conversations(d.db, org.id, 2)
    inv = d("invoices.create_for_period", org.id, *OCT)
    assert (inv.total, inv.status.value) == (0, "open")
    assert results(d("collections.run")) == {inv.id: "would_charge"}

    report = d("collections.run", apply=True)

    assert results(report) == {inv.id: "paid"} and report.ok
    assert d.db.invoices.find_one({"_id": ObjectId(inv.id)})["status"] == "paid"
    assert d.fake.intents == {}


def test_concurrent_runs_on_overlapping_shards_make_one_attempt(
    mongo_uri: str, db_name: str
) -> None:
    d = Driver("sync", mongo_uri, db_name, clock=Clock(FINALIZED))
    try:
        invoices = [org_with_invoice(d, "pm_card_visa", name=f"O{i}")[1] for i in range(6)]
        raced = in_threads([partial(d.b.collections.run, apply=True, shard=shard)
                            for shard in ("0/1", "0/2", "1/2")], timeout=120)
        assert raced.errors == []
        reports = raced.results
        assert len(reports) == 3
        for inv in invoices:
            assert d.fake.taken(inv.id) == inv.total  # once each, never twice
            assert d.db.payments.count_documents({"invoice_id": ObjectId(inv.id)}) == 1
        outcomes = [i.result for r in reports for i in r.items]
        assert outcomes.count(Result.PAID) == len(invoices)
        assert set(outcomes) <= {Result.PAID, Result.BUSY, Result.WAITING}
    finally:
        d.close()
