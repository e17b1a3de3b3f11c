"""Reconciliation on SecantusDB and localstripe: seeded damage is found, repaired once, and a dry
run writes nothing.

Every inconsistency is written directly, as a crashed or buggy writer would leave it, and the
checks after `--apply` are the invariants, not the report: every conversation of closed months
billed exactly once, totals equal to their line items, defaults pointing at active methods,
Stripe's attached methods known here.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe
from bson import ObjectId
from pymongo import MongoClient, monitoring

from billing import AsyncBilling, Billing, faults
from billing.errors import InvalidInput, LeaseNotAcquired, OrgNotFound
from billing.faults import InjectedFault
from billing.reconcile_findings import Check
from tests.support.billing_data import OCT, OPEN, dump, seed_conversations, untold
from tests.support.invariants import (
    check_closed_months_billed,
    check_methods_match_stripe,
    check_totals_and_links,
)
from tests.support.plans import READS, explainable, stages

pytestmark = pytest.mark.integration
SEP = (datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC))
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


@pytest.fixture
def rbilling(client: Any, db_name: str, stripe_gateway: Any) -> Billing:
    b = Billing(client, database=db_name, gateway=stripe_gateway, transaction_retry_seconds=60)
    b.setup()
    return b


def new_org(b: Billing, name: str) -> Any:
    return b.orgs.create(name=name, currency="usd", per_conversation=50, per_started_minute=10)


def oid(value: Any) -> ObjectId:
    return ObjectId(str(value))


def card(stripe_client: stripe.StripeClient) -> str:
    pm = stripe_client.v1.payment_methods.create(params={
        "type": "card", "card": {"number": "4242424242424242", "exp_month": 12,
                                 "exp_year": 2034, "cvc": "123"}})
    return str(pm.id)


# ---- seeding: one org per kind of damage ------------------------------------------------------

def seed_billing_damage(b: Billing) -> dict[str, Any]:
    db = b.database
    late = new_org(b, "late")  # invoiced October, then late arrivals; September never invoiced
    seed_conversations(db, late.id, 5)
    b.invoices.create_for_period(late.id, *OCT)
    seed_conversations(db, late.id, 3, start=OCT[0] + timedelta(days=9))
    seed_conversations(db, late.id, 4, start=SEP[0])
    seed_conversations(db, late.id, 2, start=OPEN[0])  # the open month

    lost_item = new_org(b, "lost line item")  # its conversations line item was deleted
    seed_conversations(db, lost_item.id, 6)
    b.invoices.create_for_period(lost_item.id, *OCT)
    db.line_items.delete_one({"org_id": oid(lost_item.id), "kind": "conversations"})

    lost_invoice = new_org(b, "lost invoice")  # its invoice was deleted: orphan line items
    seed_conversations(db, lost_invoice.id, 7)
    gone = b.invoices.create_for_period(lost_invoice.id, *OCT)
    db.invoices.delete_one({"_id": oid(gone.id)})

    totals = new_org(b, "wrong totals")
    seed_conversations(db, totals.id, 4)
    inv = b.invoices.create_for_period(totals.id, *OCT)
    db.invoices.update_one({"_id": oid(inv.id)}, {"$set": {"subtotal": 1, "total": 1}})

    stale = Billing(b.database.client, database=b.database.name, max_docs_per_transaction=3)
    draft = new_org(b, "stale draft")
    seed_conversations(db, draft.id, 8)
    with faults.active({"invoice.between_chunks": "raise"}), pytest.raises(InjectedFault):
        stale.invoices.create_for_period(draft.id, *OCT)

    return {"late": late, "lost_item": lost_item, "lost_invoice": lost_invoice,
            "totals": totals, "draft": draft}


def seed_method_damage(b: Billing, sc: stripe.StripeClient) -> dict[str, Any]:
    db = b.database
    org = new_org(b, "methods")
    first = b.payment_methods.attach(org.id, card(sc), request_id="r-1")
    second = b.payment_methods.attach(org.id, card(sc), request_id="r-2")
    third = b.payment_methods.attach(org.id, card(sc), request_id="r-3")
    customer = b.orgs.get(org.id).stripe_customer_id
    assert customer is not None
    # Detached in Stripe behind our back: active here, gone there.
    sc.v1.payment_methods.detach(second.stripe_id)
    # Attached to the org's customer by someone else: unknown here.
    stray = card(sc)
    sc.v1.payment_methods.attach(stray, params={"customer": customer})
    # An interrupted detach: marked detaching (default cleared), Stripe not called yet.
    db.payment_methods.update_one({"_id": oid(third.id)}, {"$set": {"status": "detaching"}})
    # An attach that died before Stripe: a stale pending record.
    db.payment_methods.insert_one({
        "_id": ObjectId(), "org_id": oid(org.id), "request_id": "r-dead", "source": "pm_never",
        "status": "pending", "created_at": NOW - timedelta(days=1),
        "updated_at": NOW - timedelta(days=1)})

    pointless = new_org(b, "default to nowhere")
    db.orgs.update_one({"_id": oid(pointless.id)},
                       {"$set": {"default_payment_method_id": str(ObjectId())}})

    deleted = new_org(b, "deleted org")
    kept = b.payment_methods.attach(deleted.id, card(sc), request_id="r-1")
    db.orgs.delete_one({"_id": oid(deleted.id)})
    return {"org": org, "first": first, "second": second, "third": third, "stray": stray,
            "customer": customer, "pointless": pointless, "orphan": kept}


# ---- totals -------------------------------------------------------------------------------------

def totals_by_org(b: Billing) -> dict[str, int]:
    rows = b.database.invoices.aggregate([
        {"$match": {"status": {"$ne": "void"}}},
        {"$group": {"_id": "$org_id", "total": {"$sum": "$total"}}}])
    return {str(r["_id"]): r["total"] for r in rows}


# ---- the tests ----------------------------------------------------------------------------------

def test_dry_run_finds_every_kind_and_writes_nothing(
    rbilling: Billing, stripe_client: stripe.StripeClient
) -> None:
    orgs = seed_billing_damage(rbilling)
    methods = seed_method_damage(rbilling, stripe_client)
    before = dump(rbilling.database)

    report = rbilling.reconciliation.run(stale_after=timedelta(0))

    assert dump(rbilling.database) == before  # no lease, no audit record, no repair
    assert not report.clean and not report.apply
    found = {(f.check, f.org_id) for f in report.findings}
    assert (Check.UNBILLED, orgs["late"].id) in found
    assert (Check.DANGLING_LINK, orgs["lost_item"].id) in found
    assert (Check.DANGLING_LINK, orgs["lost_invoice"].id) in found
    assert (Check.WRONG_TOTALS, orgs["totals"].id) in found
    assert (Check.STALE_DRAFT, orgs["draft"].id) in found
    late = sorted(f.count for f in report.findings
                  if f.check is Check.UNBILLED and f.org_id == orgs["late"].id)
    assert late == [3, 4]  # September and October; November is still open
    repairs = sorted(f.repair_kind for f in report.findings
                     if f.check is Check.PAYMENT_METHOD)
    assert repairs == ["adopt", "clear_default", "finish_attach", "finish_detach", "gone",
                       "orphan"]
    assert {f.org_id for f in report.findings if f.repair_kind == "orphan"} == {
        methods["orphan"].org_id}
    assert all(f.result == "found" for f in report.findings)


def test_apply_repairs_everything_once_and_a_second_run_finds_nothing(
    rbilling: Billing, stripe_client: stripe.StripeClient
) -> None:
    orgs = seed_billing_damage(rbilling)
    m = seed_method_damage(rbilling, stripe_client)

    report = rbilling.reconciliation.run(apply=True, stale_after=timedelta(0))

    assert report.clean, [f.as_json() for f in report.outstanding]
    check_closed_months_billed(rbilling.database, no_drafts=True)
    check_methods_match_stripe(rbilling, stripe_client)
    db = rbilling.database
    # Late October went onto a supplementary invoice; September got its own.
    late = list(db.invoices.find({"org_id": oid(orgs["late"].id)}).sort("period_start", 1))
    assert [(i["period_start"].month, i["supplement"], i["conversations"]) for i in late] == [
        (9, 0, 4), (10, 0, 5), (10, 1, 3)]
    assert [i["number"] for i in late] == [2, 1, 3]
    # The deleted line item came back on its invoice, so minutes were not charged twice.
    lost = list(db.invoices.find({"org_id": oid(orgs["lost_item"].id)}))
    assert len(lost) == 1 and lost[0]["conversations"] == 6
    # The orphan line items are gone and their conversations are on a new October invoice.
    assert db.line_items.count_documents({"org_id": oid(orgs["lost_invoice"].id)}) == 2
    fixed = db.invoices.find_one({"org_id": oid(orgs["totals"].id)})
    assert fixed is not None and fixed["total"] == 4 * 50 + 3 * 10
    # Payment methods: the stray one adopted, the gone one detached, the orphan detached in
    # Stripe (its org no longer exists), the org's default never touched.
    org = rbilling.orgs.get(m["org"].id)
    assert org.default_payment_method_id == m["first"].id
    assert db.payment_methods.count_documents(
        {"org_id": oid(m["org"].id), "stripe_id": m["stray"], "status": "active"}) == 1
    assert rbilling.orgs.get(m["pointless"].id).default_payment_method_id is None
    orphan = stripe_client.v1.payment_methods.retrieve(m["orphan"].stripe_id)
    assert orphan.customer is None
    audit = list(db.reconciliation_runs.find({}))
    assert len(audit) == 1 and audit[0]["status"] == "finished"
    assert audit[0]["_id"] == ObjectId(report.run_id)
    assert len(audit[0]["actions"]) == len(report.findings)
    assert db.reconciliation_leases.count_documents({}) == 0  # released
    totals = totals_by_org(rbilling)

    again = rbilling.reconciliation.run(apply=True, stale_after=timedelta(0))

    assert again.findings == [] and again.clean
    assert totals_by_org(rbilling) == totals
    assert db.reconciliation_runs.count_documents({}) == 2


def test_what_needs_a_person_is_reported_and_left_alone(rbilling: Billing) -> None:
    db = rbilling.database
    org = new_org(rbilling, "acme")
    seed_conversations(db, org.id, 4)
    inv = rbilling.invoices.create_for_period(org.id, *OCT)
    db.invoices.update_one({"_id": oid(inv.id)},
                           {"$set": {"status": "paid", "subtotal": 7, "total": 7}})
    db.conversations.insert_many([  # malformed: the host wrote strings and a backwards span
        {"org_id": oid(org.id), "started_at": "yesterday", "ended_at": "today",
         "line_item_id": None},
        {"org_id": oid(org.id), "started_at": OCT[0] + timedelta(hours=2),
         "ended_at": OCT[0] + timedelta(hours=1), "line_item_id": None}])
    before = dump(db)
    runs = before.pop("reconciliation_runs", [])

    report = rbilling.reconciliation.run(apply=True)

    after = dump(db)
    assert len(after.pop("reconciliation_runs")) == len(runs) + 1
    assert untold(after) == untold(before)  # only the host was told (one event per finding)
    told = [e["data"]["check"] for e in db.billing_events.find({"type": "reconciliation.finding"})]
    assert sorted(told) == ["malformed", "wrong_totals"]
    assert {(f.check, f.result, f.count) for f in report.findings} == {
        (Check.WRONG_TOTALS, "reported", 1), (Check.MALFORMED, "reported", 2)}
    assert not report.clean


def test_an_org_paying_by_bank_debit_keeps_its_method_and_default(
    rbilling: Billing, stripe_client: stripe.StripeClient
) -> None:
    """A bank debit (not a card) attached in Stripe is attached: reconciliation finds nothing
    to repair, and leaves the method, the default and the host's events alone."""
    db = rbilling.database
    org = new_org(rbilling, "acme")
    debit = stripe_client.v1.payment_methods.create(params={
        "type": "sepa_debit", "sepa_debit": {"iban": "DE89370400440532013000"}})
    method = rbilling.payment_methods.attach(org.id, debit.id, request_id="r-1")
    before = dump(db)
    runs = before.pop("reconciliation_runs", [])

    report = rbilling.reconciliation.run(apply=True, checks=["payment_method"])

    after = dump(db)
    assert len(after.pop("reconciliation_runs")) == len(runs) + 1
    assert (report.findings, after) == ([], before)
    assert rbilling.orgs.get(org.id).default_payment_method_id == method.id
    check_methods_match_stripe(rbilling, stripe_client)


