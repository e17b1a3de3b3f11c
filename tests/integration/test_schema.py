"""`setup`: the data contract installed idempotently, drift reported, migrations applied once and
safe to rerun, and a database without the schema refused (sync and async)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient, MongoClient
from pymongo.errors import DuplicateKeyError

from billing import AsyncBilling, Billing, ConfigurationError, TransientDatabaseError
from billing._sync.migrations import MIGRATIONS, VERSION
from billing.adapters import schema
from tests.support.billing_data import OPEN, dump
from tests.support.racing import in_threads

pytestmark = pytest.mark.integration


def test_setup_installs_the_contract_once_and_reports_what_it_did(
    client: MongoClient[Any], db_name: str
) -> None:
    b = Billing(client, database=db_name)
    drift = b.schema_drift()
    assert not drift.current and drift.version == 0 and drift.target == VERSION
    assert any(c.startswith("create collection invoices") for c in drift.changes)
    with pytest.raises(ConfigurationError, match="no billing schema"):
        b.require_schema()

    first = b.setup()
    assert first.version == VERSION and first.changes
    assert "created index invoices.one_per_period" in first.changes
    assert [c for c in first.changes if c.startswith("applied migration")] == [
        f"applied migration {m.version}: {m.name} (0 documents changed)" for m in MIGRATIONS]
    assert b.schema_drift().current
    b.require_schema()
    before = dump(b.database)
    again = b.setup()
    assert again.changes == [] and again.current
    assert dump(b.database) == before  # idempotent: nothing written


@pytest.mark.parametrize("start", ["empty", "older"])
def test_setups_run_at_once_by_several_processes_all_succeed(
    mongo_uri: str, client: MongoClient[Any], db_name: str, start: str
) -> None:
    """Deployments run `setup` from every process that starts: four at once, on a database
    without the schema or at an older version (a collection and an index to create), several
    times over, each succeed and leave the schema current."""
    for _ in range(3):
        client.drop_database(db_name)
        if start == "older":
            b = Billing(client, database=db_name)
            b.setup()
            b.database[schema.SCHEMA_MIGRATIONS].delete_many({"_id": {"$gte": 2}})
            b.database.drop_collection("credit_notes")
            b.database.conversations.drop_index(schema.EXTERNAL_ID_LOOKUP)
        clients = [MongoClient(mongo_uri) for _ in range(4)]
        try:
            raced = in_threads([(lambda c=c: Billing(c, database=db_name).setup())
                                for c in clients])
        finally:
            for c in clients:
                c.close()
        assert raced.errors == [] and len(raced.results) == 4
        assert Billing(client, database=db_name).schema_drift().current


def test_drift_names_a_missing_index_and_setup_restores_it(
    client: MongoClient[Any], db_name: str
) -> None:
    b = Billing(client, database=db_name)
    b.setup()
    b.database.invoices.drop_index("one_per_period")
    drift = b.schema_drift()
    assert drift.changes == ["create index invoices.one_per_period"] and not drift.current
    assert b.setup().changes == ["created index invoices.one_per_period"]
    assert b.schema_drift().current


def test_a_pending_migration_is_applied_once_and_reruns_are_harmless(
    client: MongoClient[Any], db_name: str
) -> None:
    b = Billing(client, database=db_name)
    b.setup()
    # A database last set up by version 1, holding an attempt an earlier billing confirmed.
    b.database[schema.SCHEMA_MIGRATIONS].delete_many({"_id": {"$gte": 2}})
    pid = ObjectId()
    b.database.payments.insert_one({
        "_id": pid, "org_id": ObjectId(), "invoice_id": ObjectId(), "attempt": 1,
        "status": "pending", "amount": 100, "currency": "usd", "idempotency_key": "k",
        "intent_id": "pi_1"})
    with pytest.raises(ConfigurationError, match="version 1"):
        b.require_schema()
    assert b.schema_drift().changes == [f"apply migration {m.version}: {m.name}"
                                        for m in MIGRATIONS[1:]]
    # Interrupted after its update, before its record: the rerun applies it again, harmlessly.
    MIGRATIONS[1].apply(b.database)
    report = b.setup()
    assert report.changes == [f"applied migration {m.version}: {m.name} (0 documents changed)"
                              for m in MIGRATIONS[1:]]
    doc = b.database.payments.find_one({"_id": pid})
    assert doc is not None and doc["status"] == "confirming"
    assert b.setup().changes == []
    b.require_schema()


def test_a_slower_setup_never_reruns_a_migration_over_live_data(
    client: MongoClient[Any], db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two setups upgrade one database from version 1; A finishes and a backend of this
    version writes an attempt `pending` with its intent recorded (between creating and
    confirming). B, which read version 1 before A recorded its migrations, must not run
    migration 2 again: it would turn that attempt `confirming` and break the payment."""
    from billing._sync import schema_setup

    b = Billing(client, database=db_name)
    b.setup()
    pid = ObjectId()
    b.database.payments.insert_one({
        "_id": pid, "org_id": ObjectId(), "invoice_id": ObjectId(), "attempt": 1,
        "status": "pending", "amount": 100, "currency": "usd", "idempotency_key": "k",
        "intent_id": "pi_live"})
    monkeypatch.setattr(schema_setup, "version_of", lambda db: 1)

    report = schema_setup.apply(b.database)

    assert not any("migration" in change for change in report.changes)
    doc = b.database.payments.find_one({"_id": pid})
    assert doc is not None and doc["status"] == "pending"


