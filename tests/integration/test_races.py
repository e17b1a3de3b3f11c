"""Many concurrent callers on one org and period: one invoice, every conversation billed once;
the callers' transactions admitted as the server's default has it (one at a time on SecantusDB)
and all at once (`max_concurrent_transactions=0`, as on MongoDB), so they meet in the engine."""

from __future__ import annotations

from typing import Any

import pytest
from bson import ObjectId

from billing import AsyncBilling, Billing
from tests.support.billing_data import OCT, expected_total, seed_conversations
from tests.support.invariants import check_totals_and_links
from tests.support.racing import as_tasks, in_threads

pytestmark = pytest.mark.integration
RACERS = 16


CAPS = pytest.mark.parametrize("cap", [None, 0], ids=["by-server", "no-cap"])


@CAPS
@pytest.mark.parametrize("chunk", [1000, 7])
def test_threads_racing_on_one_period_make_one_invoice(
    client: Any, db_name: str, chunk: int, cap: int | None
) -> None:
    billing = Billing(client, database=db_name, max_docs_per_transaction=chunk,
                      max_concurrent_transactions=cap)
    billing.setup()
    org = billing.orgs.create(name="A", currency="usd", per_conversation=11, per_started_minute=3)
    docs = seed_conversations(billing.database, org.id, 50)

    raced = in_threads([lambda: billing.invoices.create_for_period(org.id, *OCT)] * RACERS)

    assert raced.errors == []
    results = raced.results
    assert len(results) == RACERS and len({r.id for r in results}) == 1
    assert billing.database.invoices.count_documents({"org_id": ObjectId(org.id)}) == 1
    assert results[0].total == expected_total(docs, 11, 3) and results[0].number == 1
    assert billing.database.conversations.count_documents({"line_item_id": None}) == 0
    check_totals_and_links(billing.database)


@CAPS
async def test_asyncio_tasks_racing_on_one_period_make_one_invoice(
    async_client: Any, client: Any, db_name: str, cap: int | None
) -> None:
    abilling = AsyncBilling(async_client, database=db_name, transaction_retry_seconds=60,
                            max_concurrent_transactions=cap)
    await abilling.setup()
    org = await abilling.orgs.create(name="A", currency="usd", per_conversation=11,
                                     per_started_minute=3)
    sync_view = Billing(client, database=db_name)
    docs = seed_conversations(sync_view.database, org.id, 50)

    raced = await as_tasks([lambda: abilling.invoices.create_for_period(org.id, *OCT)] * RACERS)

    assert raced.errors == []
    results = raced.results
    assert len(results) == RACERS and len({r.id for r in results}) == 1
    assert sync_view.database.invoices.count_documents({"org_id": ObjectId(org.id)}) == 1
    assert results[0].total == expected_total(docs, 11, 3)
    check_totals_and_links(sync_view.database)
