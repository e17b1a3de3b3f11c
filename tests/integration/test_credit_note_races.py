"""Credit notes racing other calls, sync and async: a refund request that outlives its lease,
a credit note issued while reconciliation reads. On SecantusDB with the fake gateway."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId

from billing import PaymentProviderUnavailable, RefundDuplicated, RefundStatus, WebhookOutcome
from tests.integration.test_credit_notes import (
    REASON,
    as_stripe_sends,
    check_credits,
    events,
    open_invoice,
    paid_invoice,
    refund_event,
)
from tests.support.drivers import LEASE, Driver

pytestmark = pytest.mark.integration


def refund_outliving_its_lease(d: Driver, org: Any, inv: Any) -> tuple[Any, BaseException | None]:
    """credit_notes.create whose refund request reaches Stripe only after its lease expired
    and `finish_refund` took the lease over and made the refund. What finish_refund returned,
    and what the first call raised (None if nothing)."""
    original = d.fake.refund
    taken_over: list[Any] = []
    started: list[bool] = []

    def take_over() -> Any:
        started.append(True)
        d.clock.advance(LEASE + 1)
        return str(d.db.credit_notes.find_one({"org_id": ObjectId(org.id)})["_id"])

    if d.loop is None:
        def slow(**kwargs: Any) -> Any:
            if not started:
                taken_over.append(d.b.credit_notes.finish_refund(org.id, take_over()))
            return original(**kwargs)
    else:
        async def slow(**kwargs: Any) -> Any:  # type: ignore[misc]
            if not started:
                taken_over.append(await d.b.credit_notes.finish_refund(org.id, take_over()))
            return await original(**kwargs)
    d.fake.refund = slow
    try:
        d("credit_notes.create", org.id, inv.id, amount=50, reason=REASON, request_id="cn-1")
    except Exception as exc:  # noqa: BLE001 - returned for the test to judge
        return taken_over[0], exc
    finally:
        d.fake.refund = original
    return taken_over[0], None


def test_a_refund_outliving_its_lease_is_made_once_by_stripes_key_replay(d: Driver) -> None:
    """Every call for one credit note sends the same Idempotency-Key: Stripe answers the late
    request with the refund the key already made."""
    d.fake.replay_refund_keys = True
    org, inv = paid_invoice(d)

    finished, raised = refund_outliving_its_lease(d, org, inv)

    assert raised is None and finished.refund.status is RefundStatus.SUCCEEDED
    assert len(d.fake.refunds) == 1 and d.fake.refunded(inv.id) == 50
    assert d("credit_notes.get", org.id, finished.id) == finished
    assert d("reconciliation.run", org_id=org.id).clean
    check_credits(d, inv)


def test_a_second_refund_stripe_made_is_raised_and_reported(d: Driver) -> None:
    """Without Stripe's key replay (localstripe) the late request makes a second refund: the
    call that made it says so, the credit note keeps the first, and reconciliation reports it
    for a person (a webhook of it is a mismatch)."""
    org, inv = paid_invoice(d)

    finished, raised = refund_outliving_its_lease(d, org, inv)

    assert isinstance(raised, RefundDuplicated) and not raised.retryable
    (extra,) = [r for r in d.fake.refunds if r != finished.refund.stripe_id]
    assert extra in raised.message and d.fake.refunded(inv.id) == 100
    note = d("credit_notes.get", org.id, finished.id)
    assert note == finished and events(d, org).count("refund.succeeded") == 1
    body, sig = refund_event("refund.updated", as_stripe_sends(d, extra))
    assert d("webhooks.handle", body, sig).outcome is WebhookOutcome.MISMATCH
    report = d("reconciliation.run", apply=True, org_id=org.id, checks=["payment"])
    twice = [f for f in report.findings if "refunded twice" in f.summary]
    assert [(f.ids, f.result) for f in twice] == [([note.id], "reported")]
    told = d.db.billing_events.find_one({"org_id": ObjectId(org.id),
                                         "type": "reconciliation.finding",
                                         "data.summary": twice[0].summary})
    assert told is not None and extra in told["data"]["summary"]


def test_a_credit_note_issued_while_reconciliation_reads_is_not_a_finding(
        d: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    """The credited-amount check reads the org's credit notes, then their invoices: a credit
    note committed in between makes a consistent invoice look off until it is read again on
    one snapshot."""
    import billing._async.reconcile_refund_checks as async_checks
    import billing._sync.reconcile_refund_checks as sync_checks

    org, inv = open_invoice(d)
    d("credit_notes.create", org.id, inv.id, amount=30, reason=REASON, request_id="cn-1")
    fired: list[bool] = []
    if d.loop is None:
        original = sync_checks.credited_invoices

        def racing(direct: Any, oid: Any, ids: Any) -> Any:
            if not fired:
                fired.append(True)
                d.b.credit_notes.create(org.id, inv.id, amount=100, reason=REASON,
                                        request_id="cn-2")  # the host, meanwhile
            return original(direct, oid, ids)
        monkeypatch.setattr(sync_checks, "credited_invoices", racing)
    else:
        aoriginal = async_checks.credited_invoices

        async def aracing(direct: Any, oid: Any, ids: Any) -> Any:
            if not fired:
                fired.append(True)
                await d.b.credit_notes.create(org.id, inv.id, amount=100, reason=REASON,
                                              request_id="cn-2")
            return await aoriginal(direct, oid, ids)
        monkeypatch.setattr(async_checks, "credited_invoices", aracing)

    report = d("reconciliation.run", apply=True, org_id=org.id, checks=["payment"])

    assert fired and d("invoices.get", org.id, inv.id).amount_credited == 130
    assert report.clean and d.db.billing_events.count_documents(
        {"org_id": ObjectId(org.id), "type": "reconciliation.finding"}) == 0
    check_credits(d, inv)
    d.db.invoices.update_one({"_id": ObjectId(inv.id)}, {"$inc": {"amount_credited": 5}})
    [off] = d("reconciliation.run", org_id=org.id, checks=["payment"]).findings
    assert off.ids == [inv.id]  # one really off is still reported


def test_one_failed_listing_of_stripes_refunds_leaves_the_orgs_other_refund_findings(
        d: Driver) -> None:
    """Reconciliation compares recent refunds with Stripe's: one listing Stripe does not
    answer is a failed finding of its own, and the stuck refund beside it is still finished."""
    org, inv = paid_invoice(d)  # 230 by card
    d("credit_notes.create", org.id, inv.id, amount=20, reason=REASON, request_id="cn-1")
    # cn-2: Stripe made the refund but its answer was lost: pending, no Stripe id recorded.
    d.fake.fail_next("refund", PaymentProviderUnavailable("timeout"), after=True)
    with pytest.raises(PaymentProviderUnavailable):
        d("credit_notes.create", org.id, inv.id, amount=50, reason=REASON, request_id="cn-2")
    d.clock.advance(60)
    d.fake.fail_next("list_refunds", PaymentProviderUnavailable("timeout"))

    report = d("reconciliation.run", apply=True, org_id=org.id,
               stale_after=timedelta(seconds=30))

    kinds = [(f.repair_kind, f.result) for f in report.findings]
    assert ("finish_refund", "repaired") in kinds, kinds
    unlisted = [f for f in report.findings if "could not be listed" in f.summary]
    assert len(unlisted) == 1 and "timeout" in (unlisted[0].error or "") and not report.clean
    stuck = d.db.credit_notes.find_one({"request_id": "cn-2"})
    assert stuck is not None and stuck["refund"]["status"] == "succeeded"