def test_a_migration_claimed_by_a_setup_that_died_is_taken_over(
    client: MongoClient[Any], db_name: str
) -> None:
    b = Billing(client, database=db_name)
    b.setup()
    records = b.database[schema.SCHEMA_MIGRATIONS]
    records.delete_many({"_id": {"$gte": 2}})
    # A setup killed while applying migration 2 left its claim; version 1 is what counts.
    records.insert_one({"_id": 2, "name": MIGRATIONS[1].name, "status": "applying",
                        "claimed_at": datetime.now(UTC) - timedelta(hours=2)})
    with pytest.raises(ConfigurationError, match="version 1"):
        b.require_schema()

    report = b.setup()

    assert report.changes[0].startswith("applied migration 2")
    assert {d["_id"]: d["status"] for d in records.find()} == {
        m.version: "applied" for m in MIGRATIONS if m.version > 1} | {
        d["_id"]: d.get("status", "applied") for d in records.find({"_id": 1})}
    b.require_schema()


def _instrument(monkeypatch: pytest.MonkeyPatch, during: Any) -> list[str]:
    """Migration 2 records each run and calls `during()` on its first run (the other setup
    arrives while it is being applied)."""
    from billing._sync import schema_setup

    runs: list[str] = []
    originals = schema_setup.MIGRATIONS

    def wrap(m: Any) -> Any:
        if m.version != 2:
            return m

        def apply(db: Any) -> int:
            runs.append("run")
            if len(runs) == 1:
                during()
            return m.apply(db)
        return dataclasses.replace(m, apply=apply)

    monkeypatch.setattr(schema_setup, "MIGRATIONS", tuple(wrap(m) for m in originals))
    monkeypatch.setattr(schema_setup, "CLAIM_WAIT_S", 1.0)  # keep the test short
    return runs


def _back_to_version_1(b: Billing) -> None:
    b.setup()
    b.database[schema.SCHEMA_MIGRATIONS].delete_many({"_id": {"$gte": 2}})


def test_a_live_claim_is_waited_for_however_long_the_setup_ran_before_it(
    client: MongoClient[Any], db_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Setup A started long ago (index builds take minutes on a large collection) and only
    then claims migration 2: its claim is stamped when made, so a setup B arriving while A
    applies it waits (and gives up), never runs it a second time."""
    from billing._sync import schema_setup

    b = Billing(client, database=db_name)
    _back_to_version_1(b)
    outcome: list[str] = []

    def other_setup() -> None:  # B, started now, while A is applying migration 2
        try:
            schema_setup.apply(b.database)
            outcome.append("B finished")
        except TransientDatabaseError:
            outcome.append("B waited for A")

    runs = _instrument(monkeypatch, other_setup)
    started = datetime.now(UTC) - timedelta(minutes=16)  # A began 16 min ago (index builds)

    schema_setup.apply(b.database, now=started)

    # Expected: B waits for A's live claim (and gives up after CLAIM_WAIT_S): one run.
    assert outcome == ["B waited for A"], outcome
    assert len(runs) == 1, f"migration 2 ran {len(runs)} times"


def test_a_newer_schema_is_refused(client: MongoClient[Any], db_name: str) -> None:
    b = Billing(client, database=db_name)
    b.setup()
    b.database[schema.SCHEMA_MIGRATIONS].insert_one({"_id": VERSION + 1, "name": "future"})
    with pytest.raises(ConfigurationError, match="newer"):
        b.setup()
    with pytest.raises(ConfigurationError, match="newer"):
        b.require_schema()


async def test_async_setup_is_the_same(async_client: AsyncMongoClient[Any], db_name: str
                                       ) -> None:
    b = AsyncBilling(async_client, database=db_name)
    with pytest.raises(ConfigurationError):
        await b.require_schema()
    report = await b.setup()
    assert report.version == VERSION and "created collection payments" in report.changes
    assert (await b.schema_drift()).current
    assert (await b.setup()).changes == []


def test_version_4_indexes_the_external_id_lookup_and_record_reads_on_it(
    client: MongoClient[Any], db_name: str
) -> None:
    b = Billing(client, database=db_name)
    b.setup()
    conversations = b.database.conversations
    # A database set up by version 3: no lookup index.
    conversations.drop_index(schema.EXTERNAL_ID_LOOKUP)
    b.database[schema.SCHEMA_MIGRATIONS].delete_one({"_id": 4})
    org = b.orgs.create(name="Acme", currency="usd", per_conversation=10, per_started_minute=2)
    other = b.orgs.create(name="Other", currency="usd", per_conversation=10,
                          per_started_minute=2)
    with pytest.raises(ConfigurationError, match="version 3"):
        b.require_schema()

    report = b.setup()
    assert f"created index {schema.CONVERSATIONS}.{schema.EXTERNAL_ID_LOOKUP}" in report.changes
    assert report.changes[-1] == f"applied migration 4: {MIGRATIONS[3].name} (0 documents changed)"
    assert b.setup().changes == []
    b.require_schema()

    # `record`'s lookup reads the index, on SecantusDB too (the unique index is partial on
    # `$type`, which its planner cannot use: it scanned the collection on every call).
    first = b.conversations.record(org.id, started_at=OPEN[0], ended_at=OPEN[0],
                                   external_id="call-1")
    b.conversations.record(other.id, started_at=OPEN[0], ended_at=OPEN[0],
                           external_id="call-1")
    plan = conversations.find({"org_id": ObjectId(org.id), "external_id": "call-1"}).explain()
    assert "IXSCAN" in str(plan["queryPlanner"]["winningPlan"])
    again = b.conversations.record(org.id, started_at=OPEN[0], ended_at=OPEN[0],
                                   external_id="call-1")
    assert again.id == first.id
    # Still one per org and external_id, and a lookup by external_id alone finds both orgs'.
    with pytest.raises(DuplicateKeyError):
        conversations.insert_one({"org_id": ObjectId(org.id), "external_id": "call-1"})
    assert conversations.count_documents({"external_id": "call-1"}) == 2
