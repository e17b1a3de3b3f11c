# Generated from billing/_async by tools/synchro.py: do not edit.
"""Invoices, read with their line items; an org's billing snapshot for a period."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from billing import plans
from billing._sync.unit_of_work import Direct, Transaction
from billing.adapters import documents, queries, schema
from billing.domain.models import Invoice, InvoiceStatus
from billing.domain.periods import Period
from billing.plans import Doc


def read_invoice(txn: Transaction, org_id: ObjectId, invoice_id: ObjectId) -> Invoice:
    """The org's invoice with its line items, in one command; InvoiceNotFound otherwise."""
    doc = txn.aggregate_one(schema.INVOICES, [
        {"$match": {"_id": invoice_id, "org_id": org_id}}, queries.with_items(org_id)])
    return plans.require_invoice(doc, org_id, invoice_id)


def read_billing_snapshot(txn: Transaction, org_id: ObjectId, period: Period, *,
                                supplement: int, limit: int, bound: bool) -> Doc | None:
    """The org with its invoice for the period (and line items), the next chunk of unbilled
    conversations and the malformed ones (as `plans.invoices.bill_chunk` reads them); None
    without the org. With `bound` and more chunks to follow, an upper bound of the whole
    period's usage too (as `bound`, see `plans.invoices.usage_bound`).

    Where joined reads are cheap (mongod) this is one aggregate; otherwise (SecantusDB reads
    the whole foreign collection for a `$lookup` with a pipeline) two, each on its index: the
    org with its invoice, then one pass over a stretch of the conversations."""
    if txn.joined_reads:
        return txn.aggregate_one(schema.ORGS, queries.billing_snapshot(
            org_id, period, supplement=supplement, limit=limit))
    snap = txn.aggregate_one(schema.ORGS, queries.snapshot_head(
        org_id, period, supplement=supplement))
    if snap is not None:
        _read_chunk(txn, snap, org_id, period, limit, bound=bound)
    return snap


def _read_chunk(txn: Transaction, snap: Doc, org_id: ObjectId, period: Period,
                      limit: int, *, bound: bool) -> None:
    """The next chunk from where the draft's run stopped and the malformed conversations up to
    the chunk's end (the whole period's on the last chunk), into `snap`, in one read; with
    `bound` and more chunks to follow, the bound of the period's usage, in the same read when
    it covers the whole period (a run's first chunk). Well-formedness is judged in Python, for
    the head of the pass only (`queries.chunk_facet`, `queries.conforms`); where that head
    cannot tell, a second read."""
    draft = snap["invoice"][0] if snap["invoice"] else None
    resume = documents.invoice(draft).resume_after if draft is not None else None
    window = snap["window"] = queries.Window.of(period, resume)
    whole = window == queries.Window.of(period, None)  # a fresh run's first chunk
    # A stretch unordered: it usually holds fewer than a head, then sorted here; one that holds
    # more is read again, in order. The first pass, over the whole period, in order.
    ordered = whole
    got = txn.aggregate_one(schema.CONVERSATIONS, queries.chunk_facet(
        org_id, period, window, limit=limit, bound=bound and whole, ordered=ordered))
    assert got is not None  # $facet returns one document
    if not ordered and len(got["head"]) >= queries.head_size(limit):
        ordered = True
        got = txn.aggregate_one(schema.CONVERSATIONS, queries.chunk_facet(
            org_id, period, window, limit=limit, bound=False))
        assert got is not None
    good, bad, complete = queries.split_head(got["head"], limit, ordered=ordered)
    chunk = good[:limit + 1]
    if len(chunk) <= limit and not complete:  # malformed ones crowd the head: read past them
        chunk = txn.aggregate(schema.CONVERSATIONS, queries.chunk_read(
            org_id, period, window, limit=limit))
    snap["chunk"] = chunk
    span = snap["malformed_range"] = window.malformed_range(period, chunk, limit)
    # The head's, and where the pass covered the whole period those before the window too.
    found = queries.joined_malformed(got.get("malformed", []), bad)
    malformed = queries.malformed_within(found, *span) if complete and found is not None \
        else None
    if malformed is None:
        malformed = txn.aggregate(schema.CONVERSATIONS, queries.malformed_read(
            org_id, period, *span))
    snap["malformed"] = malformed
    if bound and window.more_after(period, chunk, limit):
        if whole:
            snap["bound"] = queries.head_bound(good, got["bound"])
        else:  # a resumed run: the pass covered a stretch only
            snap["bound"] = txn.aggregate_one(schema.CONVERSATIONS, queries.usage_bound(
                org_id, period))


