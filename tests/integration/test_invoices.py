"""create_for_period on a real wire-protocol server: commit, idempotency, typed errors."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from bson.codec_options import CodecOptions

from billing import (
    AsyncBilling,
    Billing,
    CurrencyMismatch,
    InvalidInput,
    InvalidPeriod,
    InvoiceNotEditable,
    InvoiceStatus,
    NothingToBill,
    OrgNotFound,
    Period,
    PeriodNotClosed,
)
from billing.adapters import queries
from tests.support.billing_data import NOV, OCT, dump, expected_total, seed_conversations
from tests.support.drivers import Driver
from tests.support.invariants import check_totals_and_links

pytestmark = pytest.mark.integration


def test_bills_every_conversation_once_with_exact_totals(billing: Billing, org: Any) -> None:
    docs = seed_conversations(billing.database, org.id, 120)
    seed_conversations(billing.database, org.id, 7, start=NOV[0])  # next period: untouched

    inv = billing.invoices.create_for_period(org.id, *OCT)

    assert inv.status is InvoiceStatus.OPEN and inv.number == 1 and inv.complete
    assert inv.total == expected_total(docs, 50, 10) and inv.conversations == 120
    db = billing.database
    assert db.conversations.count_documents({"line_item_id": None}) == 7
    stored = db.invoices.find_one({"_id": ObjectId(inv.id)})
    assert stored is not None and stored["total"] == inv.total
    assert billing.invoices.get(org.id, inv.id) == inv
    check_totals_and_links(db)


async def test_async_bills_every_conversation_once(abilling: AsyncBilling) -> None:
    org = await abilling.orgs.create(name="A", currency="eur", per_conversation=7,
                                     per_started_minute=3)
    db = abilling.database
    docs = [{"_id": ObjectId(), "org_id": ObjectId(org.id), "line_item_id": None,
             "started_at": OCT[0] + timedelta(hours=i),
             "ended_at": OCT[0] + timedelta(hours=i, seconds=90)} for i in range(40)]
    await db.conversations.insert_many(docs)

    inv = await abilling.invoices.create_for_period(org.id, *OCT)

    assert inv.total == 40 * 7 + 40 * 2 * 3 and inv.currency == "eur"
    assert await db.conversations.count_documents({"line_item_id": None}) == 0
    assert (await abilling.invoices.create_for_period(org.id, *OCT)).id == inv.id


def test_second_call_returns_the_same_invoice_and_writes_nothing(
    billing: Billing, org: Any
) -> None:
    seed_conversations(billing.database, org.id, 30)
    first = billing.invoices.create_for_period(org.id, *OCT)
    before = dump(billing.database)

    again = billing.invoices.create_for_period(org.id, *OCT)

    assert again == first
    assert dump(billing.database) == before


def test_late_conversation_is_not_billed_twice_nor_added_to_a_final_invoice(
    billing: Billing, org: Any
) -> None:
    seed_conversations(billing.database, org.id, 5)
    first = billing.invoices.create_for_period(org.id, *OCT)
    late = seed_conversations(billing.database, org.id, 1, start=OCT[0] + timedelta(days=3))

    again = billing.invoices.create_for_period(org.id, *OCT)

    assert again.total == first.total and again.conversations == 5
    conv = billing.database.conversations.find_one({"_id": late[0]["_id"]})
    assert conv is not None and conv["line_item_id"] is None  # left for reconciliation


def test_malformed_conversations_are_skipped_and_reported(billing: Billing, org: Any) -> None:
    seed_conversations(billing.database, org.id, 3)
    oid = ObjectId(org.id)
    billing.database.conversations.insert_many([
        {"org_id": oid, "started_at": "yesterday", "ended_at": OCT[0], "line_item_id": None},
        {"org_id": oid, "started_at": OCT[0] + timedelta(hours=2), "ended_at": OCT[0],
         "line_item_id": None},
        {"org_id": oid, "ended_at": OCT[0] + timedelta(hours=1), "line_item_id": None},
    ])

    inv = billing.invoices.create_for_period(org.id, *OCT)

    assert inv.conversations == 3 and inv.skipped_malformed == 3
    assert billing.database.conversations.count_documents({"line_item_id": None}) == 3


@pytest.mark.parametrize("joined", [True, False], ids=["one-lookup-read", "three-reads"])
def test_both_snapshot_read_shapes_bill_the_same(client: Any, db_name: str, joined: bool) -> None:
    """One $lookup aggregate (mongod's default) or three aggregates (SecantusDB's): the same
    invoice, in bounded chunks, with malformed conversations skipped."""
    b = Billing(client, database=db_name, max_docs_per_transaction=4, joined_reads=joined)
    b.setup()
    org = b.orgs.create(name="Acme", currency="usd", per_conversation=50, per_started_minute=10)
    docs = seed_conversations(b.database, org.id, 10)
    b.database.conversations.insert_one({"org_id": ObjectId(org.id), "started_at": "x",
                                         "ended_at": OCT[0], "line_item_id": None})

    inv = b.invoices.create_for_period(org.id, *OCT)

    assert (inv.conversations, inv.skipped_malformed) == (10, 1)
    assert inv.total == expected_total(docs, 50, 10)
    check_totals_and_links(b.database)


@pytest.mark.parametrize("excluded_by_id", [1000, 2], ids=["by-id", "by-expr"])
def test_chunks_mark_exactly_their_well_formed_conversations_among_malformed_ones(
    client: Any, db_name: str, excluded_by_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunk marking excludes the malformed conversations by id (index-only) up to
    MAX_EXCLUDED of them, by $expr beyond: both bill exactly the well-formed ones."""
    monkeypatch.setattr(queries, "MAX_EXCLUDED", excluded_by_id)
    b = Billing(client, database=db_name, max_docs_per_transaction=3)
    b.setup()
    org = b.orgs.create(name="Acme", currency="usd", per_conversation=50, per_started_minute=10)
    oid = ObjectId(org.id)
    docs = []
    for i in range(14):  # malformed ones between and tied with well-formed ones
        end = OCT[0] + timedelta(hours=i // 2)
        start = end - timedelta(minutes=1) if i % 3 else end + timedelta(minutes=5)
        docs.append({"_id": ObjectId(), "org_id": oid, "started_at": start, "ended_at": end,
                     "line_item_id": None})
    b.database.conversations.insert_many(docs)
    good = {d["_id"] for d in docs if d["started_at"] <= d["ended_at"]}

    inv = b.invoices.create_for_period(org.id, *OCT)

    billed = {d["_id"] for d in b.database.conversations.find({"line_item_id": {"$ne": None}})}
    assert billed == good
    assert (inv.conversations, inv.skipped_malformed) == (len(good), len(docs) - len(good))
    check_totals_and_links(b.database)


def odd_conversations(oid: ObjectId) -> list[dict[str, Any]]:
    """Conversations of `oid` (each matches `org_id: oid`) ending in October, one of each shape
    the data contract allows or forbids at each field the well-formedness rule reads."""
    end = OCT[0] + timedelta(days=3)
    start = end - timedelta(minutes=2)
    other = ObjectId()
    shapes: list[dict[str, Any]] = [
        {}, {"started_at": end}, {"started_at": end + timedelta(milliseconds=1)},
        {"org_id": [oid]}, {"org_id": [oid, other]}, {"org_id": [other, oid]},
        {"started_at": "2026-10-03"}, {"started_at": None}, {"started_at": [start]},
        {"started_at": [start, start]}, {"started_at": 1_790_000_000_000}, {"started_at": {}},
        {"ended_at": [end]}, {"ended_at": [end, end + timedelta(hours=1)]},
        {"started_at": [], "ended_at": [end]}, {"_id": "call-1"}, {"_id": 7},
        {"started_at": True},
    ]
    docs = [{"_id": ObjectId(), "org_id": oid, "started_at": start, "ended_at": end,
             "line_item_id": None, **shape} for shape in shapes]
    del docs[-1]["started_at"]  # and a missing start
    return docs


def test_the_head_judges_well_formedness_as_the_engine_does(billing: Billing, org: Any) -> None:
    """A chunk's pass decides well-formedness in Python (`queries.conforms`), the marking and
    counting filters in the engine (WELL_FORMED): for every shape they give the same verdict,
    and billing bills exactly the conforming ones and counts the others as malformed."""
    oid = ObjectId(org.id)
    docs = odd_conversations(oid)
    billing.database.conversations.insert_many(docs)
    read = billing.database.conversations.with_options(
        codec_options=CodecOptions(tz_aware=True, tzinfo=UTC))
    by_engine = {d["_id"] for d in read.find({"org_id": oid, **queries.WELL_FORMED})}
    by_python = {d["_id"] for d in read.find({"org_id": oid}) if queries.conforms(d)}
    assert by_python == by_engine and len(by_engine) == 2

    inv = billing.invoices.create_for_period(org.id, *OCT)

    billed = {d["_id"] for d in billing.database.conversations.find(
        {"line_item_id": {"$ne": None}})}
    assert billed == by_engine
    assert (inv.conversations, inv.skipped_malformed) == (2, len(docs) - 2)
    check_totals_and_links(billing.database)


@pytest.mark.parametrize("ids", [["call-0", "call-1", "call-2"], ["call-0", None, None]],
                         ids=["all-strings", "mixed"])
def test_ids_that_are_not_object_ids_are_malformed_and_never_wedge_a_period(
    client: Any, db_name: str, ids: list[Any]
) -> None:
    """The host's own call ids as `_id`, tied at one end time across a chunk's end: a chunk
    resumes after an (ended_at, _id) key, and MongoDB compares ids of different types by type
    first, so they are malformed (counted, reported, never billed) and the rest is billed."""
    b = Billing(client, database=db_name, max_docs_per_transaction=2,
                transaction_retry_seconds=5)
    b.setup()
    org = b.orgs.create(name="ids", currency="usd", per_conversation=50, per_started_minute=10)
    end = OCT[0] + timedelta(days=3)
    docs = [{"_id": i if i is not None else ObjectId(), "org_id": ObjectId(org.id),
             "started_at": end - timedelta(minutes=1), "ended_at": end, "line_item_id": None}
            for i in ids]
    docs.append({"_id": ObjectId(), "org_id": ObjectId(org.id), "started_at": OCT[0],
                 "ended_at": OCT[0] + timedelta(seconds=30), "line_item_id": None})
    b.database.conversations.insert_many(docs)
    strings = sum(isinstance(i, str) for i in ids)

    inv = b.invoices.create_for_period(org.id, *OCT)

    assert (inv.conversations, inv.skipped_malformed) == (len(docs) - strings, strings)
    assert inv.total == (len(docs) - strings) * (50 + 10)
    assert b.database.conversations.count_documents(
        {"_id": {"$type": "string"}, "line_item_id": None}) == strings
    found = b.reconciliation.run(checks=["malformed"]).findings
    assert sum(f.check == "malformed" for f in found) >= 1
    check_totals_and_links(b.database)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("excluded", [1000, 0, 1, 3],
                         ids=["roomy-head", "head-0", "head-1", "head-3"])
def test_random_ties_and_malformed_conversations_are_billed_exactly(
    client: Any, db_name: str, seed: int, excluded: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunk ends fall inside and outside runs of equal end times, among malformed ones: the
    marking filter (plain range, or exact key on a tie) bills exactly the well-formed ones,
    and the count of malformed ones is exact. A small MAX_EXCLUDED makes the head of each
    chunk's pass too short for its malformed ones or cuts it inside a tie, so the reads past
    the head are taken too."""
    monkeypatch.setattr(queries, "MAX_EXCLUDED", excluded)
    rng = random.Random(seed)
    b = Billing(client, database=db_name, max_docs_per_transaction=rng.randint(2, 5))
    b.setup()
    org = b.orgs.create(name="Acme", currency="usd", per_conversation=50, per_started_minute=10)
    oid = ObjectId(org.id)
    docs = []
    for _ in range(rng.randint(10, 30)):
        end = OCT[0] + timedelta(minutes=rng.randint(0, 8))
        start = end - timedelta(seconds=rng.randint(0, 90)) if rng.random() < 0.8 \
            else end + timedelta(seconds=1)
        docs.append({"_id": ObjectId(), "org_id": oid, "started_at": start, "ended_at": end,
                     "line_item_id": None})
    b.database.conversations.insert_many(docs)
    good = [d for d in docs if d["started_at"] <= d["ended_at"]]

    inv = b.invoices.create_for_period(org.id, *OCT)

    billed = {d["_id"] for d in b.database.conversations.find({"line_item_id": {"$ne": None}})}
    assert billed == {d["_id"] for d in good}
    assert inv.total == expected_total(good, 50, 10)
    assert inv.skipped_malformed == len(docs) - len(good)
    check_totals_and_links(b.database)


def test_invoice_numbers_are_sequential_per_org(billing: Billing, org: Any) -> None:
    other = billing.orgs.create(name="Other", currency="usd", per_conversation=1,
                                per_started_minute=1)
    months = [datetime(2026, m, 1, tzinfo=UTC) for m in (6, 7, 8, 9)]
    for start in months:
        seed_conversations(billing.database, org.id, 2, start=start)
        seed_conversations(billing.database, other.id, 1, start=start)
    numbers = []
    for start, end in reversed(list(zip(months, months[1:], strict=False))):
        numbers.append(billing.invoices.create_for_period(org.id, start, end).number)
        billing.invoices.create_for_period(other.id, start, end)
    assert numbers == [1, 2, 3]
    assert billing.orgs.get(org.id).invoice_seq == 3
    assert billing.orgs.get(other.id).invoice_seq == 3


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((datetime(2026, 10, 1), datetime(2026, 11, 1)), InvalidPeriod),  # naive
        ((OCT[1], OCT[0]), InvalidPeriod),  # end before start
        ((OCT[0], OCT[0]), InvalidPeriod),  # empty
        ((OCT[0], datetime.now(UTC) + timedelta(days=1)), PeriodNotClosed),
        (("2026-10-01", OCT[1]), InvalidPeriod),
    ],
)
def test_bad_periods_raise_typed_errors_and_write_nothing(
    billing: Billing, org: Any, args: tuple[Any, Any], error: type[Exception]
) -> None:
    seed_conversations(billing.database, org.id, 3)
    before = dump(billing.database)
    with pytest.raises(error):
        billing.invoices.create_for_period(org.id, *args)
    assert dump(billing.database) == before


@pytest.mark.parametrize("org_id", ["nope", {"$ne": None}, 12, "0" * 23, None])
def test_malformed_org_ids_are_refused(billing: Billing, org_id: Any) -> None:
    before = dump(billing.database)
    with pytest.raises(InvalidInput):
        billing.invoices.create_for_period(org_id, *OCT)
    assert dump(billing.database) == before


def test_unknown_org_and_nothing_to_bill(billing: Billing, org: Any) -> None:
    before = dump(billing.database)
    with pytest.raises(OrgNotFound):
        billing.invoices.create_for_period(str(ObjectId()), *OCT)
    with pytest.raises(NothingToBill):
        billing.invoices.create_for_period(org.id, *OCT)
    assert dump(billing.database) == before


def test_line_item_edits_keep_totals_and_only_on_drafts(billing: Billing, org: Any) -> None:
    seed_conversations(billing.database, org.id, 4)
    draft = billing.invoices.create_for_period(org.id, *OCT, finalize=False)
    assert draft.status is InvoiceStatus.DRAFT and draft.complete and draft.number is None

    item = billing.line_items.add(org.id, draft.id, description="Setup fee", quantity=2,
                                  unit_amount=1500)
    with_fee = billing.invoices.get(org.id, draft.id)
    assert with_fee.total == draft.total + 3000
    with pytest.raises(CurrencyMismatch):
        billing.line_items.add(org.id, draft.id, description="x", quantity=1, unit_amount=1,
                               currency="eur")
    usage_line = draft.line_items[0]
    with pytest.raises(InvoiceNotEditable):
        billing.line_items.remove(org.id, draft.id, usage_line.id)
    assert billing.line_items.remove(org.id, draft.id, item.id).total == draft.total
    check_totals_and_links(billing.database)

    final = billing.invoices.finalize(org.id, draft.id)
    assert final.status is InvoiceStatus.OPEN and final.number == 1
    assert billing.invoices.finalize(org.id, draft.id) == final  # idempotent
    before = dump(billing.database)
    with pytest.raises(InvoiceNotEditable):
        billing.line_items.add(org.id, final.id, description="late", quantity=1, unit_amount=1)
    assert dump(billing.database) == before


def test_void_keeps_conversations_billed_once(billing: Billing, org: Any) -> None:
    seed_conversations(billing.database, org.id, 3)
    inv = billing.invoices.create_for_period(org.id, *OCT)
    voided = billing.invoices.void(org.id, inv.id)
    assert voided.status is InvoiceStatus.VOID
    assert billing.database.conversations.count_documents({"line_item_id": None}) == 0
    assert billing.invoices.create_for_period(org.id, *OCT).status is InvoiceStatus.VOID


def test_other_orgs_ids_are_not_found_and_change_nothing(billing: Billing, org: Any) -> None:
    seed_conversations(billing.database, org.id, 2)
    inv = billing.invoices.create_for_period(org.id, *OCT, finalize=False)
    intruder = billing.orgs.create(name="Evil", currency="usd", per_conversation=1,
                                   per_started_minute=1)
    before = dump(billing.database)
    for call in (
        lambda: billing.invoices.get(intruder.id, inv.id),
        lambda: billing.invoices.finalize(intruder.id, inv.id),
        lambda: billing.invoices.void(intruder.id, inv.id),
        lambda: billing.line_items.add(intruder.id, inv.id, description="x", quantity=1,
                                       unit_amount=1),
        lambda: billing.line_items.remove(intruder.id, inv.id, inv.line_items[0].id),
    ):
        with pytest.raises(LookupError):
            call()
    assert dump(billing.database) == before


def test_record_is_idempotent_per_external_id(billing: Billing, org: Any) -> None:
    start = OCT[0] + timedelta(days=1)
    first = billing.conversations.record(org.id, started_at=start,
                                         ended_at=start + timedelta(minutes=3), external_id="c-1")
    again = billing.conversations.record(org.id, started_at=start,
                                         ended_at=start + timedelta(minutes=3), external_id="c-1")
    assert again == first
    assert billing.database.conversations.count_documents({"org_id": ObjectId(org.id)}) == 1
    with pytest.raises(OrgNotFound):
        billing.conversations.record(str(ObjectId()), started_at=start, ended_at=start)


def test_setup_is_idempotent_and_queries_use_indexes(billing: Billing, org: Any) -> None:
    billing.setup()
    plan = billing.database.conversations.find(
        {"org_id": ObjectId(org.id), "line_item_id": None,
         "ended_at": {"$gte": OCT[0], "$lt": OCT[1]}}
    ).sort([("ended_at", 1), ("_id", 1)]).explain()
    assert "IXSCAN" in str(plan["queryPlanner"]["winningPlan"])


def test_finalize_is_idempotent_once_the_invoice_was_paid(d: Driver) -> None:
    """finalize's docstring: 'Idempotent.' A repeat of finalize (its answer lost, retried after
    collect or pay took the money) must return the invoice, not InvoiceNotEditable."""
    org = d("orgs.create", name="Acme", currency="usd", per_conversation=50,
            per_started_minute=10)
    seed_conversations(d.db, org.id, 4)
    draft = d("invoices.create_for_period", org.id, *OCT, finalize=False)
    opened = d("invoices.finalize", org.id, draft.id)
    d("payment_methods.attach", org.id, "pm_card_visa", request_id="r1")
    d("invoices.pay", org.id, opened.id)
    assert d("invoices.get", org.id, opened.id).status is InvoiceStatus.PAID

    again = d("invoices.finalize", org.id, draft.id)  # a repeat after a lost answer

    assert again.id == opened.id and again.number == opened.number
    assert again.status is InvoiceStatus.PAID


def _bad_org(billing: Billing, **fields: Any) -> str:
    doc = {"_id": ObjectId(), "name": "Bad", "currency": "usd",
           "prices": {"per_conversation": 1, "per_started_minute": 1}, "invoice_seq": 0,
           "created_at": datetime(2026, 1, 1, tzinfo=UTC), **fields}
    # As another writer could store it (the validator refuses these shapes since they were
    # found: older databases, or writes that bypass it).
    billing.database.orgs.insert_one(doc, bypass_document_validation=True)
    seed_conversations(billing.database, str(doc["_id"]), 3)
    return str(doc["_id"])


def test_an_org_whose_event_seq_is_not_an_int_is_unreadable_not_a_retry(
        client: Any, db_name: str, billing: Billing, org: Any) -> None:
    """event_seq is not in the orgs validator; pydantic's lax int reads "3" as 3, then every
    event guard (`event_seq: 3`) misses the stored "3": each org stalls for
    transaction_retry_seconds and fails with TransientDatabaseError 'retry the call', which
    never helps. A stored document billing cannot use must be UnreadableDocument (not
    retryable), at once."""
    bad = _bad_org(billing, event_seq="3")
    seed_conversations(billing.database, org.id, 3)
    fast = Billing(client, database=db_name, transaction_retry_seconds=2)

    summary = fast.invoices.run_period(Period(*OCT))

    outcome = {r.org_id: r for r in summary.results}
    assert outcome[org.id].outcome.value == "invoiced"
    failed = outcome[bad]
    assert failed.outcome.value == "failed"
    assert failed.error is not None and failed.error.startswith("UnreadableDocument"), failed.error
    assert not failed.retryable


def test_an_org_whose_currency_is_not_iso_4217_is_not_invoiced(billing: Billing, org: Any) -> None:
    """The data contract: orgs.currency is ISO 4217; money is refused in an unknown currency
    (InvalidMoney). The validator's ^[a-z]{3}$ admits 'xyz', and billing numbers and opens an
    invoice in it (a number spent on an invoice Stripe cannot charge)."""
    bad = _bad_org(billing, currency="xyz")

    summary = billing.invoices.run_period(Period(*OCT))

    result = next(r for r in summary.results if r.org_id == bad)
    assert result.outcome.value == "failed", (result.outcome, result.invoice and
                                              result.invoice.currency)
    assert billing.database.invoices.count_documents({"org_id": ObjectId(bad)}) == 0
