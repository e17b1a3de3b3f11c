"""Late usage: conversations recorded after their period was invoiced are billed once, onto the
period's draft or a supplementary invoice, never onto the finalised invoice (sync and async)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId

from billing import (
    Billing,
    BillingError,
    InvalidInput,
    InvalidPeriod,
    Invoice,
    InvoiceStatus,
    NothingToBill,
    OrgNotFound,
    Period,
    PeriodNotClosed,
    faults,
)
from tests.support.billing_data import OCT, OPEN, dump, expected_total, seed_conversations
from tests.support.drivers import FLAVOURS, NOW, Clock, Driver
from tests.support.invariants import check_billed_once, check_totals_and_links
from tests.support.racing import Raced, as_tasks, in_threads

pytestmark = pytest.mark.integration

OCTOBER = Period(*OCT)


def acme(d: Driver) -> Any:
    return d("orgs.create", name="Acme", currency="usd", per_conversation=50,
             per_started_minute=10)


def invoice_doc(d: Driver, invoice_id: str) -> dict[str, Any]:
    doc: dict[str, Any] | None = d.db.invoices.find_one({"_id": ObjectId(invoice_id)})
    assert doc is not None
    return doc


def late(d: Driver, org_id: str, n: int, *, minute: int = 600) -> list[dict[str, Any]]:
    """n October conversations recorded now, after October was invoiced."""
    return seed_conversations(d.db, org_id, n, start=OCT[0] + timedelta(minutes=minute))


def test_late_usage_is_billed_on_a_supplement_never_on_the_finalised_invoice(d: Driver) -> None:
    org = acme(d)
    seed_conversations(d.db, org.id, 5)
    first = d("invoices.create_for_period", org.id, *OCT)
    finalised = invoice_doc(d, first.id)
    items = list(d.db.line_items.find({"invoice_id": ObjectId(first.id)}))
    docs = late(d, org.id, 3)

    supplement = d("invoices.bill_late_usage", org.id, OCTOBER)

    assert (supplement.supplement, supplement.status, supplement.number) == (
        1, InvoiceStatus.OPEN, 2)
    assert supplement.conversations == 3 and supplement.total == expected_total(docs, 50, 10)
    # The finalised invoice and its line items are exactly as they were.
    assert invoice_doc(d, first.id) == finalised
    assert list(d.db.line_items.find({"invoice_id": ObjectId(first.id)})) == items
    linked = {c["line_item_id"] for c in d.db.conversations.find(
        {"_id": {"$in": [c["_id"] for c in docs]}})}
    assert len(linked) == 1
    assert d.db.line_items.find_one({"_id": linked.pop()})["invoice_id"] == ObjectId(
        supplement.id)
    check_totals_and_links(d.db)
    check_billed_once(d.db)

    # Later still: the next supplement, the earlier ones untouched.
    one_more = late(d, org.id, 1, minute=900)
    second = d("invoices.bill_late_usage", org.id, OCTOBER)

    assert (second.supplement, second.number, second.conversations) == (2, 3, 1)
    assert second.total == expected_total(one_more, 50, 10)
    assert invoice_doc(d, first.id) == finalised


def test_a_repeat_finds_nothing_late_and_writes_nothing(d: Driver) -> None:
    org = acme(d)
    seed_conversations(d.db, org.id, 2)
    d("invoices.create_for_period", org.id, *OCT)
    late(d, org.id, 2)
    d("invoices.bill_late_usage", org.id, OCTOBER)
    before = dump(d.db)

    with pytest.raises(NothingToBill):
        d("invoices.bill_late_usage", org.id, OCTOBER)

    assert dump(d.db) == before


def test_a_period_never_invoiced_gets_its_invoice_and_a_kept_open_draft_stays_a_draft(
    d: Driver
) -> None:
    org = acme(d)
    seed_conversations(d.db, org.id, 2)

    first = d("invoices.bill_late_usage", org.id, OCTOBER)

    assert (first.supplement, first.status, first.conversations) == (0, InvoiceStatus.OPEN, 2)

    other = acme(d)
    seed_conversations(d.db, other.id, 2)
    draft = d("invoices.create_for_period", other.id, *OCT, finalize=False)
    late(d, other.id, 1)

    joined = d("invoices.bill_late_usage", other.id, OCTOBER)

    assert (joined.id, joined.status, joined.conversations) == (draft.id, InvoiceStatus.DRAFT, 3)
    assert d.db.invoices.count_documents({"org_id": ObjectId(other.id)}) == 1
    # Nothing more to add to the draft: NothingToBill, the draft unchanged.
    before = dump(d.db)
    with pytest.raises(NothingToBill):
        d("invoices.bill_late_usage", other.id, OCTOBER)
    assert dump(d.db) == before


def test_the_dry_run_says_how_many_are_late_and_where_they_go_and_writes_nothing(
    d: Driver
) -> None:
    org = acme(d)
    seed_conversations(d.db, org.id, 2)
    before = dump(d.db)

    fresh = d("invoices.late_usage", org.id, OCTOBER)

    assert (fresh.conversations, fresh.supplement, fresh.invoice_id) == (2, 0, None)
    d("invoices.create_for_period", org.id, *OCT)
    late(d, org.id, 3)
    before = dump(d.db)

    after_final = d("invoices.late_usage", org.id, OCTOBER)

    assert (after_final.conversations, after_final.supplement, after_final.invoice_id,
            after_final.stays_draft) == (3, 1, None, False)
    assert dump(d.db) == before
    billed = d("invoices.bill_late_usage", org.id, OCTOBER)
    assert billed.supplement == after_final.supplement
    assert billed.conversations == after_final.conversations
    assert d("invoices.late_usage", org.id, OCTOBER).conversations == 0


def bad_calls(d: Driver, org: Any, stranger: str
              ) -> list[tuple[str, Callable[[], Any], type[BillingError]]]:
    def call(*args: Any) -> Callable[[], Any]:
        return lambda: d("invoices.bill_late_usage", *args)

    return [
        ("malformed org id", call("abc", OCTOBER), InvalidInput),
        ("$ne as org id", call({"$ne": None}, OCTOBER), InvalidInput),
        ("unknown org", call(stranger, OCTOBER), OrgNotFound),
        ("period as text", call(org.id, "2026-10"), InvalidInput),
        ("period None", call(org.id, None), InvalidInput),
        ("open period", call(org.id, Period(*OPEN)), PeriodNotClosed),
        ("end before start", call(org.id, Period(OCT[1], OCT[0])), InvalidPeriod),
        ("naive dates", call(org.id, Period(datetime(2026, 10, 1), datetime(2026, 11, 1))),
         InvalidPeriod),
        ("nothing late", call(org.id, Period(datetime(2026, 9, 1, tzinfo=UTC), OCT[0])),
         NothingToBill),
    ]


def test_bad_input_gets_a_typed_error_and_writes_nothing(d: Driver) -> None:
    org = acme(d)
    seed_conversations(d.db, org.id, 2)
    d("invoices.create_for_period", org.id, *OCT)
    late(d, org.id, 1)
    before = dump(d.db)

    for label, call, expected in bad_calls(d, org, str(ObjectId())):
        with pytest.raises(expected):
            call()
        assert dump(d.db) == before, label


@pytest.fixture(params=FLAVOURS)
def chunked(request: pytest.FixtureRequest, mongo_uri: str, db_name: str) -> Iterator[Driver]:
    """A driver of each flavour billing at most 4 conversations per transaction, so racing
    calls interleave chunk by chunk."""
    driver = Driver(request.param, mongo_uri, db_name, clock=Clock(NOW),
                    max_docs_per_transaction=4, transaction_retry_seconds=60)
    try:
        yield driver
    finally:
        driver.close()


def race(d: Driver, org_id: str, n: int) -> Raced[Invoice]:
    """n calls of `bill_late_usage` at once: threads (sync), or tasks on the driver's loop."""
    calls = [lambda: d.b.invoices.bill_late_usage(org_id, OCTOBER)] * n
    if d.loop is None:
        return in_threads(calls)
    return d.loop.run_until_complete(as_tasks(calls))


