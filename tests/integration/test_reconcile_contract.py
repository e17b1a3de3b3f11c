"""Data that breaks the contract, on SecantusDB: never billed twice, never invisible, never the
end of a run.

The host backend owns the conversations, so a conversation can be moved to another org after
billing, hold an array where a date or an org id belongs, or carry a `line_item_id` that is
neither null nor an ObjectId. The checks are on the documents and the money after each run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe
from bson import ObjectId

from billing import AsyncBilling, Billing, InvalidMoney, Period
from billing.adapters import queries
from billing.domain.money import MAX_AMOUNT
from billing.reconcile_findings import Check
from tests.support.billing_data import OCT, dump, seed_conversations, untold
from tests.support.invariants import check_totals_and_links

pytestmark = pytest.mark.integration
SEP = (datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC))


def new_org(b: Billing, name: str, **prices: int) -> Any:
    return b.orgs.create(name=name, currency="usd", per_conversation=prices.get("conv", 50),
                         per_started_minute=prices.get("minute", 10))


def oid(value: Any) -> ObjectId:
    return ObjectId(str(value))


def money(db: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every invoice's (org, supplement, status, total) and every conversation's link."""
    invoices = sorted((str(i["org_id"]), i["supplement"], i["status"], i["total"])
                      for i in db.invoices.find({}))
    links = sorted((str(c["_id"]), repr(c.get("line_item_id"))) for c in db.conversations.find({}))
    return invoices, links


def results(report: Any, check: Check) -> list[tuple[str, str, int]]:
    return sorted((f.org_id, f.result, f.count) for f in report.findings if f.check is check)


# ---- reconciliation never bills twice -----------------------------------------------------------

def test_a_conversation_moved_to_another_org_after_billing_is_reported_not_rebilled(
    billing: Billing
) -> None:
    db = billing.database
    first, second = new_org(billing, "first"), new_org(billing, "second")
    convs = seed_conversations(db, first.id, 3)
    billing.invoices.create_for_period(first.id, *OCT)
    db.conversations.update_one({"_id": convs[0]["_id"]}, {"$set": {"org_id": oid(second.id)}})
    before = money(db)

    for _ in range(2):  # every nightly run: the same findings, nothing billed again
        report = billing.reconciliation.run(apply=True)

        assert money(db) == before
        assert db.invoices.count_documents({"org_id": oid(second.id)}) == 0
        assert results(report, Check.DANGLING_LINK) == [(second.id, "reported", 1)]
        # The first org's line item bills 3 conversations but only 2 of its own point at it.
        assert results(report, Check.USAGE_QUANTITY) == [(first.id, "reported", 1)]
        assert not report.clean


def test_an_array_org_id_is_never_released_nor_billed_again(billing: Billing) -> None:
    db = billing.database
    first, second = new_org(billing, "first"), new_org(billing, "second")
    convs = seed_conversations(db, first.id, 2)
    billing.invoices.create_for_period(first.id, *OCT)
    db.conversations.update_one({"_id": convs[0]["_id"]},
                                {"$set": {"org_id": [oid(first.id), oid(second.id)]}})
    unbilled = {"_id": ObjectId(), "org_id": [oid(first.id), oid(second.id)],
                "started_at": SEP[0], "ended_at": SEP[0] + timedelta(seconds=5),
                "line_item_id": None}
    db.conversations.insert_one(unbilled)
    before = money(db)

    for _ in range(3):
        report = billing.reconciliation.run(apply=True)

        assert money(db) == before
        assert results(report, Check.DANGLING_LINK) == [(second.id, "reported", 1)]
        # Both conversations break the contract in both orgs' scans; neither is billed.
        assert results(report, Check.MALFORMED) == [(first.id, "reported", 2),
                                                    (second.id, "reported", 2)]
        assert report.counts[Check.UNBILLED.value] == 0