def test_a_repair_that_fails_is_recorded_and_the_run_goes_on(rbilling: Billing) -> None:
    db = rbilling.database
    broken, fine = new_org(rbilling, "broken"), new_org(rbilling, "fine")
    seed_conversations(db, broken.id, 5)
    inv = rbilling.invoices.create_for_period(broken.id, *OCT)
    # The conversations item is gone and the subtotal no longer tells its amount.
    db.line_items.delete_one({"org_id": oid(broken.id), "kind": "conversations"})
    db.invoices.update_one({"_id": oid(inv.id)}, {"$set": {"subtotal": 3, "total": 3}})
    seed_conversations(db, fine.id, 2)

    report = rbilling.reconciliation.run(apply=True, checks=["dangling_link", "unbilled"])

    failed = [f for f in report.findings if f.result == "failed"]
    assert [f.org_id for f in failed] == [broken.id] and "a person" in (failed[0].error or "")
    assert db.conversations.count_documents({"org_id": oid(broken.id),
                                             "line_item_id": None}) == 0  # left as they were
    assert db.conversations.count_documents({"org_id": oid(fine.id), "line_item_id": None}) == 0
    audit = db.reconciliation_runs.find_one({"_id": ObjectId(report.run_id)})
    assert audit is not None and len(audit["errors"]) == 1 and "StateConflict" in audit["errors"][0]


