"""Billing services bound to the per-test database, sync and async."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from billing import AsyncBilling, Billing


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
