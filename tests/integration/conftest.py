"""Billing services bound to the per-test database, sync and async; the payment tests' driver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from billing import AsyncBilling, Billing
from tests.support.drivers import FLAVOURS, LEASE, NOW, Clock, Driver


@pytest.fixture
def billing(client: Any, db_name: str) -> Billing:
    b = Billing(client, database=db_name, transaction_retry_seconds=60)
    b.setup()
    return b


@pytest.fixture
async def abilling(async_client: Any, db_name: str) -> AsyncIterator[AsyncBilling]:
    b = AsyncBilling(async_client, database=db_name, transaction_retry_seconds=60)
    await b.setup()
    yield b


@pytest.fixture
def org(billing: Billing) -> Any:
    return billing.orgs.create(name="Acme", currency="usd", per_conversation=50,
                               per_started_minute=10)


@pytest.fixture(params=FLAVOURS)
def d(request: pytest.FixtureRequest, mongo_uri: str, db_name: str) -> Iterator[Driver]:
    """A Driver of each flavour on the fake gateway: its clock at NOW, payment leases of LEASE
    seconds. A module needing other options defines its own `d`."""
    driver = Driver(request.param, mongo_uri, db_name, clock=Clock(NOW),
                    payment_lease_seconds=LEASE)
    try:
        yield driver
    finally:
        driver.close()
