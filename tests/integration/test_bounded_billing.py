"""Bounded billing on a real wire-protocol server: each chunk reads on from the draft's resume
key, over a stretch of end times; conversations recorded behind that key during a run are left
to reconciliation, which bills them once, on a supplementary invoice."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient, monitoring

from billing import Billing, InvoiceStatus, faults
from billing.adapters import queries
from billing.faults import InjectedFault
from billing.reconcile_findings import Check
from tests.support.billing_data import OCT, expected_total, seed_conversations
from tests.support.invariants import check_totals_and_links

pytestmark = pytest.mark.integration


def bounded(client: Any, db_name: str, limit: int) -> tuple[Billing, Any]:
    b = Billing(client, database=db_name, max_docs_per_transaction=limit)
    b.setup()
    return b, b.orgs.create(name="Acme", currency="usd", per_conversation=50,
                            per_started_minute=10)


def first_chunk_only(b: Billing, org: Any) -> dict[str, Any]:
    """Bills the first chunk and stops before the second (as a crash would): the draft."""
    with faults.active({"invoice.between_chunks": "raise"}), pytest.raises(InjectedFault):
        b.invoices.create_for_period(org.id, *OCT)
    draft: dict[str, Any] | None = b.database.invoices.find_one({"org_id": ObjectId(org.id)})
    assert draft is not None and draft["status"] == "draft" and not draft["complete"]
    return draft


@pytest.mark.parametrize("tie", [False, True], ids=["distinct-ends", "tie-across-the-end"])
def test_the_draft_stores_where_its_run_stopped_and_the_next_chunk_reads_on_from_there(
    client: Any, db_name: str, tie: bool
) -> None:
    """The key is the chunk's last end time with the all-f's id (every conversation that ended
    then is read), or, when the next one ended at the same time, the last one's own id: the
    next chunk then reads on after it within that millisecond."""
    b, org = bounded(client, db_name, 10)
    docs = seed_conversations(b.database, org.id, 35)
    tenth = docs[9]
    if tie:  # three more end with the tenth, on both sides of it in `_id` order
        tied = [{**tenth, "_id": ObjectId(oid)} for oid in (
            "0" * 24, str(ObjectId()), "e" * 24)]
        b.database.conversations.insert_many(tied)
        docs += tied
        tenth = min([tenth, *tied], key=lambda d: d["_id"])  # the chunk's tenth in index order
        docs.sort(key=lambda d: (d["ended_at"], d["_id"]))
        assert docs[9] == tenth and docs[10]["ended_at"] == tenth["ended_at"]

    draft = first_chunk_only(b, org)

    key = draft["resume_after"]
    assert (key["ended_at"], key["_id"]) == (
        tenth["ended_at"], tenth["_id"] if tie else ObjectId("f" * 24))
    assert key["span_ms"] >= 1
    billed = b.database.conversations.count_documents(
        {"org_id": ObjectId(org.id), "line_item_id": {"$ne": None}})
    assert billed == 10
    inv = b.invoices.create_for_period(org.id, *OCT)
    stored = b.database.invoices.find_one({"_id": ObjectId(inv.id)})
    assert stored is not None and stored.get("resume_after") is None  # cleared once complete
    assert inv.status is InvoiceStatus.OPEN and inv.conversations == len(docs)
    assert inv.total == expected_total(docs, 50, 10)
    check_totals_and_links(b.database)


@pytest.mark.parametrize("behind", [0, 9], ids=["early-in-the-chunk", "at-the-key"])
def test_a_conversation_recorded_behind_the_resume_key_during_a_run_is_billed_exactly_once(
    client: Any, db_name: str, behind: int
) -> None:
    """Recorded between two chunks, ending early in the first chunk or at the very end time its
    key holds (with a later `_id` than every conversation read)."""
    b, org = bounded(client, db_name, 10)
    docs = seed_conversations(b.database, org.id, 35)
    first_chunk_only(b, org)
    late = {"_id": ObjectId(), "org_id": ObjectId(org.id), "line_item_id": None,
            "started_at": docs[behind]["started_at"], "ended_at": docs[behind]["ended_at"]}
    b.database.conversations.insert_one(late)  # the host records it between two chunks

    inv = b.invoices.create_for_period(org.id, *OCT)

    # The run reads on from its key: the late one is not on the period's invoice...
    assert inv.status is InvoiceStatus.OPEN and inv.conversations == 35
    assert inv.total == expected_total(docs, 50, 10)
    assert b.invoices.create_for_period(org.id, *OCT) == inv  # and calling again changes nothing
    stored = b.database.conversations.find_one({"_id": late["_id"]})
    assert stored is not None and stored["line_item_id"] is None
    # ...reconciliation finds it and bills it once, on a supplementary invoice.
    found = b.reconciliation.run(checks=["unbilled"])
    assert [(f.check, f.count) for f in found.findings] == [(Check.UNBILLED, 1)]
    report = b.reconciliation.run(apply=True, checks=["unbilled"])
    assert report.clean, [f.as_json() for f in report.outstanding]
    invoices = list(b.database.invoices.find({"org_id": ObjectId(org.id)}).sort("supplement", 1))
    assert [(i["supplement"], i["conversations"], i["status"]) for i in invoices] == [
        (0, 35, "open"), (1, 1, "open")]
    assert invoices[1]["total"] == expected_total([late], 50, 10)
    billed = b.database.conversations.count_documents(
        {"org_id": ObjectId(org.id), "line_item_id": {"$ne": None}})
    assert billed == 36 and sum(i["conversations"] for i in invoices) == 36
    assert b.reconciliation.run(checks=["unbilled"]).clean
    check_totals_and_links(b.database)


@pytest.mark.parametrize("head", ["wide", "narrow"])
@pytest.mark.parametrize("seed", range(3))
def test_uneven_stretches_of_end_times_are_billed_exactly_with_their_malformed_ones_counted(
    client: Any, db_name: str, seed: int, head: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bursts, long gaps, ties and malformed conversations: every stretch a chunk reads (too
    full, under-filled or empty) bills each well-formed conversation once, and the finished
    invoice counts every malformed one of the period. With a narrow head (room for two
    malformed ones), bursts overfill the stretches a chunk reads unordered (read again in
    order) and malformed ones crowd the head."""
    if head == "narrow":
        monkeypatch.setattr(queries, "MAX_EXCLUDED", 2)
    rng = random.Random(seed)
    b, org = bounded(client, db_name, rng.randint(3, 8))
    oid = ObjectId(org.id)
    docs: list[dict[str, Any]] = []
    for burst in sorted(rng.sample(range(30 * 24), 6)):  # hours of October with a burst
        for _ in range(rng.randint(1, 25)):
            end = OCT[0] + timedelta(hours=burst, seconds=rng.randint(0, 20))
            start = end - timedelta(seconds=rng.randint(0, 200)) if rng.random() < 0.85 \
                else end + timedelta(seconds=1)
            docs.append({"_id": ObjectId(), "org_id": oid, "started_at": start,
                         "ended_at": end, "line_item_id": None})
    b.database.conversations.insert_many(docs)
    good = [d for d in docs if d["started_at"] <= d["ended_at"]]

    inv = b.invoices.create_for_period(org.id, *OCT)

    billed = {d["_id"] for d in b.database.conversations.find({"line_item_id": {"$ne": None}})}
    assert billed == {d["_id"] for d in good}
    assert (inv.conversations, inv.skipped_malformed) == (len(good), len(docs) - len(good))
    assert inv.total == expected_total(good, 50, 10) and inv.status is InvoiceStatus.OPEN
    check_totals_and_links(b.database)


