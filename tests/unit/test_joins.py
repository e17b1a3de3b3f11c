"""The joins billing sends on every engine stay on an index of the collection they join.

SecantusDB answers a `$lookup` from the foreign collection's index only when its `foreignField`
leads one; any other reads the whole foreign collection for each document joined, so reading
one org's invoice would cost more with every invoice in the database, and an invoice run over
many orgs would grow with the square of their number. The billing snapshot's conversation
joins (`queries.billing_snapshot`) are sent only where joined reads are cheap (mongod).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from bson import ObjectId

from billing.adapters import queries, schema
from billing.domain.periods import Period
from tests.support.plans import leading_fields, lookups

ORG = ObjectId()
PERIOD = Period(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))


PIPELINES = {
    "an org's billing snapshot head": queries.snapshot_head(ORG, PERIOD, supplement=0),
    "an invoice with its line items": [{"$match": {"_id": ObjectId(), "org_id": ORG}},
                                       queries.with_items(ORG)],
}


@pytest.mark.parametrize("name", PIPELINES)
def test_every_join_is_on_a_field_that_leads_an_index_of_the_joined_collection(name: str
                                                                                 ) -> None:
    joins = lookups(PIPELINES[name])
    assert joins, f"{name}: no join to check"
    for join in joins:
        assert join.get("foreignField") in leading_fields(join["from"]), \
            f"{name}: the join on {join['from']} reads the whole collection on SecantusDB"


@pytest.mark.parametrize("name", PIPELINES)
def test_every_join_stays_in_the_org(name: str) -> None:
    for join in lookups(PIPELINES[name]):
        first = join["pipeline"][0]["$match"]
        assert first.get("org_id") == ORG, f"{name}: {join['from']} read without the org's id"


def test_the_snapshot_conversation_joins_are_the_only_others() -> None:
    # If another join without an index appears, it must be kept off SecantusDB as these are.
    snapshot = queries.billing_snapshot(ORG, PERIOD, supplement=0, limit=10)
    unindexed = [j["from"] for j in lookups(snapshot)
                 if j.get("foreignField") not in leading_fields(j["from"])]
    assert unindexed == [schema.CONVERSATIONS, schema.CONVERSATIONS]
