"""The baseline: the seeds' flow, written the obvious way with plain pymongo.

In one transaction (`with_transaction`, the same snapshot read and majority commit as billing):
read the org's unbilled conversations of the period, insert the invoice, insert one line item,
update the invoice total, then mark each conversation with its own `update_one`. N + 5 commands
for N conversations, and N documents in one transaction whatever N is. It is given the org's
prices (the seeds had them at hand), which saves it the read of the org: one command fewer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import MongoClient
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from bench.seed import MINUTE_MS
from billing.domain.periods import Period

Doc = dict[str, Any]


def setup(db: Database[Doc]) -> None:
    """The index its read needs (the same keys as billing's)."""
    db.conversations.create_index([("org_id", 1), ("line_item_id", 1), ("ended_at", 1)])


def create_invoice(client: MongoClient[Doc], database: str, org_id: ObjectId, period: Period,
                   *, per_conversation: int, per_started_minute: int) -> int:
    """Invoice the org's unbilled conversations of the period; returns the invoice total."""
    db = client[database]

    def work(session: ClientSession) -> int:
        # One batch for the whole result, so the read is one command as in the seeds.
        unbilled = db.conversations.find(
            {"org_id": org_id, "line_item_id": None,
             "ended_at": {"$gte": period.start, "$lt": period.end}},
            {"started_at": 1, "ended_at": 1}, session=session, batch_size=1_000_000,
        ).to_list()
        ms = [(c["ended_at"] - c["started_at"]) // timedelta(milliseconds=1) for c in unbilled]
        minutes = sum(-(-m // MINUTE_MS) for m in ms)  # started minutes: rounded up
        total: int = per_conversation * len(unbilled) + per_started_minute * minutes
        invoice_id = db.invoices.insert_one(
            {"org_id": org_id, "period_start": period.start, "period_end": period.end,
             "status": "open", "total": 0, "created_at": datetime.now(UTC)}, session=session,
        ).inserted_id
        item_id = db.line_items.insert_one(
            {"org_id": org_id, "invoice_id": invoice_id, "description": "Conversations",
             "quantity": len(unbilled), "amount": total}, session=session,
        ).inserted_id
        db.invoices.update_one({"_id": invoice_id}, {"$set": {"total": total}}, session=session)
        for conversation in unbilled:
            db.conversations.update_one(
                {"_id": conversation["_id"], "line_item_id": None},
                {"$set": {"line_item_id": item_id}}, session=session,
            )
        return total

    with client.start_session() as session:
        total: int = session.with_transaction(
            work, read_concern=ReadConcern("snapshot"), write_concern=WriteConcern("majority"))
    return total
