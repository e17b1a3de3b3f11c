"""The engine's floor for one invoice: only the writes, with no reads and no pricing.

The writes an invoice of N conversations needs (the invoice, its two line items, N conversations
marked by one range update, as billing marks them) sent as one client-level `bulkWrite` in one
transaction: two commands, bulkWrite and commit, on conversations with billing's indexes
(`setup`); with `cuts`, in the transactions of a bounded run of billing, one per stretch of end
times. Billing cannot be faster than this on the same engine; what it adds on top is its reads
(org, invoice, next chunk, malformed ones) and its pricing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import InsertOne, MongoClient, UpdateMany, UpdateOne
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


def write_invoice(client: MongoClient[Doc], database: str, org_id: ObjectId, period: Period,
                  cuts: list[datetime] | None = None) -> int:
    """Writes one invoice's documents and marks the org's unbilled conversations of the period;
    returns how many were marked. With `cuts` (end times splitting the period), in one
    transaction per stretch between them, as a bounded run of billing takes them: the first
    inserts the invoice and its line items, each later one updates them; no reads either way."""
    invoice_id, items = ObjectId(), [ObjectId(), ObjectId()]
    now = datetime.now(UTC)
    ns = f"{database}."
    edges = [period.start, *(cuts or []), period.end]
    marked = 0
    for i, (start, end) in enumerate(zip(edges, edges[1:], strict=False)):
        head: list[Any] = [
            InsertOne({"_id": invoice_id, "org_id": org_id, "period_start": period.start,
                       "period_end": period.end, "status": "open", "total": 0,
                       "created_at": now}, namespace=ns + "invoices"),
            *(InsertOne({"_id": item, "org_id": org_id, "invoice_id": invoice_id, "quantity": 0,
                         "amount": 0}, namespace=ns + "line_items") for item in items),
        ] if i == 0 else [
            UpdateOne({"_id": invoice_id, "org_id": org_id}, {"$inc": {"version": 1}},
                      namespace=ns + "invoices"),
            *(UpdateOne({"_id": item, "org_id": org_id}, {"$inc": {"quantity": 1}},
                        namespace=ns + "line_items") for item in items),
        ]
        marked += _write(client, [*head, UpdateMany(
            {"org_id": org_id, "line_item_id": None, "ended_at": {"$gte": start, "$lt": end}},
            {"$set": {"line_item_id": items[0]}}, namespace=ns + "conversations")],
            updated_before=0 if i == 0 else len(head))
    return marked


def cuts_every(docs: list[Doc], limit: int) -> list[datetime]:
    """End times that split `docs` into stretches of about `limit` (exactly, where end times
    do not repeat across a cut)."""
    ends = sorted(d["ended_at"] for d in docs)
    return sorted({ends[i] for i in range(limit, len(ends), limit)})


def _write(client: MongoClient[Doc], models: list[Any], *, updated_before: int) -> int:
    """One bulkWrite in one transaction; how many conversations it marked (the last model)."""
    def work(session: ClientSession) -> int:
        result = client.bulk_write(models, session=session)
        return int(result.modified_count) - updated_before

    # No read concern: the bulkWrite opens the transaction, and SecantusDB refuses a
    # `readConcern` field on bulkWrite (billing's transactions open with a read).
    with client.start_session(causal_consistency=False) as session:
        marked: int = session.with_transaction(work, write_concern=WriteConcern("majority"))
    return marked


def insert_batch(client: MongoClient[Doc], database: str, docs: list[Doc]) -> None:
    """The engine's floor for recording a batch: the documents `record_many` would write,
    inserted as one `insert_many` in one transaction (two commands, insert and commit), with
    no reads: what `record_many` adds on top is its org and external_id lookups."""
    collection = client[database][schema.CONVERSATIONS]

    def work(session: ClientSession) -> None:
        collection.insert_many(docs, session=session)

    with client.start_session(causal_consistency=False) as session:
        session.with_transaction(work, write_concern=WriteConcern("majority"))