@pytest.mark.parametrize("order", ["before", "after"])
def test_a_malformed_conversation_at_the_first_millisecond_of_the_last_stretch_counts_once(
    client: Any, db_name: str, order: str
) -> None:
    """The last stretch starts within a millisecond of tied end times (the resume key holds the
    last id read); a malformed conversation ending then, with an id before or after that key,
    is in the pass's count of those before the stretch, and after it also in the stretch
    itself: the finished invoice counts it once."""
    b, org = bounded(client, db_name, 10)
    oid = ObjectId(org.id)
    docs = [{"_id": ObjectId(), "org_id": oid, "line_item_id": None,
             "started_at": OCT[0] + timedelta(days=2 * i),
             "ended_at": OCT[0] + timedelta(days=2 * i, seconds=30)} for i in range(12)]
    docs[10] = {**docs[10], "ended_at": docs[9]["ended_at"],
                "started_at": docs[9]["started_at"]}  # ties with the tenth
    b.database.conversations.insert_many(docs)
    ordered = sorted(docs, key=lambda d: (d["ended_at"], d["_id"]))
    tenth = ordered[9]
    bad = {"_id": ObjectId("0" * 24 if order == "before" else "f" * 23 + "e"), "org_id": oid,
           "line_item_id": None, "started_at": tenth["ended_at"] + timedelta(seconds=5),
           "ended_at": tenth["ended_at"]}  # started after it ended: malformed
    b.database.conversations.insert_one(bad)

    draft = first_chunk_only(b, org)
    assert (draft["resume_after"]["ended_at"], draft["resume_after"]["_id"]) == (
        tenth["ended_at"], tenth["_id"])
    inv = b.invoices.create_for_period(org.id, *OCT)

    assert (inv.conversations, inv.skipped_malformed) == (12, 1)
    assert inv.total == expected_total(docs, 50, 10) and inv.status is InvoiceStatus.OPEN
    stored = b.database.conversations.find_one({"_id": bad["_id"]})
    assert stored is not None and stored["line_item_id"] is None
    check_totals_and_links(b.database)


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_every_chunk_transaction_sends_the_same_commands_the_first_one_included(
    mongo_uri: str, db_name: str
) -> None:
    """Two reads (org and invoice; the chunk with the malformed ones, and in the first
    transaction a bound of the period's usage), one write, the commit: the same count for
    every chunk."""
    listener = Commands()
    watched: MongoClient[dict[str, Any]] = MongoClient(
        mongo_uri, tz_aware=True, event_listeners=[listener])
    with watched:
        b = Billing(watched, database=db_name, max_docs_per_transaction=10, joined_reads=False)
        b.setup()
        org = b.orgs.create(name="Acme", currency="usd", per_conversation=50,
                            per_started_minute=10)
        docs = seed_conversations(b.database, org.id, 25)
        listener.names.clear()

        inv = b.invoices.create_for_period(org.id, *OCT)

        sent_by_billing = list(listener.names)  # closing the client sends endSessions

    assert inv.conversations == 25 and inv.total == expected_total(docs, 50, 10)
    transactions: list[list[str]] = [[]]
    for name in sent_by_billing:
        transactions[-1].append(name)
        if name == "commitTransaction":
            transactions.append([])
    assert transactions.pop() == []
    # 25 conversations in the first half hour of October, then none: three chunks of them,
    # and a few that find the rest of the month empty, each reading a longer stretch.
    assert 3 <= len(transactions) <= 8, transactions
    for sent in transactions:
        assert sent[:2] == ["aggregate"] * 2 and sent[-1] == "commitTransaction", sent
        assert len(sent) == 4, sent
        assert len(sent) == len(transactions[0]), transactions