async def test_async_an_array_org_id_is_never_released_nor_billed_again(
    abilling: AsyncBilling
) -> None:
    db = abilling.database
    first = await abilling.orgs.create(name="first", currency="usd", per_conversation=50,
                                       per_started_minute=10)
    second = await abilling.orgs.create(name="second", currency="usd", per_conversation=50,
                                        per_started_minute=10)
    conv = {"_id": ObjectId(), "org_id": oid(first.id), "started_at": OCT[0],
            "ended_at": OCT[0] + timedelta(seconds=30), "line_item_id": None}
    await db.conversations.insert_one(conv)
    invoice = await abilling.invoices.create_for_period(first.id, *OCT)
    await db.conversations.update_one({"_id": conv["_id"]},
                                      {"$set": {"org_id": [oid(first.id), oid(second.id)]}})

    for _ in range(2):
        report = await abilling.reconciliation.run(apply=True)

        stored = await db.conversations.find_one({"_id": conv["_id"]})
        assert stored is not None
        assert stored["line_item_id"] == oid(invoice.line_items[0].id)
        assert await db.invoices.count_documents({}) == 1
        assert results(report, Check.DANGLING_LINK) == [(second.id, "reported", 1)]


def test_a_line_item_missing_everywhere_is_still_restored_or_released(billing: Billing) -> None:
    db = billing.database
    org = new_org(billing, "lost")
    seed_conversations(db, org.id, 4)
    billing.invoices.create_for_period(org.id, *OCT)
    db.invoices.delete_many({})
    db.line_items.delete_many({})

    report = billing.reconciliation.run(apply=True)

    assert report.clean, [f.as_json() for f in report.outstanding]
    check_totals_and_links(db)
    assert db.conversations.count_documents({"line_item_id": None}) == 0
    assert db.invoices.count_documents({"org_id": oid(org.id)}) == 1


def test_a_missing_line_item_is_restored_though_an_end_time_moved_since(billing: Billing) -> None:
    """A broken writer deletes an invoice's conversations item and the host moves one billed
    conversation's end time out of the period: the item is still restored on that invoice
    (found by the conversations it counts), not released for a second invoice."""
    db = billing.database
    org = new_org(billing, "moved")
    docs = seed_conversations(db, org.id, 2)
    inv = billing.invoices.create_for_period(org.id, *OCT)
    item = db.line_items.find_one({"invoice_id": oid(inv.id), "kind": "conversations"})
    assert item is not None
    db.line_items.delete_one({"_id": item["_id"]})
    db.conversations.update_one({"_id": docs[1]["_id"]}, {"$set": {
        "started_at": OCT[1] + timedelta(hours=1), "ended_at": OCT[1] + timedelta(hours=2)}})
    before = money(db)

    report = billing.reconciliation.run(apply=True, checks=["dangling_link"])

    assert [f.result for f in report.findings if f.check is Check.DANGLING_LINK] == ["repaired"]
    assert db.line_items.count_documents({"_id": item["_id"], "invoice_id": oid(inv.id)}) == 1
    assert money(db) == before  # no conversation released, no invoice added
    assert billing.reconciliation.run(checks=["unbilled"]).clean


def test_a_missing_line_item_is_never_restored_on_another_periods_invoice(
    billing: Billing
) -> None:
    """September's and October's conversations items are both deleted, and the host deletes
    one of October's conversations: October's item now links as many conversations as
    September's invoice counts. It is not restored there (October's invoice, which lacks it,
    spans its links and cannot tell its amount: a person decides), and September's item is
    restored on September's invoice, its conversations billed still."""
    db = billing.database
    org = new_org(billing, "two")
    september = seed_conversations(db, org.id, 2, start=SEP[0])
    october = seed_conversations(db, org.id, 3)
    oct_inv = billing.invoices.create_for_period(org.id, *OCT)
    sep_inv = billing.invoices.create_for_period(org.id, *SEP)
    items = {inv.id: db.line_items.find_one({"invoice_id": oid(inv.id), "kind": "conversations"})
             for inv in (sep_inv, oct_inv)}
    db.line_items.delete_many({"_id": {"$in": [i["_id"] for i in items.values() if i]}})
    db.conversations.delete_one({"_id": october[2]["_id"]})

    report = billing.reconciliation.run(apply=True, checks=["dangling_link"])

    placed = {i["_id"]: str(i["invoice_id"]) for i in db.line_items.find({"kind": "conversations"})}
    assert placed == {items[sep_inv.id]["_id"]: sep_inv.id}, report.as_json()
    assert sorted(f.result for f in report.findings) == ["failed", "repaired"]
    assert db.conversations.count_documents({"_id": {"$in": [c["_id"] for c in september]},
                                             "line_item_id": None}) == 0


