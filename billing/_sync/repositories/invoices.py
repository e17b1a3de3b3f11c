# Generated from billing/_async by tools/synchro.py: do not edit.
"""Invoices, read with their line items."""

from __future__ import annotations

from bson import ObjectId

from billing import plans
from billing._sync.unit_of_work import Transaction
from billing.adapters import queries, schema
from billing.domain.models import Invoice


def read_invoice(txn: Transaction, org_id: ObjectId, invoice_id: ObjectId) -> Invoice:
    """The org's invoice with its line items, in one command; InvoiceNotFound otherwise."""
    doc = txn.aggregate_one(schema.INVOICES, [
        {"$match": {"_id": invoice_id, "org_id": org_id}}, queries.with_items(org_id)])
    return plans.require_invoice(doc, org_id, invoice_id)
