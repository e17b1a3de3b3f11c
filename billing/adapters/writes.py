"""Writes as data: what a transaction will write, derived from old and new state.

Each update or delete says how many documents it must match; the unit of work checks the counts
and retries the whole transaction when what it read has changed since (optimistic concurrency).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from bson import ObjectId

from billing.adapters import documents, schema
from billing.domain.models import Invoice

Doc = dict[str, Any]


@dataclass(frozen=True)
class Write:
    collection: str
    op: Literal["insert", "update_one", "update_many", "delete_one"]
    filter: Doc
    doc: Doc  # the document to insert, or the update
    expect: int = 1  # documents an update or delete must match


def insert(collection: str, doc: Doc) -> Write:
    return Write(collection, "insert", {}, doc)


def invoice_changes(old: Invoice | None, new: Invoice) -> list[Write]:
    """Writes that turn `old` into `new`: the invoice guarded by its version, and its line items."""
    out: list[Write] = []
    new = new.model_copy(update={"version": (old.version + 1) if old else 0})
    doc = documents.invoice_doc(new)
    if old is None:
        out.append(insert(schema.INVOICES, doc))
    else:
        doc.pop("_id")
        out.append(Write(
            schema.INVOICES, "update_one",
            {"_id": ObjectId(old.id), "org_id": ObjectId(old.org_id), "version": old.version},
            {"$set": doc},
        ))
    before = {li.id: li for li in (old.line_items if old else ())}
    after = {li.id: li for li in new.line_items}
    org = ObjectId(new.org_id)
    for item_id, item in after.items():
        if item_id not in before:
            out.append(insert(schema.LINE_ITEMS, documents.line_item_doc(item)))
        elif item != before[item_id]:
            fields = documents.line_item_doc(item)
            fields.pop("_id")
            out.append(Write(schema.LINE_ITEMS, "update_one",
                             {"_id": ObjectId(item_id), "org_id": org}, {"$set": fields}))
    for item_id in before.keys() - after.keys():
        gone = {"_id": ObjectId(item_id), "org_id": org}
        out.append(Write(schema.LINE_ITEMS, "delete_one", gone, {}))
    return out


class StaleRead(Exception):
    """A guarded write matched fewer documents than it must, or hit a unique index: what the
    transaction read has changed. The unit of work rolls back and runs the work again."""


DUPLICATE_KEY = 11000


def check_counts(writes: list[Write], *, matched: int, deleted: int) -> None:
    want_matched = sum(w.expect for w in writes if w.op.startswith("update"))
    want_deleted = sum(w.expect for w in writes if w.op == "delete_one")
    if (matched, deleted) != (want_matched, want_deleted):
        raise StaleRead(f"matched {matched}/{want_matched}, deleted {deleted}/{want_deleted}")


def client_models(writes: list[Write], database: str) -> list[Any]:
    """The writes as models for one `client.bulk_write` across collections."""
    from pymongo.operations import DeleteOne, InsertOne, UpdateMany, UpdateOne

    out: list[Any] = []
    for w in writes:
        ns = f"{database}.{w.collection}"
        if w.op == "insert":
            out.append(InsertOne(namespace=ns, document=w.doc))
        elif w.op == "update_one":
            out.append(UpdateOne(namespace=ns, filter=w.filter, update=w.doc))
        elif w.op == "update_many":
            out.append(UpdateMany(namespace=ns, filter=w.filter, update=w.doc))
        else:
            out.append(DeleteOne(namespace=ns, filter=w.filter))
    return out


def collection_models(writes: list[Write]) -> dict[str, list[Any]]:
    """The writes grouped per collection, for servers without `bulkWrite` (MongoDB < 8.0)."""
    from pymongo.operations import DeleteOne, InsertOne, UpdateMany, UpdateOne

    out: dict[str, list[Any]] = {}
    for w in writes:
        model: Any
        if w.op == "insert":
            model = InsertOne(w.doc)
        elif w.op == "update_one":
            model = UpdateOne(w.filter, w.doc)
        elif w.op == "update_many":
            model = UpdateMany(w.filter, w.doc)
        else:
            model = DeleteOne(w.filter)
        out.setdefault(w.collection, []).append(model)
    return out
