"""The money properties of credit notes, on the pure plans (hypothesis): whatever sequence of
credits, refunds and payments, credited <= total, amount due = total - credited - paid, and
what is refunded never exceeds what was paid."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from bson import ObjectId
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.adapters import documents, schema
from billing.domain.models import (
    CreditNote,
    Invoice,
    InvoiceStatus,
    LineItemKind,
    Payment,
    PaymentStatus,
    RefundStatus,
)
from billing.domain.payments import StripeRefund
from billing.errors import (
    CreditExceedsTotal,
    InvalidInput,
    InvalidMoney,
    InvoiceNotCreditable,
    RefundExceedsPaid,
)
from billing.plans import credit_notes as plans
from tests.unit import factories as f

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def credit(amount: int, *, request_id: str = "r", refund: bool | None = None,
           lines: Any = None) -> plans.CreditRequest:
    return plans.request(request_id=request_id, reason="duplicate",
                         amount=None if lines is not None else amount, lines=lines,
                         memo=None, refund=refund)


def applied(invoice: Invoice, writes: list[Any]) -> Invoice:
    """The invoice as the plan's writes leave it."""
    for w in writes:
        if w.collection == schema.INVOICES:
            doc = {**w.doc["$set"], "_id": ObjectId(invoice.id)}
            return documents.invoice(doc, [documents.line_item_doc(li)
                                           for li in invoice.line_items])
    return invoice


class World:
    def __init__(self, total_items: list[int]) -> None:
        self.org = f.org()
        inv = f.invoice(self.org, status=InvoiceStatus.OPEN, complete=True)
        items = tuple(f.line_item(inv, kind=LineItemKind.MANUAL, unit_amount=a)
                      for a in total_items)
        self.invoice = f.invoice(self.org, status=InvoiceStatus.OPEN, complete=True,
                                 items=items, id=inv.id)
        self.notes: list[CreditNote] = []
        self.payments: list[Payment] = []

    def create(self, req: plans.CreditRequest) -> CreditNote:
        plan = plans.create(self.org, self.invoice, None, self.notes, self.payments, req,
                            now=NOW, lease_seconds=60, token="t", box=None)
        self.org = self.org.model_copy(update={"credit_note_seq": plan.result.number})
        self.invoice = applied(self.invoice, plan.writes).model_copy(
            update={"version": self.invoice.version + 1})
        note = plan.result
        if note.refund is not None:  # Stripe refunds it
            refund = StripeRefund(id=f"re_{len(self.notes)}", status=RefundStatus.SUCCEEDED,
                                  amount=note.refund.amount, currency="usd")
            done = plans.record_refund(note, self.invoice, refund, now=NOW)
            note = done.result
        self.notes.append(note)
        return note

    def pay(self) -> None:
        due = self.invoice.amount_due
        self.payments.append(Payment(
            id=f.oid(), org_id=self.org.id, invoice_id=self.invoice.id, attempt=1,
            status=PaymentStatus.SUCCEEDED, amount=due, currency="usd", idempotency_key="k",
            intent_id="pi_1", created_at=NOW))
        self.invoice = self.invoice.model_copy(update={"status": InvoiceStatus.PAID,
                                                       "amount_paid": due})

    def check(self) -> None:
        inv = self.invoice
        assert 0 <= inv.amount_credited <= inv.total
        assert inv.amount_credited == sum(n.amount for n in self.notes)
        if inv.status is InvoiceStatus.OPEN:
            assert inv.amount_due == inv.total - inv.amount_credited - inv.amount_paid > 0
        assert plans.refunded(self.notes) <= inv.amount_paid
        assert [n.number for n in self.notes] == list(range(1, len(self.notes) + 1))
        for li in inv.line_items:
            assert plans.credited_on(self.notes, li.id) <= li.amount


steps = st.lists(st.one_of(
    st.tuples(st.just("credit"), st.integers(1, 3000), st.sampled_from([None, False])),
    st.tuples(st.just("line"), st.integers(1, 1500), st.integers(0, 2)),
    st.tuples(st.just("pay"), st.just(0), st.just(None)),
), max_size=12)


@settings(max_examples=200, deadline=None)
@given(items=st.lists(st.integers(1, 2000), min_size=1, max_size=3), steps=steps)
def test_credits_never_exceed_the_total_and_refunds_never_exceed_payments(
        items: list[int], steps: list[tuple[str, int, Any]]) -> None:
    w = World(items)
    for n, (kind, amount, extra) in enumerate(steps):
        before = (w.invoice, len(w.notes))
        try:
            if kind == "pay":
                if w.invoice.status is InvoiceStatus.OPEN:
                    w.pay()
            elif kind == "line":
                item = w.invoice.line_items[extra % len(w.invoice.line_items)]
                w.create(credit(0, request_id=f"r{n}", lines=[(item.id, amount)]))
            else:
                w.create(credit(amount, request_id=f"r{n}", refund=extra))
        except (CreditExceedsTotal, RefundExceedsPaid):
            assert (w.invoice, len(w.notes)) == before  # refused: nothing changed
        w.check()


def test_a_refund_beyond_what_stripe_took_is_refused() -> None:
    w = World([1000])
    w.pay()
    w.payments = [w.payments[0].model_copy(update={"amount": 400})]  # paid partly elsewhere
    with pytest.raises(RefundExceedsPaid):
        w.create(credit(401))
    w.create(credit(400))
    with pytest.raises(RefundExceedsPaid):
        w.create(credit(1))
    w.create(credit(600, request_id="oob", refund=False))
    w.check()


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"amount": 0}, InvalidMoney), ({"amount": -5}, InvalidMoney),
    ({"amount": 2.5}, InvalidMoney), ({"amount": True}, InvalidMoney),
    ({}, InvalidInput), ({"amount": 1, "lines": [("a" * 24, 1)]}, InvalidInput),
    ({"lines": []}, InvalidInput), ({"lines": [("zz", 1)]}, InvalidInput),
    ({"lines": [("a" * 24, 1), ("a" * 24, 2)]}, InvalidInput),
    ({"amount": 1, "reason": "whim"}, InvalidInput),
    ({"amount": 1, "refund": "yes"}, InvalidInput),
    ({"amount": 1, "request_id": ""}, InvalidInput),
    ({"amount": 1, "memo": "x" * 501}, InvalidInput),
])
def test_bad_requests_are_typed_errors(kwargs: dict[str, Any], error: type[Exception]) -> None:
    args = {"request_id": "r", "reason": "duplicate", "amount": None, "lines": None,
            "memo": None, "refund": None, **kwargs}
    with pytest.raises(error):
        plans.request(**args)


@pytest.mark.parametrize("status", [InvoiceStatus.DRAFT, InvoiceStatus.VOID])
def test_drafts_and_void_invoices_take_no_credit(status: InvoiceStatus) -> None:
    w = World([1000])
    w.invoice = w.invoice.model_copy(update={"status": status})
    with pytest.raises(InvoiceNotCreditable):
        w.create(credit(1))