def read_period_usage(txn: Transaction, org_id: ObjectId, period: Period
                            ) -> Doc | None:
    """The period's well-formed unbilled conversations counted (`n`) with their started
    minutes, exactly."""
    return txn.aggregate_one(schema.CONVERSATIONS, queries.period_usage(org_id, period))


def invoice_ids_of_org(direct: Direct, org_id: ObjectId) -> set[Any]:
    """The org's invoice ids on the org_id index (a `$in` list of ids made SecantusDB walk the
    `_id` index once per id: callers join here instead)."""
    return {d["_id"] for d in direct.find(schema.INVOICES, {"org_id": org_id}, sort=(),
                                                projection={"_id": 1})}


def invoice_totals_of_org(direct: Direct, org_id: ObjectId) -> list[dict[str, Any]]:
    """The org's invoices: `status`, `subtotal`, `total`, `amount_paid`, `amount_credited` (a
    $lookup of their line items made SecantusDB read line items once per invoice: callers join
    here instead)."""
    return direct.find(schema.INVOICES, {"org_id": org_id}, sort=(),
                             projection={"status": 1, "subtotal": 1, "total": 1,
                                         "amount_paid": 1, "amount_credited": 1})


def incomplete_drafts_of_org(direct: Direct, org_id: ObjectId
                                   ) -> list[dict[str, Any]]:
    """The org's drafts still being billed. Their age is for the caller to check: SecantusDB
    plans a collection scan when a predicate on an unindexed field joins the indexed ones
    (mongod uses the index); drafts are few."""
    return direct.find(schema.INVOICES, {"org_id": org_id, "status": "draft",
                                               "complete": False}, sort=())


def invoices_of_period(direct: Direct, org_id: ObjectId, period: Period
                             ) -> list[dict[str, Any]]:
    """The period's invoices (`supplement`, `status`, `complete`, `keep_draft`) by supplement."""
    return direct.find(
        schema.INVOICES, {"org_id": org_id, "period_start": period.start,
                          "period_end": period.end}, sort=(("supplement", 1),),
        projection={"supplement": 1, "status": 1, "complete": 1, "keep_draft": 1})


def invoices_spanning(txn: Transaction, org_id: ObjectId, first: datetime,
                            last: datetime) -> list[Invoice]:
    """The org's invoices whose period holds end times from `first` to `last`, with their
    line items."""
    # period_start <= first as `$lt first + 1 ms` (BSON dates are milliseconds): SecantusDB
    # drops the boundary of `$lte` on a middle key of a compound index.
    docs = txn.find(schema.INVOICES, {
        "org_id": org_id, "period_start": {"$lt": first + timedelta(milliseconds=1)},
        "period_end": {"$gt": last}}, limit=100, hint="one_per_period")
    return [read_invoice(txn, org_id, d["_id"]) for d in docs]


def invoices_counting(txn: Transaction, org_id: ObjectId, conversations: int
                            ) -> list[Invoice]:
    """The org's invoices that count `conversations` conversations, with their line items
    (read on the org's index: `conversations` is no key of one)."""
    docs = txn.find(schema.INVOICES, {"org_id": org_id, "conversations": conversations},
                          limit=100, hint="one_per_period")
    return [read_invoice(txn, org_id, d["_id"]) for d in docs]


def invoice_status(direct: Direct, org_id: ObjectId, invoice_id: ObjectId
                         ) -> InvoiceStatus | None:
    """The org's invoice's status now; None without that invoice."""
    key = {"_id": invoice_id, "org_id": org_id}
    docs = direct.find(schema.INVOICES, key, sort=(), limit=1, hint=queries.id_hint(key),
                             projection={"status": 1})
    return InvoiceStatus(docs[0]["status"]) if docs else None


def invoice_status_in(txn: Transaction, org_id: ObjectId, invoice_id: Any
                            ) -> str | None:
    """The org's invoice's status in the transaction's snapshot; None without that invoice."""
    doc = txn.find_one(schema.INVOICES, {"_id": invoice_id, "org_id": org_id})
    return doc.get("status") if doc else None


def open_invoices_of_org(direct: Direct, org_id: ObjectId) -> list[Invoice]:
    return [documents.invoice(d) for d in direct.find(
        schema.INVOICES, {"org_id": org_id, "status": "open"}, sort=())]
