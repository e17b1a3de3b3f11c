"""Refunds in the states Stripe documents beyond succeeded: `canceled` (a pending refund
canceled, e.g. from the Dashboard) voids the credit note once and never moves again, through
the webhook and through reconciliation (its webhook lost); one Stripe still holds `pending` (a
bank debit's refund takes days) is never made twice nor reported repaired while money moves."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billing import CreditNoteStatus, InvoiceStatus, RefundStatus, WebhookOutcome
from tests.integration.test_credit_notes import (
    as_stripe_sends,
    check_credits,
    events,
    pending_refund,
    refund_event,
)
from tests.support.drivers import Driver

pytestmark = pytest.mark.integration


def test_a_canceled_pending_refund_voids_its_credit_note_once_and_never_moves(
        d: Driver) -> None:
    org, inv, note = pending_refund(d)
    d.fake.cancel_refund(note.refund.stripe_id)
    body, sig = refund_event("refund.updated", as_stripe_sends(d, note.refund.stripe_id))
    assert d("webhooks.handle", body, sig).outcome is WebhookOutcome.PROCESSED

    after = d("credit_notes.get", org.id, note.id)
    assert after.status is CreditNoteStatus.VOID and after.refund.status is RefundStatus.CANCELED
    current = d("invoices.get", org.id, inv.id)
    assert current.status is InvoiceStatus.PAID and current.amount_credited == 0
    assert events(d, org).count("refund.failed") == 1
    late, sig = refund_event("refund.updated", as_stripe_sends(
        d, note.refund.stripe_id, status="succeeded"))
    d("webhooks.handle", late, sig)  # out of order / forged: a canceled refund never moves
    assert d("credit_notes.get", org.id, note.id) == after
    check_credits(d, inv)
    d("credit_notes.create", org.id, inv.id, amount=230, reason="order_change",
      request_id="cn-2")  # what was never given back can be refunded now
    assert d("invoices.get", org.id, inv.id).amount_credited == 230
    check_credits(d, inv)


def test_reconciliation_records_a_pending_refund_stripe_canceled(d: Driver) -> None:
    org, inv, note = pending_refund(d)
    d.fake.cancel_refund(note.refund.stripe_id)  # its webhook lost
    d.clock.advance(3600)
    report = d("reconciliation.run", apply=True, org_id=org.id, stale_after=timedelta(0))
    assert [f.result for f in report.findings if f.repair_kind == "finish_refund"] == [
        "repaired"], report.as_json()
    after = d("credit_notes.get", org.id, note.id)
    assert after.status is CreditNoteStatus.VOID
    assert d("invoices.get", org.id, inv.id).amount_credited == 0
    assert d("reconciliation.run", org_id=org.id, stale_after=timedelta(0)).clean
    check_credits(d, inv)


def test_reconciliation_waits_for_a_refund_stripe_still_processes(d: Driver) -> None:
    org, inv, note = pending_refund(d)
    d.clock.advance(3 * 86400)
    for _ in range(2):
        report = d("reconciliation.run", apply=True, org_id=org.id, stale_after=timedelta(0))
        refunds = [f for f in report.findings if f.repair_kind == "finish_refund"]
        assert [f.result for f in refunds] != ["repaired"] or \
            d("credit_notes.get", org.id, note.id).refund.status is not RefundStatus.PENDING
        d.clock.advance(86400)
    assert len(d.fake.refunds) == 1  # never made twice
    d.fake.settle_refund(note.refund.stripe_id, succeeded=True)  # its webhook lost
    d.clock.advance(86400)
    report = d("reconciliation.run", apply=True, org_id=org.id, stale_after=timedelta(0))
    after = d("credit_notes.get", org.id, note.id)
    assert after.status is CreditNoteStatus.ISSUED
    assert after.refund.status is RefundStatus.SUCCEEDED
    assert d("reconciliation.run", org_id=org.id, stale_after=timedelta(0)).clean
    check_credits(d, inv)
