"""README (credit notes): "the credited total never exceeds the total"; (reconciliation)
`wrong_totals` "recomputed from the line items" on open invoices. Tried together: an open
invoice credited 220 of 230 whose minutes line item (30) went missing. Recomputing its total
to 200 would leave 220 credited on a total of 200 (amount due -20)."""

from __future__ import annotations

import pytest
from bson import ObjectId

from billing.domain.models import LineItemKind
from tests.integration.test_credit_notes import open_invoice
from tests.support.drivers import Driver

pytestmark = pytest.mark.integration


def test_a_retotal_never_leaves_more_credited_than_the_total(d: Driver) -> None:
    org, inv = open_invoice(d)
    d("credit_notes.create", org.id, inv.id, amount=220, reason="order_change",
      request_id="cn-1")
    minutes = inv.item(LineItemKind.MINUTES)
    d.db.line_items.delete_one({"_id": ObjectId(minutes.id)})

    report = d("reconciliation.run", apply=True, org_id=org.id)

    doc = d.db.invoices.find_one({"_id": ObjectId(inv.id)})
    assert doc is not None
    assert doc.get("amount_credited", 0) <= doc["total"], (doc["total"], doc["amount_credited"])
    (finding,) = [f for f in report.findings if f.check.value == "wrong_totals"]
    assert not finding.repairable and "a person must decide" in finding.action
    assert (doc["total"], doc["status"]) == (inv.total, "open")  # left as it was
