"""README: "the dry run writes nothing at all (no lease, no audit...)", collect's dry run
"reads only", `late_usage` "reads only", `credit_notes.preview` "no write" -- tried through
every Stripe state reconciliation and collection would repair with `apply`: a failed attempt
whose intent is live, an attempt confirmed by a process that died (its intent succeeded in
Stripe), an attempt awaiting 3-D Secure, a refund left pending without Stripe's id, a card
refund the bank returned, a stale pending attach. Nothing may be written, and Stripe may only
be read (no cancel, refund, attach, detach, customer create or delete)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from billing import BillingError, PaymentProviderUnavailable, PaymentRequiresAction, faults
from billing.faults import InjectedFault
from tests.integration.test_credit_notes import bank_returns, paid_invoice
from tests.integration.test_failed_intents import failed_three_d_secure
from tests.integration.test_payment_states import open_invoice
from tests.support.billing_data import dump
from tests.support.drivers import Driver

pytestmark = pytest.mark.integration
READS = {"find_customers", "retrieve_payment_method", "list_payment_methods",
         "retrieve_intent", "retrieve_refund", "list_refunds"}


def world(d: Driver) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["failed_live"] = failed_three_d_secure(d)[:2]
    org, inv = open_invoice(d)
    with faults.active({"payments.after_confirm": "raise"}), pytest.raises(InjectedFault):
        d("invoices.pay", org.id, inv.id)  # charged in Stripe, the process died
    out["confirming"] = (org, inv)
    org, inv = open_invoice(d, token="pm_card_threeDSecure2Required")
    with pytest.raises(PaymentRequiresAction):
        d("invoices.pay", org.id, inv.id)
    out["action"] = (org, inv)
    org, inv = paid_invoice(d)
    d.fake.fail_next("refund", PaymentProviderUnavailable("timeout"))
    with pytest.raises(PaymentProviderUnavailable):
        d("credit_notes.create", org.id, inv.id, amount=50, reason="order_change",
          request_id="cn-stuck")
    out["stuck_refund"] = (org, inv)
    org, inv = paid_invoice(d)
    note = d("credit_notes.create", org.id, inv.id, amount=40, reason="order_change",
             request_id="cn-returned")
    bank_returns(d, note.refund.stripe_id)  # its webhook lost
    out["returned"] = (org, inv)
    d.clock.advance(3600)
    return out


def test_reconciliation_and_collection_dry_runs_write_nothing_and_only_read_stripe(
        d: Driver) -> None:
    w = world(d)
    before = dump(d.db)
    calls = len(d.fake.calls)

    report = d("reconciliation.run", stale_after=timedelta(0))
    collected = d("collections.run")
    for org, inv in w.values():
        try:  # refused while a payment may charge: a refusal is fine, a write is not
            d("credit_notes.preview", org.id, inv.id, amount=1, reason="order_change",
              request_id="cn-preview")
        except BillingError:
            pass

    assert dump(d.db) == before
    made = {name for name, _ in d.fake.calls[calls:]}
    assert made <= READS, made - READS
    assert not report.clean and collected.items  # they did see the states
