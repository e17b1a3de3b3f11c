"""`conversations.record_many`: one transaction per batch, idempotent per external_id, all or
nothing with the bad item's index named (sync and async, on SecantusDB)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing import InvalidInput, StateConflict
from billing.domain.pricing import started_minutes
from tests.support.billing_data import OCT, dump
from tests.support.drivers import FLAVOURS, Clock, Driver

pytestmark = pytest.mark.integration


@pytest.fixture(params=FLAVOURS)
def d(request: pytest.FixtureRequest, mongo_uri: str, db_name: str) -> Iterator[Driver]:
    driver = Driver(request.param, mongo_uri, db_name,
                    clock=Clock(datetime(2026, 11, 20, tzinfo=UTC)))
    try:
        yield driver
    finally:
        driver.close()


def items(n: int, *, prefix: str = "call") -> list[dict[str, Any]]:
    start = OCT[0] + timedelta(days=2)
    return [{"started_at": start + timedelta(minutes=i),
             "ended_at": start + timedelta(minutes=i, seconds=(i * 7) % 190),
             "external_id": f"{prefix}-{i}"} for i in range(n)]


def test_a_batch_is_recorded_once_and_billed_exactly(d: Driver) -> None:
    org = d("orgs.create", name="Bulk", currency="usd", per_conversation=5, per_started_minute=2)
    batch = items(1000)
    recorded = d("conversations.record_many", org.id, batch)
    assert [c.external_id for c in recorded] == [i["external_id"] for i in batch]
    assert d.db.conversations.count_documents({}) == 1000
    again = d("conversations.record_many", org.id, batch)  # a retried batch writes nothing
    assert [c.id for c in again] == [c.id for c in recorded]
    assert d.db.conversations.count_documents({}) == 1000
    mixed = d("conversations.record_many", org.id, [*batch[:3], *items(2, prefix="new")])
    assert [c.id for c in mixed[:3]] == [c.id for c in recorded[:3]]
    assert d.db.conversations.count_documents({}) == 1002
    inv = d("invoices.create_for_period", org.id, *OCT)
    minutes = sum(started_minutes(i["started_at"], i["ended_at"])
                  for i in [*batch, *items(2, prefix="new")])
    assert inv.conversations == 1002 and inv.total == 5 * 1002 + 2 * minutes


@pytest.mark.parametrize("bad, message", [
    ({"started_at": OCT[0]}, r"items\[7\]: .*ended_at"),
    ({"started_at": OCT[0], "ended_at": OCT[0] - timedelta(seconds=1)}, r"items\[7\]: .*ended_at"),
    ({"started_at": "2026-10-01", "ended_at": OCT[0]}, r"items\[7\]: .*started_at"),
    ({"started_at": OCT[0], "ended_at": OCT[0], "external_id": "\ud800"}, r"items\[7\]"),
    ({"started_at": OCT[0], "ended_at": OCT[0], "org_id": "x"}, r"items\[7\] has unknown"),
    ("not a mapping", r"items\[7\] must be a mapping"),
])
def test_one_bad_item_writes_nothing_and_is_named(d: Driver, bad: Any, message: str) -> None:
    org = d("orgs.create", name="Bulk", currency="usd", per_conversation=5, per_started_minute=2)
    batch: list[Any] = items(10)
    batch[7] = bad
    before = dump(d.db)
    with pytest.raises(InvalidInput, match=message):
        d("conversations.record_many", org.id, batch)
    assert dump(d.db) == before


def test_an_external_id_with_other_times_refuses_the_batch(d: Driver) -> None:
    org = d("orgs.create", name="Bulk", currency="usd", per_conversation=5, per_started_minute=2)
    d("conversations.record_many", org.id, items(3))
    changed = items(5)
    changed[4] = {**changed[1], "external_id": "call-1", "ended_at": changed[1]["ended_at"]
                  + timedelta(seconds=1)}
    before = dump(d.db)
    with pytest.raises(StateConflict, match=r"items\[4\]"):
        d("conversations.record_many", org.id, changed)
    twice = [*items(2, prefix="x"), {**items(2, prefix="x")[0], "ended_at": OCT[1]}]
    with pytest.raises(StateConflict, match=r"items\[2\]"):  # repeated within the batch
        d("conversations.record_many", org.id, twice)
    assert dump(d.db) == before


@pytest.mark.parametrize("batch", [[], "abc", {"a": 1}, None, 5])
def test_the_batch_itself_is_checked(d: Driver, batch: Any) -> None:
    org = d("orgs.create", name="Bulk", currency="usd", per_conversation=5, per_started_minute=2)
    with pytest.raises(InvalidInput):
        d("conversations.record_many", org.id, batch)


def test_more_than_a_thousand_is_refused(d: Driver) -> None:
    org = d("orgs.create", name="Bulk", currency="usd", per_conversation=5, per_started_minute=2)
    with pytest.raises(InvalidInput, match="1 to 1000"):
        d("conversations.record_many", org.id, items(1001))
    assert d.db.conversations.count_documents({}) == 0
