"""The database gone: every public call raises a typed, retryable error within the client's
server selection timeout (never a pymongo error, never `transaction_retry_seconds` of retries),
and runs over many orgs stop at once instead of failing org after org."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.errors import WTimeoutError
from pymongo.synchronous.client_session import ClientSession

from billing import Billing, DatabaseUnavailable, Period, TransientDatabaseError
from tests.support.billing_data import OCT, seed_conversations
from tests.support.crash import ServerProcess
from tests.support.drivers import Clock
from tests.support.invariants import check_totals_and_links

pytestmark = pytest.mark.integration

SELECTION_MS = 500
PRICES = {"per_conversation": 5, "per_started_minute": 1}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A SecantusDB of the test's own (a child process) that the test kills by PID."""
    srv = ServerProcess(tmp_path / "db", transaction_lifetime_seconds=2)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def down(server: ServerProcess) -> Iterator[dict[str, Any]]:
    """20 orgs with October conversations (one invoiced, with a conversation recorded), then
    the server killed; a Billing that would otherwise retry for 120 s."""
    client: MongoClient[dict[str, Any]] = MongoClient(
        server.uri, serverSelectionTimeoutMS=SELECTION_MS)
    try:
        b = Billing(client, database="billing", transaction_retry_seconds=120)
        b.setup()
        orgs = [b.orgs.create(name=f"Org {i}", currency="usd", **PRICES) for i in range(20)]
        for org in orgs:
            seed_conversations(b.database, org.id, 5)
        first = b.invoices.create_for_period(orgs[0].id, *OCT)
        conversation = b.conversations.record(orgs[1].id, started_at=OCT[0],
                                              ended_at=OCT[0] + (OCT[1] - OCT[0]) / 2)
        server.kill()
        yield {"billing": b, "orgs": [o.id for o in orgs], "invoice": first.id,
               "conversation": conversation.id}
    finally:
        client.close()


CALLS: dict[str, Callable[[Billing, dict[str, Any]], Any]] = {
    "orgs.get": lambda b, d: b.orgs.get(d["orgs"][0]),
    "orgs.create": lambda b, d: b.orgs.create(name="New", currency="usd", **PRICES),
    "conversations.get": lambda b, d: b.conversations.get(d["orgs"][1], d["conversation"]),
    "conversations.record": lambda b, d: b.conversations.record(
        d["orgs"][1], started_at=OCT[0], ended_at=OCT[0]),
    "payment_methods.list": lambda b, d: b.payment_methods.list(d["orgs"][0]),
    "invoices.get": lambda b, d: b.invoices.get(d["orgs"][0], d["invoice"]),
    "invoices.create_for_period": lambda b, d: b.invoices.create_for_period(d["orgs"][2], *OCT),
    "invoices.run_period": lambda b, d: b.invoices.run_period(Period(*OCT)),
    "invoices.run_period one org": lambda b, d: b.invoices.run_period(Period(*OCT),
                                                                      org_id=d["orgs"][3]),
    "reconciliation.run": lambda b, d: b.reconciliation.run(),
    "reconciliation.run apply": lambda b, d: b.reconciliation.run(apply=True),
}


@pytest.mark.slow
def test_every_call_with_the_database_down_raises_a_typed_retryable_error_at_once(
    down: dict[str, Any],
) -> None:
    b: Billing = down["billing"]
    problems = []
    for label, call in CALLS.items():
        started = time.monotonic()
        try:
            outcome: Any = call(b, down)
        except Exception as exc:  # noqa: BLE001 - judged below
            outcome = exc
        took = time.monotonic() - started
        # The first call may see the lost connection itself (a TransientDatabaseError); once
        # the driver knows the server is gone, server selection fails: DatabaseUnavailable.
        if not isinstance(outcome, TransientDatabaseError):
            problems.append(f"{label}: {type(outcome).__module__}.{type(outcome).__name__} "
                            f"{outcome!s:.200}")
        elif label != next(iter(CALLS)) and not isinstance(outcome, DatabaseUnavailable):
            problems.append(f"{label}: {type(outcome).__name__}, not DatabaseUnavailable")
        # A selection timeout or two (an aborted attempt, then one retry), not 120 s.
        if took > 10 * SELECTION_MS / 1000:
            problems.append(f"{label}: took {took:.1f} s")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_a_run_over_many_orgs_stops_at_the_first_unreachable_org_and_bills_it_later(
    server: ServerProcess, down: dict[str, Any]
) -> None:
    b: Billing = down["billing"]
    started = time.monotonic()

    with pytest.raises(TransientDatabaseError):  # raised, never 19 orgs reported `failed`
        b.invoices.run_period(Period(*OCT))

    assert time.monotonic() - started < 10 * SELECTION_MS / 1000
    server.start()
    check_totals_and_links(b.database)
    summary = b.invoices.run_period(Period(*OCT))
    assert summary.ok and summary.counts["invoiced"] == 19
    assert summary.counts["already_invoiced"] == 1


UNKNOWN_AT = OCT[0] + timedelta(days=3)


def test_a_commit_whose_outcome_stays_unknown_is_not_reported_as_rolled_back(
        mongo_uri: str, db_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit lands, but the majority acknowledgement never comes (its outcome stays
    unknown past transaction_retry_seconds): billing must not say nothing was written, since
    repeating a call without an idempotency key would record (and bill) it twice."""
    client: MongoClient[Any] = MongoClient(mongo_uri, timeoutMS=20_000)
    try:
        b = Billing(client, database=db_name, clock=Clock(datetime(2026, 11, 20, tzinfo=UTC)),
                    transaction_retry_seconds=1)
        b.setup()
        org = b.orgs.create(name="W", currency="usd", per_conversation=50, per_started_minute=10)
        real = ClientSession.commit_transaction
        calls = {"n": 0}

        def commit(self: ClientSession) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                real(self)  # the commit lands on the primary ...
            time.sleep(0.05)
            # ... but majority acknowledgement times out: pymongo labels it (driver spec)
            exc = WTimeoutError("waiting for replication timed out", 64,
                                {"ok": 0, "code": 64, "errmsg": "waiting for replication "
                                 "timed out", "errInfo": {"wtimeout": True}})
            exc._add_error_label("UnknownTransactionCommitResult")
            raise exc

        monkeypatch.setattr(ClientSession, "commit_transaction", commit)
        with pytest.raises(TransientDatabaseError) as err:
            b.conversations.record(org.id, started_at=UNKNOWN_AT,
                                   ended_at=UNKNOWN_AT + timedelta(seconds=30))
        monkeypatch.setattr(ClientSession, "commit_transaction", real)
        assert b.database.conversations.count_documents({}) == 1  # it was written
        # The error must not claim that nothing was written (retrying would record it twice)
        assert "nothing was written" not in err.value.message, err.value.message
        assert "whether it took effect is unknown" in err.value.message
    finally:
        client.close()
