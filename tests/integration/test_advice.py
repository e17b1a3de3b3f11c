"""Errors and reconciliation findings advise only what can be done: each test follows or
tries the advice it is given (sync and async, SecantusDB)."""
from __future__ import annotations

import pytest

from billing import InvalidTransition, InvoiceNotCreditable, InvoiceNotEditable
from billing.reconcile_findings import Check
from tests.support.billing_data import OCT, seed_conversations
from tests.support.drivers import Driver

pytestmark = pytest.mark.integration


def test_a_paid_invoice_is_not_told_to_void(d: Driver) -> None:
    """line_items.add on a paid invoice advises "voiding it writes its conversations off", but
    a paid invoice cannot be voided."""
    org = d("orgs.create", name="Acme", currency="usd", per_conversation=50,
            per_started_minute=10)
    seed_conversations(d.db, org.id, 4)
    inv = d("invoices.create_for_period", org.id, *OCT)
    d("payment_methods.attach", org.id, "pm_card_visa", request_id="r-1", make_default=True)
    d("invoices.pay", org.id, inv.id)
    assert d("invoices.get", org.id, inv.id).status.value == "paid"
    with pytest.raises(InvalidTransition):
        d("invoices.void", org.id, inv.id)  # what the advice suggests cannot be done
    with pytest.raises(InvoiceNotEditable) as caught:
        d("line_items.add", org.id, inv.id, description="fee", quantity=1, unit_amount=100)
    assert "void" not in caught.value.message, caught.value.message


def test_a_void_invoices_usage_item_is_no_finding_nor_told_to_credit(d: Driver) -> None:
    """README: "Line items of void invoices are not findings: voiding writes their conversations
    off by design." A conversation of a void invoice deleted by the host: usage_quantity reports
    it forever (the report is never clean), advising a credit note, which a void invoice
    refuses."""
    org = d("orgs.create", name="Acme", currency="usd", per_conversation=50,
            per_started_minute=10)
    docs = seed_conversations(d.db, org.id, 3)
    inv = d("invoices.create_for_period", org.id, *OCT)
    d("invoices.void", org.id, inv.id)
    d.db.conversations.delete_one({"_id": docs[0]["_id"]})

    report = d("reconciliation.run", apply=True)
    usage = [f for f in report.findings if f.check is Check.USAGE_QUANTITY]
    with pytest.raises(InvoiceNotCreditable):
        d("credit_notes.create", org.id, inv.id, amount=50, reason="order_change",
          request_id="r-9", refund=False)
    assert usage == [], [(f.summary, f.action) for f in usage]


def test_a_drafts_usage_mismatch_is_not_told_to_credit(d: Driver) -> None:
    """The same finding on a draft (kept open with finalize=False) advises a credit note, which
    a draft refuses (InvoiceNotCreditable: "edit a draft's line items instead"), and whose usage
    items cannot be removed either."""
    org = d("orgs.create", name="Acme", currency="usd", per_conversation=50,
            per_started_minute=10)
    docs = seed_conversations(d.db, org.id, 3)
    inv = d("invoices.create_for_period", org.id, *OCT, finalize=False)
    d.db.conversations.delete_one({"_id": docs[0]["_id"]})

    report = d("reconciliation.run")
    usage = [f for f in report.findings if f.check is Check.USAGE_QUANTITY]
    assert len(usage) == 1
    with pytest.raises(InvoiceNotCreditable):
        d("credit_notes.create", org.id, inv.id, amount=50, reason="order_change",
          request_id="r-9", refund=False)
    assert "credit" not in usage[0].action, usage[0].action