@pytest.mark.parametrize("joined", [False, True], ids=["one-pass", "joined"])
def test_a_link_that_is_an_array_holding_null_is_never_billed(
    client: Any, db_name: str, joined: bool
) -> None:
    """`line_item_id: null` also matches an array holding null: such a link breaks the
    contract, is never priced (counted as malformed), and is reported; a billed conversation
    whose link a host rewrote to `[its item, null]` is not billed a second time."""
    b = Billing(client, database=db_name, joined_reads=joined)
    b.setup()
    db = b.database
    org = new_org(b, "links")
    good = seed_conversations(db, org.id, 3)
    odd = {**good[0], "_id": ObjectId(), "line_item_id": [None]}
    db.conversations.insert_one(odd)

    inv = b.invoices.create_for_period(org.id, *OCT)

    assert (inv.conversations, inv.skipped_malformed) == (3, 1)
    stored = db.conversations.find_one({"_id": odd["_id"]})
    assert stored is not None and stored["line_item_id"] == [None]
    billed = db.conversations.find_one({"_id": good[1]["_id"]})
    assert billed is not None
    db.conversations.update_one({"_id": good[1]["_id"]},
                                {"$set": {"line_item_id": [billed["line_item_id"], None]}})
    before = money(db)

    report = b.reconciliation.run(apply=True)

    assert money(db) == before  # nothing released, nothing billed again
    assert db.invoices.count_documents({"org_id": oid(org.id)}) == 1
    broken = [f for f in report.findings if f.check is Check.MALFORMED]
    assert broken and sum(f.count for f in broken) == 2, report.as_json()


@pytest.mark.parametrize("joined", [False, True], ids=["one-pass", "joined"])
def test_an_array_end_time_straddling_a_chunk_never_blocks_the_period(
    client: Any, db_name: str, joined: bool
) -> None:
    """An array `ended_at` with one date after a chunk's stretch and one before the period:
    MongoDB's range on an array is met by any two of its elements, so it matches the chunk's
    range, though no element lies in it (SecantusDB's index read of the chunk skips it). The
    chunk's marking update must not take it: it matched one more than was priced, and every
    retry failed the same way."""
    b = Billing(client, database=db_name, max_docs_per_transaction=1,
                transaction_retry_seconds=5, joined_reads=joined)
    b.setup()
    db = b.database
    org = new_org(b, "straddle")
    at = [OCT[0] + timedelta(hours=h) for h in range(24)]
    good = [{"_id": ObjectId(), "org_id": oid(org.id), "line_item_id": None,
             "started_at": at[h] - timedelta(minutes=1), "ended_at": at[h]} for h in (1, 2, 3)]
    bad = [{"_id": ObjectId(), "org_id": oid(org.id), "line_item_id": None,
            "started_at": at[2] + timedelta(seconds=5), "ended_at": at[2]},  # ends first
           {"_id": ObjectId(), "org_id": oid(org.id), "line_item_id": None,
            "started_at": at[0], "ended_at": [at[23], OCT[0] - timedelta(days=3)]}]
    db.conversations.insert_many(good + bad)

    inv = b.invoices.create_for_period(org.id, *OCT)

    assert (inv.conversations, inv.skipped_malformed) == (3, 2)
    assert inv.total == 3 * 50 + 3 * 10
    assert db.conversations.count_documents({"_id": {"$in": [c["_id"] for c in bad]},
                                             "line_item_id": None}) == 2
    check_totals_and_links(db)


