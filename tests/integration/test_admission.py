"""`max_concurrent_transactions`: an instance's threads or tasks run at most that many
transactions at once (one on SecantusDB by default, which runs one transaction statement at a
time and queues the rest expensively), and every caller's invoice is still made, exactly.

The transactions in flight are counted from the commands each client sends: a session's
transaction is open from its `startTransaction` to its commit or abort.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from pymongo import AsyncMongoClient, MongoClient, monitoring

from billing import AsyncBilling, Billing
from billing._sync.unit_of_work import UnitOfWork
from tests.conftest import CLIENT_TIMEOUT_MS
from tests.support.billing_data import OCT, expected_total, seed_conversations
from tests.support.invariants import check_all
from tests.support.racing import as_tasks, in_threads

pytestmark = pytest.mark.integration
CALLERS = 6  # orgs billed at once through each instance
CONVERSATIONS, CHUNK = 12, 3  # 4 transactions per invoice


class InFlight(monitoring.CommandListener):
    """The most transactions one client had open at once (replies name no session: each
    command's session is kept by its request id until its reply)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[int, bytes] = {}
        self._open: set[bytes] = set()
        self.most = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        session = bytes(event.command.get("lsid", {}).get("id", b""))
        with self._lock:
            self._sessions[event.request_id] = session
            if event.command.get("startTransaction"):
                self._open.add(session)
                self.most = max(self.most, len(self._open))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._ended(event)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._ended(event)

    def _ended(self, event: monitoring.CommandSucceededEvent | monitoring.CommandFailedEvent
               ) -> None:
        with self._lock:
            session = self._sessions.pop(event.request_id, None)
            if event.command_name in ("commitTransaction", "abortTransaction"):
                self._open.discard(session or b"")


@pytest.mark.parametrize("cap", [None, 2, 0], ids=["by-server", "two", "no-cap"])
async def test_an_instance_runs_at_most_its_cap_of_transactions_at_once(
    request: pytest.FixtureRequest, mongo_uri: str, db_name: str, cap: int | None
) -> None:
    secantus = request.node.callspec.params["mongo_uri"] == "secantus"
    sync_seen, async_seen = InFlight(), InFlight()
    sync_client: MongoClient[Any] = MongoClient(mongo_uri, timeoutMS=CLIENT_TIMEOUT_MS,
                                                event_listeners=[sync_seen])
    async_client: AsyncMongoClient[Any] = AsyncMongoClient(
        mongo_uri, timeoutMS=CLIENT_TIMEOUT_MS, event_listeners=[async_seen])
    try:
        b = Billing(sync_client, database=db_name, max_docs_per_transaction=CHUNK,
                    max_concurrent_transactions=cap)
        ab = AsyncBilling(async_client, database=db_name, max_docs_per_transaction=CHUNK,
                          max_concurrent_transactions=cap)
        b.setup()
        orgs = [b.orgs.create(name=f"Org {i}", currency="usd", per_conversation=7,
                              per_started_minute=3) for i in range(2 * CALLERS)]
        docs = {o.id: seed_conversations(b.database, o.id, CONVERSATIONS) for o in orgs}
        sync_orgs, async_orgs = orgs[:CALLERS], orgs[CALLERS:]
        by_threads, by_tasks = await asyncio.gather(
            asyncio.to_thread(in_threads, [
                lambda o=o: b.invoices.create_for_period(o.id, *OCT) for o in sync_orgs]),
            as_tasks([lambda o=o: ab.invoices.create_for_period(o.id, *OCT)
                      for o in async_orgs]))
    finally:
        await async_client.close()

    try:
        assert by_threads.errors == [] and by_tasks.errors == []
        made = {i.org_id: i for i in by_threads.results + by_tasks.results}
        assert sorted(made) == sorted(o.id for o in orgs)
        for o in orgs:
            assert made[o.id].total == expected_total(docs[o.id], 7, 3)
            assert made[o.id].conversations == CONVERSATIONS
        assert b.database.conversations.count_documents({"line_item_id": None}) == 0
        check_all(b.database)
    finally:
        sync_client.close()

    for seen in (sync_seen, async_seen):
        if cap:
            assert 1 <= seen.most <= cap
        elif cap is None and secantus:  # the engine's default: one at a time
            assert seen.most == 1
        elif cap == 0 and secantus:  # no cap: the callers' transactions overlap
            assert seen.most > 1


def test_waiting_for_a_slot_does_not_use_up_the_retry_budget(client: Any, db_name: str) -> None:
    """Callers queued behind slow transactions (0.4 s each, one at a time) wait longer than
    `retry_seconds` (0.3 s) for their turn, and still run: the budget is for retrying
    conflicts, and starts when the caller is admitted."""
    uow = UnitOfWork(client, db_name, retry_seconds=0.3, max_concurrent_transactions=1)

    def slow(txn: Any) -> int:
        time.sleep(0.4)
        return txn.count("conversations", {"org_id": None})

    raced = in_threads([lambda: uow.run(slow)] * 4)

    assert raced.errors == [] and raced.results == [0] * 4