def check_raced(db: Any, results: list[Invoice], errors: list[BaseException],
                docs: list[dict[str, Any]], org_id: str) -> None:
    """Every racer got the one supplementary invoice or found nothing late; every late
    conversation is on that supplement, once."""
    assert [e for e in errors if not isinstance(e, NothingToBill)] == []
    assert results and {(r.id, r.supplement) for r in results} == {(results[0].id, 1)}
    assert db.invoices.count_documents({"org_id": ObjectId(org_id)}) == 2
    supplement = db.invoices.find_one({"_id": ObjectId(results[0].id)})
    assert supplement["status"] == "open" and supplement["conversations"] == len(docs)
    assert supplement["total"] == expected_total(docs, 50, 10)
    check_totals_and_links(db)
    check_billed_once(db)


def test_racing_calls_bill_each_late_conversation_once(chunked: Driver) -> None:
    d = chunked
    org = acme(d)
    seed_conversations(d.db, org.id, 3)
    d("invoices.create_for_period", org.id, *OCT)
    docs = seed_conversations(d.db, org.id, 11, start=OCT[0] + timedelta(hours=10))

    raced = race(d, org.id, 6)

    check_raced(d.db, raced.results, raced.errors, docs, org.id)


def test_payment_attempts_are_read_per_invoice_and_tenant(d: Driver) -> None:
    org = acme(d)
    seed_conversations(d.db, org.id, 2)
    inv = d("invoices.create_for_period", org.id, *OCT)
    d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-1", make_default=True)
    d("invoices.pay", org.id, inv.id)

    attempts = d("invoices.payment_attempts", org.id, inv.id)

    assert [(p.attempt, p.status.value, p.amount) for p in attempts] == [
        (1, "succeeded", inv.total)]
    stranger = acme(d)
    with pytest.raises(BillingError):
        d("invoices.payment_attempts", stranger.id, inv.id)