# ---- bad data never stops a run -----------------------------------------------------------------

def array_dated(org_id: str, start: datetime) -> list[dict[str, Any]]:
    return [
        {"_id": ObjectId(), "org_id": oid(org_id), "started_at": [start],
         "ended_at": start + timedelta(minutes=1), "line_item_id": None},
        {"_id": ObjectId(), "org_id": oid(org_id), "started_at": start,
         "ended_at": [start + timedelta(minutes=2), start - timedelta(days=1)],
         "line_item_id": None},
    ]


@pytest.mark.parametrize("per_transaction", [2, 1000])
def test_array_dates_are_malformed_and_the_period_is_billed(
    client: Any, db_name: str, per_transaction: int
) -> None:
    b = Billing(client, database=db_name, max_docs_per_transaction=per_transaction,
                transaction_retry_seconds=60)
    b.setup()
    db = b.database
    org = new_org(b, "arrays")
    good = seed_conversations(db, org.id, 5)
    bad = array_dated(org.id, OCT[0] + timedelta(days=2))
    db.conversations.insert_many(bad)

    invoice = b.invoices.create_for_period(org.id, *OCT)

    assert (invoice.status.value, invoice.conversations, invoice.skipped_malformed) == (
        "open", 5, 2)
    assert invoice.total == 5 * 50 + 10 * sum(
        -(-int((c["ended_at"] - c["started_at"]).total_seconds() * 1000) // 60_000) for c in good)
    assert db.conversations.count_documents({"_id": {"$in": [c["_id"] for c in bad]},
                                             "line_item_id": None}) == 2
    check_totals_and_links(db)


def test_run_period_and_reconcile_go_on_past_array_dates(billing: Billing) -> None:
    db = billing.database
    broken, fine = new_org(billing, "broken"), new_org(billing, "fine")
    db.conversations.insert_many(array_dated(broken.id, OCT[0]) + array_dated(broken.id, SEP[0]))
    seed_conversations(db, broken.id, 2)
    seed_conversations(db, fine.id, 3)
    seed_conversations(db, fine.id, 1, start=SEP[0])

    summary = billing.invoices.run_period(Period(*OCT))

    assert summary.ok and summary.counts["invoiced"] == 2
    skipped = {r.org_id: r.invoice.skipped_malformed for r in summary.results if r.invoice}
    assert skipped == {broken.id: 2, fine.id: 0}

    report = billing.reconciliation.run(apply=True)

    assert results(report, Check.UNBILLED) == [(fine.id, "repaired", 1)]
    assert results(report, Check.MALFORMED) == [(broken.id, "reported", 4)]
    assert all(f.result != "failed" for f in report.findings)
    assert report.orgs_scanned == 2
    assert db.invoices.count_documents({"org_id": oid(fine.id)}) == 2
    assert db.invoices.count_documents({"org_id": oid(broken.id)}) == 1  # September: all broken
    check_totals_and_links(db)


async def test_async_array_dates_do_not_stop_run_period(abilling: AsyncBilling) -> None:
    db = abilling.database
    broken = await abilling.orgs.create(name="broken", currency="usd", per_conversation=50,
                                        per_started_minute=10)
    fine = await abilling.orgs.create(name="fine", currency="usd", per_conversation=50,
                                      per_started_minute=10)
    await db.conversations.insert_many(array_dated(broken.id, OCT[0]))
    await db.conversations.insert_one({"org_id": oid(fine.id), "started_at": OCT[0],
                                       "ended_at": OCT[0] + timedelta(seconds=61),
                                       "line_item_id": None})

    summary = await abilling.invoices.run_period(Period(*OCT))

    outcomes = {r.org_id: r.outcome.value for r in summary.results}
    assert outcomes == {broken.id: "nothing_to_bill", fine.id: "invoiced"}
    inv = await db.invoices.find_one({"org_id": oid(fine.id)})
    assert inv is not None and inv["total"] == 50 + 2 * 10
    report = await abilling.reconciliation.run(apply=True)
    assert results(report, Check.MALFORMED) == [(broken.id, "reported", 2)]


def test_a_customer_deleted_in_stripe_is_repaired_and_the_run_goes_on(
    client: Any, db_name: str, stripe_gateway: Any, stripe_client: stripe.StripeClient
) -> None:
    b = Billing(client, database=db_name, gateway=stripe_gateway, transaction_retry_seconds=60)
    b.setup()
    gone = new_org(b, "customer deleted in Stripe")
    pm = stripe_client.v1.payment_methods.create(params={
        "type": "card", "card": {"number": "4242424242424242", "exp_month": 12,
                                 "exp_year": 2034, "cvc": "123"}})
    b.payment_methods.attach(gone.id, str(pm.id), request_id="r-1")
    customer = b.orgs.get(gone.id).stripe_customer_id
    assert customer is not None
    stripe_client.v1.customers.delete(customer)
    later = new_org(b, "later")
    seed_conversations(b.database, later.id, 2, start=SEP[0])

    report = b.reconciliation.run(apply=True)

    # The org whose customer Stripe deleted is repaired (its customer forgotten, its method
    # detached, as customer.deleted would), not an error; the run goes on to the next org.
    assert report.orgs_scanned == 2
    assert [f.result for f in report.findings if f.result == "failed"] == []
    fixed = [f for f in report.findings if f.org_id == gone.id]
    assert fixed and all(f.result == "repaired" for f in fixed), [f.as_json() for f in fixed]
    assert b.orgs.get(gone.id).stripe_customer_id is None
    assert b.orgs.get(gone.id).default_payment_method_id is None
    assert results(report, Check.UNBILLED) == [(later.id, "repaired", 2)]
    assert b.database.invoices.count_documents({"org_id": oid(later.id)}) == 1
    audit = b.database.reconciliation_runs.find_one({"_id": ObjectId(report.run_id)})
    assert audit is not None and audit["status"] == "finished"


async def test_async_a_customer_deleted_in_stripe_is_repaired_and_the_run_goes_on(
    async_client: Any, db_name: str, async_stripe_gateway: Any,
    stripe_client: stripe.StripeClient
) -> None:
    b = AsyncBilling(async_client, database=db_name, gateway=async_stripe_gateway,
                     transaction_retry_seconds=60)
    await b.setup()
    gone = await b.orgs.create(name="customer deleted in Stripe", currency="usd",
                               per_conversation=50, per_started_minute=10)
    pm = stripe_client.v1.payment_methods.create(params={
        "type": "card", "card": {"number": "4242424242424242", "exp_month": 12,
                                 "exp_year": 2034, "cvc": "123"}})
    await b.payment_methods.attach(gone.id, str(pm.id), request_id="r-1")
    customer = (await b.orgs.get(gone.id)).stripe_customer_id
    assert customer is not None
    stripe_client.v1.customers.delete(customer)
    later = await b.orgs.create(name="later", currency="usd", per_conversation=50,
                                per_started_minute=10)
    await b.database.conversations.insert_one({
        "org_id": oid(later.id), "started_at": SEP[0], "ended_at": SEP[0] + timedelta(seconds=1),
        "line_item_id": None})

    report = await b.reconciliation.run(apply=True)

    assert report.orgs_scanned == 2
    assert [f.result for f in report.findings if f.result == "failed"] == []
    assert (await b.orgs.get(gone.id)).stripe_customer_id is None
    inv = await b.database.invoices.find_one({"org_id": oid(later.id)})
    assert inv is not None and (inv["status"], inv["total"]) == ("open", 50 + 10)


# ---- no invisible usage -------------------------------------------------------------------------

def test_links_and_org_ids_that_break_the_contract_are_reported(billing: Billing) -> None:
    db = billing.database
    org = new_org(billing, "odd links")
    values: list[Any] = ["", False, 0, [], {}]
    odd = [{"_id": ObjectId(), "org_id": oid(org.id), "started_at": OCT[0],
            "ended_at": OCT[0] + timedelta(seconds=10), "line_item_id": value}
           for value in values]
    hexed = {"_id": ObjectId(), "org_id": org.id, "started_at": OCT[0],
             "ended_at": OCT[0] + timedelta(seconds=10), "line_item_id": None}
    db.conversations.insert_many([*odd, hexed])
    before = dump(db)

    dry = billing.reconciliation.run()

    assert dump(db) == before and not dry.clean
    assert results(dry, Check.MALFORMED) == [("-", "found", 1), (org.id, "found", 5)]
    assert sorted(dry.findings[-1].ids + dry.findings[-2].ids) == sorted(
        str(d["_id"]) for d in [*odd, hexed])
    one_org = billing.reconciliation.run(org_id=org.id, checks=["malformed"])
    assert results(one_org, Check.MALFORMED) == [(org.id, "found", 1), (org.id, "found", 5)]

    applied = billing.reconciliation.run(apply=True)

    assert results(applied, Check.MALFORMED) == [("-", "reported", 1), (org.id, "reported", 5)]
    after = dump(db)
    after.pop("reconciliation_runs")
    assert untold(after) == untold({k: v for k, v in before.items()
                                    if k != "reconciliation_runs"})

def test_every_kind_of_org_id_that_names_no_org_is_reported(billing: Billing) -> None:
    """Each kind is its own bounded index range: a value at either end of its type's range
    is found, and the org's own conversations (ObjectIds, after every string) are not."""
    db = billing.database
    org = new_org(billing, "real")
    seed_conversations(db, org.id, 2)
    values: list[Any] = ["", "zz", "\U0010ffff" * 3, -float("inf"), -5, 0, 2.5, 10**18,
                         float("inf"), float("nan"), None]
    odd = [{"_id": ObjectId(), "org_id": value, "started_at": OCT[0],
            "ended_at": OCT[0] + timedelta(seconds=10), "line_item_id": None}
           for value in values]
    odd.append({"_id": ObjectId(), "started_at": OCT[0], "ended_at": OCT[0], "line_item_id": None})
    db.conversations.insert_many(odd)

    report = billing.reconciliation.run(checks=["malformed"])

    orgless = [f for f in report.findings if f.org_id == "-"]
    assert sorted(f.count for f in orgless) == [1, 2, 3, 6]  # NaN; null/missing; strings; numbers
    assert sorted(i for f in orgless for i in f.ids) == sorted(str(d["_id"]) for d in odd)
    assert results(report, Check.MALFORMED) == [("-", "found", n) for n in (1, 2, 3, 6)]



# ---- a bounded run that cannot finish leaves nothing to wedge a retry ---------------------------

def test_an_overflow_in_a_later_chunk_is_refused_before_the_first_one(
    client: Any, db_name: str
) -> None:
    b = Billing(client, database=db_name, max_docs_per_transaction=2,
                transaction_retry_seconds=60)
    b.setup()
    db = b.database
    dear = new_org(b, "dear", conv=MAX_AMOUNT // 3 + 1, minute=0)  # 2 fit, 3 do not
    seed_conversations(db, dear.id, 3)
    after = new_org(b, "after")
    seed_conversations(db, after.id, 3)
    before = dump(db)

    for _ in range(2):  # a retry meets the same refusal, not a wedged draft
        with pytest.raises(InvalidMoney, match="nothing was written"):
            b.invoices.create_for_period(dear.id, *OCT)
        assert dump(db) == before

    summary = b.invoices.run_period(Period(*OCT))

    assert {r.org_id: r.outcome.value for r in summary.results} == {
        dear.id: "failed", after.id: "invoiced"}
    assert db.invoices.count_documents({"org_id": oid(dear.id)}) == 0
    assert db.conversations.count_documents({"org_id": oid(dear.id), "line_item_id": None}) == 3


async def test_async_an_overflow_in_a_later_chunk_is_refused_before_the_first_one(
    async_client: Any, db_name: str
) -> None:
    b = AsyncBilling(async_client, database=db_name, max_docs_per_transaction=2,
                     transaction_retry_seconds=60)
    await b.setup()
    dear = await b.orgs.create(name="dear", currency="usd", per_conversation=0,
                               per_started_minute=MAX_AMOUNT // 5 + 1)
    await b.database.conversations.insert_many([  # 2 started minutes each: 4 fit, 6 do not
        {"org_id": oid(dear.id), "started_at": OCT[0] + timedelta(hours=i),
         "ended_at": OCT[0] + timedelta(hours=i, seconds=90), "line_item_id": None}
        for i in range(3)])

    with pytest.raises(InvalidMoney, match="nothing was written"):
        await b.invoices.create_for_period(dear.id, *OCT)

    assert await b.database.invoices.count_documents({}) == 0
    assert await b.database.line_items.count_documents({}) == 0
    assert await b.database.conversations.count_documents({"line_item_id": None}) == 3


def test_a_bound_that_cannot_rule_out_an_overflow_is_checked_exactly(
    client: Any, db_name: str
) -> None:
    """The first chunk of several bounds the period's usage by its earliest start and latest
    end; where that bound would overflow but the real usage fits, the invoice is billed."""
    b = Billing(client, database=db_name, max_docs_per_transaction=2)
    b.setup()
    price = MAX_AMOUNT // 1000
    org = b.orgs.create(name="spread", currency="usd", per_conversation=1,
                        per_started_minute=price)
    days = (0, 15, 30)  # a minute each, a month apart: bound 3 x 43,201 minutes, exact 3
    b.database.conversations.insert_many([
        {"org_id": oid(org.id), "started_at": OCT[0] + timedelta(days=d),
         "ended_at": OCT[0] + timedelta(days=d, seconds=60), "line_item_id": None}
        for d in days])

    invoice = b.invoices.create_for_period(org.id, *OCT)

    assert (invoice.status.value, invoice.conversations, invoice.total) == (
        "open", 3, 3 + 3 * price)


@pytest.mark.parametrize("excluded", [1000, 0], ids=["in-the-head", "after-the-head"])
async def test_async_a_start_that_is_not_a_date_falls_back_to_the_exact_usage(
    async_client: Any, db_name: str, excluded: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A malformed start adds nothing to the bound where the first pass's head holds it; after
    the head (a string sorts below every date) it leaves the engine's bound unusable: either
    way the exact usage still refuses an overflow before anything commits, and bills what
    fits."""
    monkeypatch.setattr(queries, "MAX_EXCLUDED", excluded)
    b = AsyncBilling(async_client, database=db_name, max_docs_per_transaction=2)
    await b.setup()
    dear = await b.orgs.create(name="dear", currency="usd", per_conversation=0,
                               per_started_minute=MAX_AMOUNT // 5 + 1)
    cheap = await b.orgs.create(name="cheap", currency="usd", per_conversation=5,
                                per_started_minute=1)
    for org in (dear, cheap):
        await b.database.conversations.insert_many([
            *({"org_id": oid(org.id), "started_at": OCT[0] + timedelta(hours=i),
               "ended_at": OCT[0] + timedelta(hours=i, seconds=90), "line_item_id": None}
              for i in range(3)),
            {"org_id": oid(org.id), "started_at": "2026-10-02", "line_item_id": None,
             "ended_at": OCT[0] + timedelta(days=2)}])

    with pytest.raises(InvalidMoney, match="nothing was written"):
        await b.invoices.create_for_period(dear.id, *OCT)
    invoice = await b.invoices.create_for_period(cheap.id, *OCT)

    assert await b.database.invoices.count_documents({"org_id": oid(dear.id)}) == 0
    assert (invoice.conversations, invoice.total, invoice.skipped_malformed) == (3, 3 * 5 + 6, 1)


def test_a_currency_change_mid_run_can_be_finished_as_its_message_says(
    client: Any, db_name: str
) -> None:
    from billing import CurrencyMismatch, faults
    from billing.faults import InjectedFault

    b = Billing(client, database=db_name, max_docs_per_transaction=2,
                transaction_retry_seconds=60)
    b.setup()
    db = b.database
    org = new_org(b, "switching")
    seed_conversations(db, org.id, 5)
    with faults.active({"invoice.between_chunks": "raise"}), pytest.raises(InjectedFault):
        b.invoices.create_for_period(org.id, *OCT)
    db.orgs.update_one({"_id": oid(org.id)}, {"$set": {"currency": "eur"}})

    with pytest.raises(CurrencyMismatch, match="set the org's currency back to usd") as caught:
        b.invoices.create_for_period(org.id, *OCT)
    assert "void it" in caught.value.message

    db.orgs.update_one({"_id": oid(org.id)}, {"$set": {"currency": "usd"}})
    invoice = b.invoices.create_for_period(org.id, *OCT)
    assert (invoice.status.value, invoice.conversations, invoice.currency) == ("open", 5, "usd")
    check_totals_and_links(db)


def test_the_contract_queries_are_served_by_an_index(mongo_uri: str, db_name: str) -> None:
    from pymongo import MongoClient

    from tests.integration.test_reconcile import Commands, stages

    listener = Commands()
    watched: MongoClient[dict[str, Any]]
    with MongoClient(mongo_uri, tz_aware=True, event_listeners=[listener]) as watched:
        b = Billing(watched, database=db_name)
        b.setup()
        db = b.database
        first, second = new_org(b, "first"), new_org(b, "second")
        convs = seed_conversations(db, first.id, 3)
        b.invoices.create_for_period(first.id, *OCT)
        db.conversations.update_one({"_id": convs[0]["_id"]},
                                    {"$set": {"org_id": oid(second.id)}})
        db.conversations.insert_many([
            {"org_id": first.id, "started_at": OCT[0], "ended_at": OCT[0], "line_item_id": None},
            {"org_id": oid(first.id), "started_at": OCT[0], "ended_at": OCT[0],
             "line_item_id": ""}])
        listener.reads.clear()
        report = b.reconciliation.run(apply=True)
        for org_id in (first.id, second.id):
            b.reconciliation.run(org_id=org_id)
        shapes: dict[str, list[str]] = {}
        for name, command in listener.reads:
            if name == "aggregate":
                command = {**command, "cursor": {}}
            plan = db.command("explain", command, verbosity="queryPlanner")
            query = command.get("pipeline", command.get("filter"))
            shapes.setdefault(f"{name} {command[name]} {query}", []).extend(stages(plan))
    assert {f.check for f in report.findings} == {
        Check.DANGLING_LINK, Check.USAGE_QUANTITY, Check.MALFORMED}
    scanned = {shape for shape, names in shapes.items() if "COLLSCAN" in names
               and shape.split()[1] != "orgs"}
    assert scanned == set(), scanned


def test_the_cli_prints_its_json_and_exits_1_past_bad_data(
    billing: Billing, mongo_uri: str, db_name: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from billing.cli import main

    for name in ("STRIPE_API_KEY", "STRIPE_API_BASE", "MONGODB_URI"):
        monkeypatch.delenv(name, raising=False)
    db = billing.database
    broken, fine = new_org(billing, "broken"), new_org(billing, "fine")
    db.conversations.insert_many(array_dated(broken.id, SEP[0]))
    seed_conversations(db, fine.id, 2, start=SEP[0])

    code = main(["--uri", mongo_uri, "--database", db_name, "reconcile", "--apply", "--json"])

    [line] = capsys.readouterr().out.splitlines()
    doc = json.loads(line)
    assert code == doc["exit_code"] == 1
    assert doc["orgs_scanned"] == 2
    assert {(f["check"], f["result"]) for f in doc["findings"]} == {
        ("malformed", "reported"), ("unbilled", "repaired")}
    assert db.invoices.count_documents({"org_id": oid(fine.id), "status": "open"}) == 1
