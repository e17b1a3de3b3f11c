# Generated from billing/_async by tools/synchro.py: do not edit.
"""Conversations of an org: by id, by the host's external id; and as reconciliation reads
them: links per line item, late and malformed ones."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bson import ObjectId

from billing._sync.unit_of_work import Direct, Transaction
from billing.adapters import queries, schema
from billing.domain.periods import Period
from billing.reconcile_findings import SAMPLE_IDS

Doc = dict[str, Any]


def conversation_of_external_id(txn: Transaction, org_id: ObjectId,
                                      external_id: str) -> Doc | None:
    return txn.find_one(schema.CONVERSATIONS, {"org_id": org_id,
                                                     "external_id": external_id})


# External ids per `$in` when a batch looks up what it already recorded. SecantusDB 0.7.0b3
# matches an `$in` in time that grows with keys times matches: a repeated batch of 1,000 took
# 1.06 s as one query and 0.18 s as ten of 100 (mongod's cost is linear either way).
LOOKUP_KEYS = 100


def conversations_of_external_ids(txn: Transaction, org_id: ObjectId,
                                        external_ids: list[str]) -> list[Doc]:
    """The org's conversations recorded with any of `external_ids` (none read for none)."""
    found: list[Doc] = []
    for i in range(0, len(external_ids), LOOKUP_KEYS):
        part = external_ids[i:i + LOOKUP_KEYS]
        found += txn.find(schema.CONVERSATIONS, {
            "org_id": org_id, "external_id": {"$in": part}}, limit=len(part))
    return found


def conversation_doc_now(direct: Direct, org_id: ObjectId,
                               conversation_id: ObjectId) -> Doc | None:
    return direct.find_one(schema.CONVERSATIONS, {"_id": conversation_id,
                                                        "org_id": org_id})


def links_per_line_item(direct: Direct, org_id: ObjectId) -> dict[ObjectId, int]:
    """The org's billed conversations counted per line item."""
    groups = direct.aggregate(schema.CONVERSATIONS, [
        {"$match": {"org_id": org_id, "line_item_id": queries.ANY_OBJECT_ID}},
        {"$group": {"_id": "$line_item_id", "n": {"$sum": 1}}}])
    return {g["_id"]: g["n"] for g in groups if isinstance(g["_id"], ObjectId)}


def malformed_linked_to(direct: Direct, org_id: ObjectId, line_item_id: ObjectId
                              ) -> int:
    """How many of the org's conversations on the line item are malformed."""
    rows = direct.aggregate(schema.CONVERSATIONS, [
        {"$match": {"org_id": org_id, "line_item_id": line_item_id}},
        {"$match": {"$nor": [queries.WELL_FORMED]}}, {"$group": {"_id": None, "n": {
            "$sum": 1}}}])
    return int(rows[0]["n"]) if rows else 0


def unbilled_per_month(direct: Direct, org_id: ObjectId, boundary: datetime
                             ) -> list[Doc]:
    """The org's well-formed unbilled conversations that ended before `boundary`, per month
    (`_id` {y, m}, `n`, a sample of `ids`), oldest first."""
    return direct.aggregate(schema.CONVERSATIONS, [
        {"$match": {"org_id": org_id, "line_item_id": None, "ended_at": {"$lt": boundary}}},
        {"$match": queries.WELL_FORMED},  # a stage of its own: see queries.billing_snapshot
        {"$group": {"_id": {"y": {"$year": "$ended_at"}, "m": {"$month": "$ended_at"}},
                    # $firstN (MongoDB 5.2+): a sample without holding a month's ids.
                    "n": {"$sum": 1}, "ids": {"$firstN": {"input": "$_id",
                                                         "n": SAMPLE_IDS}}}},
        {"$sort": {"_id.y": 1, "_id.m": 1}}])


def malformed_of_org(direct: Direct, org_id: ObjectId, boundary: datetime
                           ) -> list[Doc]:
    """The org's conversations billing cannot price ("times") and those that break the
    contract's types ("contract"), each group with `n` and a sample of `ids`.

    One pass over the org's conversations on the index's `org_id` prefix: "any type but
    null or an ObjectId" has no index bounds (see queries.BROKEN_CONTRACT)."""
    times = {"line_item_id": None, "$or": [
        {"$expr": {"$ne": [{"$type": "$ended_at"}, "date"]}},
        {"ended_at": {"$lt": boundary}, "$nor": [queries.WELL_FORMED]}]}
    return direct.aggregate(schema.CONVERSATIONS, [
        {"$match": {"org_id": org_id}},
        {"$match": {"$or": [{"$expr": queries.BROKEN_CONTRACT}, times]}},
        {"$group": {"_id": {"$cond": [queries.BROKEN_CONTRACT, "contract", "times"]},
                    "n": {"$sum": 1}, "ids": {"$push": "$_id"}}},
        {"$project": {"n": 1, "ids": {"$slice": ["$ids", SAMPLE_IDS]}}},
        {"$sort": {"_id": -1}}])


def orgless_conversations(direct: Direct, only: ObjectId | None
                                ) -> list[tuple[str, Doc | None]]:
    """Conversations whose `org_id` names no org (a string, a number, null, missing), per
    kind: `n`, a sample of `ids` and of the `orgs` values. Each query is a type-bracketed
    range on the index; with `only`, the one org's id written as a string."""
    out: list[tuple[str, Doc | None]] = []
    kinds = queries.ORGLESS if only is None else (("a string", {"org_id": str(only)}),)
    for kind, match in kinds:
        rows = direct.aggregate(schema.CONVERSATIONS, [
            {"$match": match},
            {"$group": {"_id": None, "n": {"$sum": 1}, "ids": {"$push": "$_id"},
                        "orgs": {"$addToSet": "$org_id"}}},
            {"$project": {"n": 1, "ids": {"$slice": ["$ids", SAMPLE_IDS]},
                          "orgs": {"$slice": ["$orgs", 5]}}}])
        out.append((kind, rows[0] if rows else None))
    return out


def link_span(txn: Transaction, org_id: ObjectId, line_item_id: ObjectId
                    ) -> Doc | None:
    """How many of the org's conversations are on the line item (`n`), and the `first` and
    `last` of their end times; None when there are none."""
    return txn.aggregate_one(schema.CONVERSATIONS, [
        {"$match": {"org_id": org_id, "line_item_id": line_item_id}},
        {"$group": {"_id": None, "n": {"$sum": 1}, "first": {"$min": "$ended_at"},
                    "last": {"$max": "$ended_at"}}}])


def count_linked_to(txn: Transaction, org_id: ObjectId, line_item_id: ObjectId
                          ) -> int:
    return txn.count(schema.CONVERSATIONS, {"org_id": org_id,
                                                  "line_item_id": line_item_id})


def count_late_in_period(direct: Direct, org_id: ObjectId, period: Period) -> int:
    """How many of the org's well-formed conversations that ended in the period are unbilled
    (what `invoices.bill_late_usage` would bill)."""
    counted = direct.aggregate(schema.CONVERSATIONS, [
        {"$match": queries.unbilled(org_id, period)},
        {"$match": queries.WELL_FORMED},  # a stage of its own: see queries.billing_snapshot
        {"$group": {"_id": None, "n": {"$sum": 1}}}])
    return int(counted[0]["n"]) if counted else 0