def test_an_org_bills_only_its_own_late_conversations(d: Driver) -> None:
    org, other = acme(d), acme(d)
    for o in (org, other):
        seed_conversations(d.db, o.id, 2)
        d("invoices.create_for_period", o.id, *OCT)
        late(d, o.id, 2)
    theirs = {name: list(d.db[name].find({"org_id": ObjectId(other.id)}).sort("_id", 1))
              for name in ("conversations", "invoices", "line_items", "billing_events")}

    mine = d("invoices.bill_late_usage", org.id, OCTOBER)

    assert mine.org_id == org.id and mine.conversations == 2
    assert theirs == {name: list(d.db[name].find({"org_id": ObjectId(other.id)}).sort("_id", 1))
                      for name in theirs}


def test_late_usage_billed_while_a_draft_kept_open_is_collected_leaves_it_a_draft(
    client: Any, db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`create_for_period(finalize=False)` is collecting October in chunks when late billing
    (reconciliation's `unbilled` check, run by the nightly job) takes the same draft: it
    finishes collecting it and leaves it a draft, as its run asked, rather than numbering and
    opening it under the caller who is still editing it."""
    b = Billing(client, database=db_name, max_docs_per_transaction=2, clock=Clock(NOW))
    b.setup()
    org = b.orgs.create(name="Acme", currency="usd", per_conversation=50, per_started_minute=10)
    docs = seed_conversations(b.database, org.id, 5)
    meanwhile: list[Any] = []
    hit = faults.hit

    def between_chunks(name: str) -> None:
        if name == "invoice.between_chunks" and not meanwhile:
            other = Billing(client, database=db_name, clock=Clock(NOW))
            meanwhile.append(other.invoices.bill_late_usage(org.id, Period(*OCT)))
        hit(name)

    monkeypatch.setattr(faults, "hit", between_chunks)
    draft = b.invoices.create_for_period(org.id, *OCT, finalize=False)

    assert meanwhile[0].status is InvoiceStatus.DRAFT and meanwhile[0].id == draft.id
    assert (draft.status, draft.number, draft.conversations) == (InvoiceStatus.DRAFT, None, 5)
    assert draft.total == expected_total(docs, 50, 10)
    assert b.invoices.finalize(org.id, draft.id).number == 1  # the caller decides when
    check_totals_and_links(b.database)


def test_late_usage_behind_a_part_billed_drafts_stop_is_billed_in_the_same_call(
    client: Any, db_name: str
) -> None:
    """A run died between chunks; a conversation ending before where it stopped is recorded
    since. bill_late_usage resumes the draft (from where it stopped) and, in the same call,
    bills the one behind it onto a supplementary invoice: nothing of the period stays late."""
    b = Billing(client, database=db_name, max_docs_per_transaction=2, clock=Clock(NOW))
    b.setup()
    org = b.orgs.create(name="Acme", currency="usd", per_conversation=50, per_started_minute=10)
    docs = seed_conversations(b.database, org.id, 5, start=OCT[0] + timedelta(days=2))
    with faults.active({"invoice.between_chunks": "raise"}), pytest.raises(faults.InjectedFault):
        b.invoices.create_for_period(org.id, *OCT)
    behind = seed_conversations(b.database, org.id, 1, start=OCT[0] + timedelta(days=1))

    last = b.invoices.bill_late_usage(org.id, Period(*OCT))

    assert b.invoices.late_usage(org.id, Period(*OCT)).conversations == 0
    invoices = list(b.database.invoices.find({"org_id": ObjectId(org.id)}).sort("supplement", 1))
    assert [(i["supplement"], i["status"], i["conversations"]) for i in invoices] == [
        (0, "open", 5), (1, "open", 1)]
    assert last.id == str(invoices[1]["_id"])
    assert [i["total"] for i in invoices] == [expected_total(docs, 50, 10),
                                              expected_total(behind, 50, 10)]
    check_totals_and_links(b.database)


def test_a_call_that_wrote_returns_its_invoice_when_another_bills_what_it_left(
        client: Any, db_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """bill_late_usage resumes a part-billed draft (writes and finalises it), counts one
    conversation still late, and before its next round another caller (reconciliation) bills
    that one: the call returns the invoice it wrote, never NothingToBill."""
    import billing._sync.invoices as sync_invoices

    b = Billing(client, database=db_name, max_docs_per_transaction=1)
    b.setup()
    other = Billing(client, database=db_name)
    org = b.orgs.create(name="late", currency="usd", per_conversation=50, per_started_minute=10)
    seed_conversations(b.database, org.id, 3)
    with faults.active({"invoice.between_chunks": "raise"}), pytest.raises(faults.InjectedFault):
        b.invoices.create_for_period(org.id, *OCT)  # a run killed after its first chunk
    draft = b.database.invoices.find_one({"org_id": ObjectId(org.id)})
    assert draft is not None and draft["status"] == "draft" and not draft["complete"]
    b.conversations.record(org.id, started_at=OCT[0], ended_at=OCT[0], external_id="x")
    real, counted = sync_invoices.count_late_in_period, []

    def count_then_another_bills(direct: Any, oid: Any, period: Any) -> int:
        n = real(direct, oid, period)
        if not counted and n:
            other.invoices.bill_late_usage(org.id, Period.month("2026-10"))
        counted.append(n)
        return n

    monkeypatch.setattr(sync_invoices, "count_late_in_period", count_then_another_bills)
    inv = b.invoices.bill_late_usage(org.id, Period.month("2026-10"))

    assert inv.id == str(draft["_id"]) and inv.status is InvoiceStatus.OPEN
    assert inv.conversations == 3
    check_billed_once(b.database)
    check_totals_and_links(b.database)