def test_two_apply_runs_at_once_one_is_refused_by_the_lease(rbilling: Billing) -> None:
    orgs = seed_billing_damage(rbilling)
    started, refused_done = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def first_progress(done: int, total: int, scan: Any) -> None:
        started.set()
        refused_done.wait(30)

    def second() -> None:
        started.wait(30)
        try:
            rbilling.reconciliation.run(apply=True, stale_after=timedelta(0))
        except LeaseNotAcquired as exc:
            outcome["refused"] = exc
        finally:
            refused_done.set()

    racer = threading.Thread(target=second)
    racer.start()
    report = rbilling.reconciliation.run(apply=True, stale_after=timedelta(0),
                                         progress=first_progress)
    racer.join(30)

    assert "another reconciliation run" in outcome["refused"].message
    assert report.clean
    check_closed_months_billed(rbilling.database, no_drafts=True)
    assert rbilling.database.reconciliation_runs.count_documents({}) == 1
    assert rbilling.database.invoices.count_documents(
        {"org_id": oid(orgs["late"].id)}) == 3  # nothing billed twice
    # Once the first run is over, the lease is free again.
    assert rbilling.reconciliation.run(apply=True).clean


def test_an_expired_lease_is_taken_over_and_a_live_one_is_not(rbilling: Billing) -> None:
    leases = rbilling.database.reconciliation_leases
    leases.insert_one({"_id": "shard:0/1", "holder": "crashed", "host": "h", "pid": 1,
                       "expires_at": datetime.now(UTC) - timedelta(seconds=1)})
    assert rbilling.reconciliation.run(apply=True).clean
    leases.insert_one({"_id": "shard:0/2", "holder": "alive", "host": "h", "pid": 2,
                       "expires_at": datetime.now(UTC) + timedelta(hours=1)})
    before = dump(rbilling.database)
    with pytest.raises(LeaseNotAcquired):
        rbilling.reconciliation.run(apply=True, shard="0/2")
    assert dump(rbilling.database) == before
    assert rbilling.reconciliation.run(shard="0/2").clean  # a dry run needs no lease


