"""The engine's floor for one invoice: only the writes, with no reads and no pricing.

The writes an invoice of N conversations needs (the invoice, its two line items, N conversations
marked by one range update, as billing marks them) sent as one client-level `bulkWrite` in one
transaction: two commands, bulkWrite and commit, on conversations with billing's indexes (`setup`).
Billing cannot be faster than this on the same
engine; what it adds on top is its reads (org, invoice, next chunk, malformed ones), its pricing
and, past `max_docs_per_transaction`, one transaction per chunk.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import InsertOne, MongoClient, UpdateMany
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.write_concern import WriteConcern

from billing.adapters import schema
from billing.domain.periods import Period

Doc = dict[str, Any]


def setup(db: Database[Doc]) -> None:
    """Billing's indexes on conversations: each marked conversation's index entries are
    rewritten, so a floor on fewer indexes would leave part of ours' write cost out of it."""
    conversations = next(c for c in schema.COLLECTIONS if c.name == schema.CONVERSATIONS)
    for index in conversations.indexes:
        db.conversations.create_index(index.keys, **index.options())


def write_invoice(client: MongoClient[Doc], database: str, org_id: ObjectId, period: Period
                  ) -> int:
    """Writes one invoice's documents and marks the org's unbilled conversations of the period;
    returns how many were marked."""
    invoice_id, items = ObjectId(), [ObjectId(), ObjectId()]
    now = datetime.now(UTC)
    ns = f"{database}."
    models: list[Any] = [
        InsertOne({"_id": invoice_id, "org_id": org_id, "period_start": period.start,
                   "period_end": period.end, "status": "open", "total": 0, "created_at": now},
                  namespace=ns + "invoices"),
        *(InsertOne({"_id": item, "org_id": org_id, "invoice_id": invoice_id, "quantity": 0,
                     "amount": 0}, namespace=ns + "line_items") for item in items),
        UpdateMany({"org_id": org_id, "line_item_id": None,
                    "ended_at": {"$gte": period.start, "$lt": period.end}},
                   {"$set": {"line_item_id": items[0]}}, namespace=ns + "conversations"),
    ]

    def work(session: ClientSession) -> int:
        result = client.bulk_write(models, session=session)
        return int(result.modified_count)

    # No read concern: the bulkWrite opens the transaction, and SecantusDB refuses a
    # `readConcern` field on bulkWrite (billing's transactions open with a read).
    with client.start_session(causal_consistency=False) as session:
        marked: int = session.with_transaction(work, write_concern=WriteConcern("majority"))
    return marked
