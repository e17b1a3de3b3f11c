"""All or nothing: a failure injected at every step of a billing transaction leaves no trace;
bounded billing survives a crash between chunks and resumes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

from billing import Billing, InvoiceStatus, faults
from billing.faults import InjectedFault
from tests.support.billing_data import OCT, dump, expected_total, seed_conversations
from tests.support.invariants import check_totals_and_links

pytestmark = pytest.mark.integration

# (fault point, whether one bulkWrite across collections is used)
STEPS = [
    ("invoice.chunk.before_write", True),
    ("invoice.chunk.after_write", True),
    ("invoice.chunk.before_write", False),
    ("invoice.chunk.after_write", False),
]


@pytest.mark.parametrize(("point", "bulk"), STEPS)
def test_failure_after_any_write_step_rolls_everything_back(
    client: Any, db_name: str, point: str, bulk: bool
) -> None:
    billing = Billing(client, database=db_name, client_bulk_write=bulk)
    billing.setup()
    org = billing.orgs.create(name="A", currency="usd", per_conversation=5, per_started_minute=1)
    docs = seed_conversations(billing.database, org.id, 25)
    before = dump(billing.database)

    with faults.active({point: "raise"}), pytest.raises(InjectedFault):
        billing.invoices.create_for_period(org.id, *OCT)

    assert dump(billing.database) == before
    inv = billing.invoices.create_for_period(org.id, *OCT)  # and it still works afterwards
    assert inv.total == expected_total(docs, 5, 1) and inv.number == 1
    check_totals_and_links(billing.database)


@pytest.mark.parametrize("point", ["invoice.finalize.after_write", "invoice.void.after_write",
                                   "line_items.after_write"])
def test_failure_in_finalize_void_and_line_item_edits_rolls_back(
    billing: Billing, org: Any, point: str
) -> None:
    seed_conversations(billing.database, org.id, 3)
    draft = billing.invoices.create_for_period(org.id, *OCT, finalize=False)
    before = dump(billing.database)
    with faults.active({point: "raise"}), pytest.raises(InjectedFault):
        if point.startswith("invoice.finalize"):
            billing.invoices.finalize(org.id, draft.id)
        elif point.startswith("invoice.void"):
            billing.invoices.void(org.id, draft.id)
        else:
            billing.line_items.add(org.id, draft.id, description="x", quantity=1, unit_amount=9)
    assert dump(billing.database) == before


def test_bounded_billing_uses_several_transactions_and_resumes_after_failure(
    client: Any, db_name: str
) -> None:
    billing = Billing(client, database=db_name, max_docs_per_transaction=40)
    billing.setup()
    org = billing.orgs.create(name="A", currency="usd", per_conversation=5, per_started_minute=2)
    docs = seed_conversations(billing.database, org.id, 130)

    with faults.active({"invoice.between_chunks": "raise"}), pytest.raises(InjectedFault):
        billing.invoices.create_for_period(org.id, *OCT)

    draft = billing.database.invoices.find_one({"org_id": ObjectId(org.id)})
    assert draft is not None
    assert (draft["status"], draft["complete"], draft["number"]) == ("draft", False, None)
    assert billing.database.conversations.count_documents({"line_item_id": None}) == 130 - 40
    check_totals_and_links(billing.database)

    inv = billing.invoices.create_for_period(org.id, *OCT)  # resumes the draft

    assert inv.id == str(draft["_id"]) and inv.status is InvoiceStatus.OPEN and inv.number == 1
    assert inv.conversations == 130 and inv.total == expected_total(docs, 5, 2)
    assert billing.database.conversations.count_documents({"line_item_id": None}) == 0
    check_totals_and_links(billing.database)


def test_process_killed_between_chunks_leaves_a_resumable_draft(
    mongo_uri: str, client: Any, db_name: str
) -> None:
    billing = Billing(client, database=db_name, max_docs_per_transaction=25)
    billing.setup()
    org = billing.orgs.create(name="A", currency="usd", per_conversation=3, per_started_minute=1)
    docs = seed_conversations(billing.database, org.id, 60)
    script = textwrap.dedent(f"""
        from datetime import datetime, UTC
        from pymongo import MongoClient
        from billing import Billing
        b = Billing(MongoClient({mongo_uri!r}), database={db_name!r}, max_docs_per_transaction=25)
        b.invoices.create_for_period({org.id!r}, datetime(2026, 10, 1, tzinfo=UTC),
                                     datetime(2026, 11, 1, tzinfo=UTC))
    """)
    env = {**os.environ, "BILLING_FAULTS": "invoice.between_chunks=kill"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, timeout=120)
    assert proc.returncode == -9  # SIGKILL at the fault point, after the first chunk committed

    draft = billing.database.invoices.find_one({"org_id": ObjectId(org.id)})
    assert draft is not None and draft["status"] == "draft" and not draft["complete"]
    assert billing.database.conversations.count_documents({"line_item_id": None}) == 35

    inv = billing.invoices.finalize(org.id, str(draft["_id"]))  # finalize resumes first

    assert inv.status is InvoiceStatus.OPEN and inv.conversations == 60
    assert inv.total == expected_total(docs, 3, 1)
    check_totals_and_links(billing.database)


def test_chunks_split_conversations_that_end_at_the_same_instant(
    client: Any, db_name: str
) -> None:
    """Chunk boundaries fall inside runs of equal ended_at: (ended_at, _id) order keeps each
    conversation in exactly one chunk."""
    billing = Billing(client, database=db_name, max_docs_per_transaction=4)
    billing.setup()
    org = billing.orgs.create(name="A", currency="usd", per_conversation=1, per_started_minute=0)
    oid = ObjectId(org.id)
    ends = [OCT[0] + timedelta(hours=h) for h in (1, 1, 1, 1, 1, 2, 2, 2, 3)]
    billing.database.conversations.insert_many([
        {"org_id": oid, "started_at": end - timedelta(seconds=30), "ended_at": end,
         "line_item_id": None} for end in ends])

    inv = billing.invoices.create_for_period(org.id, *OCT)

    assert inv.conversations == len(ends) and inv.total == len(ends)
    assert billing.database.conversations.count_documents({"line_item_id": None}) == 0
    check_totals_and_links(billing.database)
