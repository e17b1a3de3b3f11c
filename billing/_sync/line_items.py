# Generated from billing/_async by tools/synchro.py: do not edit.
"""Manual line items on draft invoices; totals move with them in the same transaction."""

from __future__ import annotations

from typing import Any

from billing import faults
from billing._sync.repositories.invoices import read_invoice
from billing._sync.service_context import Context
from billing._sync.unit_of_work import Transaction
from billing.adapters import ids
from billing.domain.inputs import NewLineItem
from billing.domain.models import Invoice, LineItem
from billing.plans import invoices as plans


class LineItems:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def add(
        self, org_id: Any, invoice_id: Any, *, description: Any, quantity: Any,
        unit_amount: Any, currency: Any = None,
    ) -> LineItem:
        """Add a manual line item to a draft; the invoice's totals include it on commit.
        Raises InvoiceNotEditable (not a draft), CurrencyMismatch, InvalidMoney."""
        oid = ids.object_id(org_id, name="org_id")
        iid = ids.object_id(invoice_id, name="invoice_id")
        item = NewLineItem.parse(description=description, quantity=quantity,
                                 unit_amount=unit_amount, currency=currency)

        def work(txn: Transaction) -> LineItem:
            plan = plans.add_line_item(read_invoice(txn, oid, iid), item)
            txn.write(plan.writes)
            faults.hit("line_items.after_write")
            return plan.result

        return self._ctx.uow.run(work)

    def remove(self, org_id: Any, invoice_id: Any, line_item_id: Any) -> Invoice:
        """Remove a manual line item from a draft; returns the invoice with its new totals."""
        oid = ids.object_id(org_id, name="org_id")
        iid = ids.object_id(invoice_id, name="invoice_id")
        lid = ids.object_id(line_item_id, name="line_item_id")

        def work(txn: Transaction) -> Invoice:
            plan = plans.remove_line_item(read_invoice(txn, oid, iid), lid)
            txn.write(plan.writes)
            faults.hit("line_items.after_write")
            return plan.result

        return self._ctx.uow.run(work)
