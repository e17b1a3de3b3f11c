"""Credit notes of an org's invoices, with their refunds."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing._async.unit_of_work import AsyncDirect, AsyncTransaction
from billing.adapters import documents, schema
from billing.domain.models import CreditNote

Doc = dict[str, Any]


async def credit_note_of_request(txn: AsyncTransaction, org_id: ObjectId, request_id: str
                                 ) -> CreditNote | None:
    """The org's credit note made by this request id, or None."""
    doc = await txn.find_one(schema.CREDIT_NOTES, {"org_id": org_id, "request_id": request_id})
    return None if doc is None else documents.credit_note(doc)


async def credit_note_in(txn: AsyncTransaction, org_id: ObjectId, credit_note_id: ObjectId
                         ) -> CreditNote | None:
    """The org's credit note, or None."""
    doc = await txn.find_one(schema.CREDIT_NOTES, {"_id": credit_note_id, "org_id": org_id})
    return None if doc is None else documents.credit_note(doc)


async def credit_notes_of_invoice(txn: AsyncTransaction, org_id: ObjectId,
                                  invoice_id: ObjectId) -> list[CreditNote]:
    """Every credit note of the invoice, oldest first."""
    return [documents.credit_note(d) for d in await txn.find(
        schema.CREDIT_NOTES, {"org_id": org_id, "invoice_id": invoice_id},
        hint="by_invoice")]


async def credit_note_of_refund(txn: AsyncTransaction, org_id: ObjectId, refund_id: str
                                ) -> CreditNote | None:
    """The org's credit note whose refund Stripe numbered `refund_id`, or None."""
    doc = await txn.find_one(schema.CREDIT_NOTES, {"org_id": org_id,
                                                   "refund.stripe_id": refund_id})
    return None if doc is None else documents.credit_note(doc)


async def credit_notes_listed(direct: AsyncDirect, org_id: ObjectId,
                              invoice_id: ObjectId | None = None) -> list[CreditNote]:
    """The org's credit notes (of one invoice, when given), by number."""
    where: Doc = {"org_id": org_id}
    if invoice_id is not None:
        where["invoice_id"] = invoice_id
    return [documents.credit_note(d) for d in await direct.find(
        schema.CREDIT_NOTES, where, sort=(("number", 1),))]


async def credit_notes_of_org(direct: AsyncDirect, org_id: ObjectId) -> list[CreditNote]:
    """Every credit note of the org (reconciliation: few per org)."""
    return [documents.credit_note(d) for d in await direct.find(
        schema.CREDIT_NOTES, {"org_id": org_id}, sort=())]


async def credited_invoices(direct: AsyncDirect, org_id: ObjectId, invoice_ids: list[ObjectId]
                            ) -> list[Doc]:
    """The org's invoices of these credit notes: `total`, `amount_credited`."""
    return await direct.find(
        schema.INVOICES, {"org_id": org_id, "_id": {"$in": invoice_ids}}, sort=(),
        hint="_id_", projection={"total": 1, "amount_credited": 1})


async def credited_invoice_in(txn: AsyncTransaction, org_id: ObjectId, invoice_id: ObjectId
                              ) -> Doc | None:
    """The org's invoice, in a transaction: `total`, `amount_credited`."""
    return await txn.find_one(schema.INVOICES, {"_id": invoice_id, "org_id": org_id})