def test_shards_split_the_orgs_and_together_cover_them(rbilling: Billing) -> None:
    orgs = [new_org(rbilling, f"org {i}") for i in range(12)]
    for org in orgs:
        seed_conversations(rbilling.database, org.id, 1)
    seen = []
    for i in range(3):
        report = rbilling.reconciliation.run(shard=(i, 3), checks=[Check.UNBILLED])
        seen.append({f.org_id for f in report.findings})
        assert report.orgs_scanned == len(seen[-1])
    assert set().union(*seen) == {o.id for o in orgs}
    assert sum(len(s) for s in seen) == len(orgs)


def test_bad_arguments_are_typed_errors_and_write_nothing(rbilling: Billing) -> None:
    new_org(rbilling, "acme")
    before = dump(rbilling.database)
    for kwargs, error in [({"shard": "3/2"}, InvalidInput), ({"shard": "x"}, InvalidInput),
                          ({"checks": ["everything"]}, InvalidInput),
                          ({"checks": []}, InvalidInput),
                          ({"org_id": {"$ne": None}}, InvalidInput),
                          ({"org_id": str(ObjectId())}, OrgNotFound),
                          ({"lease_seconds": 0}, InvalidInput)]:
        with pytest.raises(error):
            rbilling.reconciliation.run(apply=True, **kwargs)
    assert dump(rbilling.database) == before


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.reads: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in READS:
            self.reads.append((event.command_name,
                               explainable(event.command_name, event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_every_query_of_a_run_is_served_by_an_index(
    mongo_uri: str, db_name: str, stripe_gateway: Any, stripe_client: stripe.StripeClient
) -> None:
    listener = Commands()
    with MongoClient(mongo_uri, tz_aware=True, event_listeners=[listener]) as watched:
        b = Billing(watched, database=db_name, gateway=stripe_gateway)
        b.setup()
        seed_billing_damage(b)
        seed_method_damage(b, stripe_client)
        listener.reads.clear()
        b.reconciliation.run(apply=True, stale_after=timedelta(0))
        shapes: dict[str, list[str]] = {}
        for name, command in listener.reads:
            plan = b.database.command("explain", command, verbosity="queryPlanner")
            shapes.setdefault(f"{name} {command[name]}", []).extend(stages(plan))
    # Tenant data only: counting every org for the progress bar may scan `orgs`.
    scanned = {shape for shape, names in shapes.items() if "COLLSCAN" in names
               and shape.split()[1] != "orgs"}
    assert {"aggregate conversations", "find line_items", "find payment_methods",
            "distinct payment_methods", "find invoices", "aggregate invoices"} <= set(shapes)
    assert scanned == set(), scanned


async def test_async_reconcile_repairs_the_same_way(
    abilling: AsyncBilling, async_stripe_gateway: Any
) -> None:
    db = abilling.database
    org = await abilling.orgs.create(name="Acme", currency="usd", per_conversation=50,
                                     per_started_minute=10)
    await db.conversations.insert_many([
        {"org_id": oid(org.id), "started_at": OCT[0] + timedelta(minutes=i),
         "ended_at": OCT[0] + timedelta(minutes=i, seconds=30), "line_item_id": None}
        for i in range(5)])
    dry = await abilling.reconciliation.run()
    assert [(f.check, f.count) for f in dry.findings] == [(Check.UNBILLED, 5)]
    assert await db.invoices.count_documents({}) == 0

    report = await abilling.reconciliation.run(apply=True)

    assert report.clean and report.findings[0].result == "repaired"
    inv = await db.invoices.find_one({"org_id": oid(org.id)})
    assert inv is not None and (inv["status"], inv["total"]) == ("open", 5 * 50 + 5 * 10)
    assert (await abilling.reconciliation.run(apply=True)).findings == []


def test_late_conversations_join_a_draft_kept_open_and_leave_it_a_draft(
    rbilling: Billing
) -> None:
    db = rbilling.database
    org = new_org(rbilling, "editing")
    seed_conversations(db, org.id, 3)
    draft = rbilling.invoices.create_for_period(org.id, *OCT, finalize=False)
    seed_conversations(db, org.id, 2, start=OCT[0] + timedelta(days=3))

    report = rbilling.reconciliation.run(apply=True)

    assert report.clean and "still a draft" in report.findings[0].action
    after = rbilling.invoices.get(org.id, draft.id)
    assert (after.status.value, after.conversations, after.number) == ("draft", 5, None)
    check_totals_and_links(db)
    assert db.conversations.count_documents({"line_item_id": None}) == 0


@pytest.mark.parametrize("kind", ["minutes", "manual"])
def test_a_conversation_linked_to_an_item_that_is_not_a_conversations_item_is_reported(
        billing: Billing, org: Any, kind: str) -> None:
    """Billing links conversations only to conversations items: one the host linked to the
    invoice's minutes or a manual item was never billed by billing, nor can billing tell
    whether it was: reported for a person, never released (or billed)."""
    db = billing.database
    seed_conversations(db, org.id, 2)
    draft = billing.invoices.create_for_period(org.id, *OCT, finalize=False)
    billing.line_items.add(org.id, draft.id, description="fee", quantity=1, unit_amount=100)
    inv = billing.invoices.finalize(org.id, draft.id)
    item = db.line_items.find_one({"invoice_id": ObjectId(inv.id), "kind": kind})
    assert item is not None
    end = OCT[0] + timedelta(days=9)
    cid = ObjectId()
    db.conversations.insert_one({"_id": cid, "org_id": ObjectId(org.id),
                                 "started_at": end - timedelta(minutes=3), "ended_at": end,
                                 "line_item_id": item["_id"]})
    before = dump(db)

    report = billing.reconciliation.run(checks=["dangling_link"], apply=True)

    (finding,) = report.findings
    assert finding.check == Check.DANGLING_LINK and not finding.repairable
    assert f"a {kind} item" in finding.summary and str(item["_id"]) in finding.ids
    assert db.conversations.find_one({"_id": cid})["line_item_id"] == item["_id"]
    after = dump(db)
    assert all(after[name] == before[name] for name in ("conversations", "line_items",
                                                         "invoices"))
