"""Late usage without a server: where the plan sends late conversations, and what
`invoice bill-late` and `invoice show` print and exit with."""

from __future__ import annotations

from bson import ObjectId

from billing.cli import exit_codes, invoice_bill_late, invoice_show
from billing.domain.models import InvoiceStatus, LateUsage
from billing.plans import reconciliation as plan
from tests.unit.factories import OCT, invoice, org


def test_late_usage_names_the_draft_they_would_join_and_none_for_a_new_invoice() -> None:
    oid, draft = ObjectId(), ObjectId()

    kept = plan.late_usage(oid, OCT, [{"_id": draft, "status": "draft", "complete": True,
                                       "supplement": 0}], 4)
    new = plan.late_usage(oid, OCT, [{"_id": draft, "status": "open", "complete": True,
                                      "supplement": 0}], 2)

    assert (kept.invoice_id, kept.supplement, kept.stays_draft) == (str(draft), 0, True)
    assert (new.invoice_id, new.supplement, new.conversations) == (None, 1, 2)


def usage(n: int, supplement: int = 1) -> LateUsage:
    return LateUsage(org_id=str(ObjectId()), period_start=OCT.start, period_end=OCT.end,
                     conversations=n, supplement=supplement)


def test_bill_late_dry_run_exits_1_only_when_something_is_late() -> None:
    assert invoice_bill_late.exit_code(usage(3), apply=False) == exit_codes.FINDINGS_REMAIN
    assert invoice_bill_late.exit_code(usage(0), apply=False) == exit_codes.OK
    assert invoice_bill_late.exit_code(None, apply=True) == exit_codes.OK

    text = invoice_bill_late.describe(usage(3), None, OCT, org_name="Acme")

    assert "3 late conversations in 2026-10" in text and "supplementary invoice 1" in text
    assert invoice_bill_late.DRY_RUN_NOTICE in text


def test_invoice_show_renders_money_in_major_units_and_what_is_due() -> None:
    inv = invoice(org(), status=InvoiceStatus.OPEN).model_copy(
        update={"total": 1234, "subtotal": 1234, "amount_paid": 234, "number": 7})

    text = invoice_show.render(inv, [], [], org_name="Acme")

    assert text.startswith("Invoice 000007 (open)")
    assert "12.34 USD" in text and "10.00 USD" in text and "Payment attempts: none" in text
    assert "Credit notes: none" in text
    assert inv.amount_due == 1000
    assert inv.model_copy(update={"status": InvoiceStatus.VOID}).amount_due == 0
