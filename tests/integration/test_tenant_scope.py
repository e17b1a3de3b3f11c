"""Every command billing sends to a collection of tenant data names the org it acts for.

A listener records every command of a workload that touches each service (invoices, line items,
payments, payment methods, conversations, credit notes, webhooks, events, invoice runs,
reconciliation and collection); each read, write and pipeline on a tenant collection must carry
`org_id` in its filter (or its first `$match`), and each inserted document its `org_id`. The
repositories are the one door to the database; this test is what makes "scoped by org" more than
a convention there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient, monitoring

from billing import Billing, Period
from billing.adapters import schema
from tests.support.isolation_world import WEBHOOK_SECRET, two_orgs
from tests.support.plans import READS, explainable, leading_fields, lookups, stages
from tests.support.rejected_webhooks import event_body, signed

pytestmark = pytest.mark.integration

TENANT = {schema.CONVERSATIONS, schema.INVOICES, schema.LINE_ITEMS, schema.PAYMENTS,
          schema.PAYMENT_METHODS, schema.EVENTS, schema.CREDIT_NOTES}
# Reads that cross orgs by design, each with the reason.
ACROSS_ORGS = {
    # Reconciliation's dangling-link check: is a linked line item missing in *every* org? A
    # line item found in another org means the conversation's org_id was rewritten after
    # billing: reported for a person, never released (releasing would bill it twice).
    ("find", schema.LINE_ITEMS, frozenset({"_id"})),
}
SKIP = {"getMore", "killCursors", "commitTransaction", "abortTransaction", "endSessions",
        "hello", "isMaster", "buildInfo", "ping", "listCollections", "listIndexes",
        "createIndexes", "create", "collMod", "explain"}


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in SKIP:
            self.seen.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def scoped(filter: Any) -> bool:
    """Whether a filter pins `org_id` (directly, or in every branch of an `$and`)."""
    if not isinstance(filter, dict):
        return False
    if "org_id" in filter:
        return True
    return any(scoped(part) for part in filter.get("$and", []))


def unscoped(name: str, command: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """What of one command reaches tenant data without naming its org."""
    if name == "bulkWrite":  # one command across collections (MongoDB 8.0)
        spaces = [ns["ns"].split(".", 1)[1] for ns in command.get("nsInfo", [])]
        out = []
        for op in command.get("ops", []):
            kind = next(k for k in ("insert", "update", "delete") if k in op)
            target = op.get("document") if kind == "insert" else op.get("filter")
            if spaces[op[kind]] in TENANT and not scoped(target):
                out.append((f"bulkWrite.{kind}", spaces[op[kind]], target))
        return out
    collection = command.get(name)
    if not isinstance(collection, str) or collection not in TENANT:
        return []
    if name == "insert":
        return [(name, collection, d) for d in command["documents"] if not scoped(d)]
    if name in ("update", "delete"):
        key = "updates" if name == "update" else "deletes"
        return [(name, collection, s["q"]) for s in command[key] if not scoped(s["q"])]
    if name == "aggregate":
        pipeline = command["pipeline"]
        first = pipeline[0].get("$match") if pipeline else None
        return [] if scoped(first) else [(name, collection, pipeline[:1])]
    filter = command.get("filter", command.get("query", {}))
    if scoped(filter):
        return []
    if (name, collection, frozenset(filter)) in ACROSS_ORGS:
        return []
    return [(name, collection, filter)]


def workload(mongo_uri: str, db_name: str, client: Any, stripe_gateway: Any
             ) -> list[tuple[str, Any]]:
    """The commands billing sent for work on both orgs of `two_orgs` by every service."""
    db = client[db_name]  # the test's own reads and damage, unwatched
    listener = Commands()
    with MongoClient(mongo_uri, tz_aware=True, event_listeners=[listener]) as watched:
        b = Billing(watched, database=db_name, gateway=stripe_gateway,
                    webhook_secret=WEBHOOK_SECRET, transaction_retry_seconds=60)
        b.setup()  # schema management (migrations may span orgs): not tenant work
        listener.seen.clear()
        w = two_orgs(b)
        a, other = w.a, w.b
        # Reads, edits and corrections of one org's documents.
        b.invoices.get(a.org, a.open_invoice)
        b.conversations.get(a.org, a.conversation)
        b.conversations.record_many(a.org, [
            {"external_id": f"bulk-{i}", "started_at": datetime(2026, 11, 3, tzinfo=UTC),
             "ended_at": datetime(2026, 11, 3, 0, 2, tzinfo=UTC)} for i in range(3)])
        b.line_items.remove(a.org, a.draft, a.manual_item)
        b.payment_methods.list(a.org)
        b.payment_methods.set_default(a.org, a.method)
        b.credit_notes.create(a.org, a.open_invoice, amount=10, reason="order_change",
                              request_id="cn-a")
        b.invoices.pay(a.org, a.open_invoice)
        b.credit_notes.create(other.org, other.open_invoice, amount=10, reason="duplicate",
                              request_id="cn-b")  # paid: refunded through Stripe
        b.credit_notes.list(a.org)
        b.invoices.void(other.org, other.draft)
        b.events.poll(a.org, after=0)
        # A webhook for a payment, and one for a method.
        payment = db.payments.find_one({"org_id": ObjectId(other.org)})
        assert payment is not None
        intent = {"id": payment["intent_id"], "object": "payment_intent", "status": "succeeded",
                  "amount": payment["amount"], "currency": payment["currency"],
                  "metadata": {"org_id": other.org, "payment_id": str(payment["_id"])}}
        b.webhooks.handle(*signed(event_body(id=f"evt_{ObjectId()}",
                                             type="payment_intent.succeeded",
                                             data={"object": intent})))
        # Damage for reconciliation to find: a link to a line item that exists nowhere.
        db.conversations.update_one({"_id": ObjectId(a.conversation)},
                                    {"$set": {"line_item_id": ObjectId()}})
        # The long runs, over both orgs.
        b.invoices.run_period(Period.month("2026-10"))
        b.reconciliation.run(apply=True, stale_after=timedelta(0))
        b.collections.run(apply=True)
        b.payment_methods.detach(a.org, a.method)
    touched = {c.get(n) for n, c in listener.seen if isinstance(c.get(n), str)}
    assert TENANT <= touched | {schema.EVENTS}, f"the workload missed {TENANT - touched}"
    assert len(listener.seen) > 150
    return listener.seen


def test_every_command_on_tenant_data_names_its_org(
    mongo_uri: str, db_name: str, client: Any, stripe_gateway: Any
) -> None:
    seen = workload(mongo_uri, db_name, client, stripe_gateway)
    found = [u for name, command in seen for u in unscoped(name, command)]
    assert found == []


def test_every_read_of_tenant_data_is_served_by_an_index(
    mongo_uri: str, db_name: str, client: Any, stripe_gateway: Any
) -> None:
    """Each read of the workload, explained on the same data, uses an index; each join
    (`$lookup`) is on a field that leads one of the joined collection's indexes, which
    SecantusDB needs to read it from that index rather than whole (mongod, which billing lets
    join conversations too, uses its indexes for any equality there)."""
    seen = workload(mongo_uri, db_name, client, stripe_gateway)
    joined_reads = "secantusVersion" not in client.admin.command("buildInfo")
    scanned, joins = [], []
    for name, command in seen:
        collection = command.get(name)
        if name not in READS or collection not in TENANT:
            continue
        command = explainable(name, command)
        if name == "aggregate":
            joins += [(collection, j) for j in lookups(command["pipeline"])
                      if not (joined_reads and j["from"] == schema.CONVERSATIONS)]
        plan = client[db_name].command("explain", command, verbosity="queryPlanner")
        if "COLLSCAN" in stages(plan):
            scanned.append((name, collection, command.get("filter", command.get("pipeline"))))
    assert scanned == [], "\n".join(map(str, scanned))
    assert joins, "the workload sent no join to check"
    unindexed = [(c, j["from"], j.get("foreignField")) for c, j in joins
                 if j.get("foreignField") not in leading_fields(j["from"])]
    assert unindexed == []
