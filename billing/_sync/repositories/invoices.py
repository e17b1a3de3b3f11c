# Generated from billing/_async by tools/synchro.py: do not edit.
"""Invoices, read with their line items; an org's billing snapshot for a period."""

from __future__ import annotations

from bson import ObjectId

from billing import plans
from billing._sync.unit_of_work import Transaction
from billing.adapters import documents, queries, schema
from billing.domain.models import Invoice
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
    without the org. With `bound`, the whole period's usage too (as `usage`) where it costs no
    command of its own.

    Where joined reads are cheap (mongod) this is one aggregate; otherwise (SecantusDB reads
    the whole foreign collection for a `$lookup` with a pipeline) three, each on its index,
    the chunk's on a stretch of it."""
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
    """The next chunk from where the draft's run stopped, then the malformed conversations
    up to the chunk's end (the whole period's on the last chunk), into `snap`. With `bound`
    and more chunks to follow, that second read also sums the whole period's usage (as
    `usage`), so the overflow check costs no command of its own."""
    draft = snap["invoice"][0] if snap["invoice"] else None
    resume = documents.invoice(draft).resume_after if draft is not None else None
    window = snap["window"] = queries.Window.of(period, resume)
    snap["chunk"] = txn.aggregate(schema.CONVERSATIONS, queries.chunk_read(
        org_id, period, window, limit=limit))
    span = snap["malformed_range"] = window.malformed_range(period, snap["chunk"], limit)
    if bound and window.more_after(period, snap["chunk"], limit):
        snap["usage"] = txn.aggregate(schema.CONVERSATIONS, queries.usage_and_malformed(
            org_id, period, *span))
        snap["malformed"] = [u for u in snap["usage"] if u["n"]]
    else:
        snap["malformed"] = txn.aggregate(schema.CONVERSATIONS, queries.malformed_read(
            org_id, period, *span))


def read_period_usage(txn: Transaction, snap: Doc, org_id: ObjectId,
                            period: Period) -> Doc | None:
    """The period's well-formed unbilled conversations counted (`n`) with their started
    minutes: from the snapshot when it summed them (`usage`), else one aggregate."""
    if "usage" in snap:
        usage = snap["usage"]
        return {"n": usage[0]["used"], "minutes": usage[0]["minutes"]} if usage else None
    return txn.aggregate_one(schema.CONVERSATIONS, queries.period_usage(org_id, period))
