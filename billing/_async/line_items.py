"""Manual line items on draft invoices; totals move with them in the same transaction."""

from __future__ import annotations

from typing import Any

from billing import faults
from billing._async.repositories.invoices import read_invoice
from billing._async.service_context import AsyncContext
from billing._async.unit_of_work import AsyncTransaction
from billing.adapters import ids
from billing.domain.inputs import NewLineItem
from billing.domain.models import Invoice, LineItem
from billing.plans import invoices as plans


class AsyncLineItems:
    def __init__(self, ctx: AsyncContext) -> None:
        self._ctx = ctx

    async def add(
        self, org_id: Any, invoice_id: Any, *, description: Any, quantity: Any,
        unit_amount: Any, currency: Any = None,
    ) -> LineItem:
        """Add a manual line item to a draft; the invoice's totals include it on commit.
        Raises InvoiceNotEditable (not a draft), CurrencyMismatch, InvalidMoney."""
        oid = ids.object_id(org_id, name="org_id")
        iid = ids.object_id(invoice_id, name="invoice_id")
        item = NewLineItem.parse(description=description, quantity=quantity,
                                 unit_amount=unit_amount, currency=currency)

        async def work(txn: AsyncTransaction) -> LineItem:
            plan = plans.add_line_item(await read_invoice(txn, oid, iid), item)
            await txn.write(plan.writes)
            faults.hit("line_items.after_write")
            return plan.result

        return await self._ctx.uow.run(work)

    async def remove(self, org_id: Any, invoice_id: Any, line_item_id: Any) -> Invoice:
        """Remove a manual line item from a draft; returns the invoice with its new totals."""
        oid = ids.object_id(org_id, name="org_id")
        iid = ids.object_id(invoice_id, name="invoice_id")
        lid = ids.object_id(line_item_id, name="line_item_id")

        async def work(txn: AsyncTransaction) -> Invoice:
            plan = plans.remove_line_item(await read_invoice(txn, oid, iid), lid)
            await txn.write(plan.writes)
            faults.hit("line_items.after_write")
            return plan.result

        return await self._ctx.uow.run(work)
