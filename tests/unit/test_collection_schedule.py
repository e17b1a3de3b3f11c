"""The retry schedule as arithmetic: attempts never before they are due, never more than the
schedule holds, `uncollectible` only after the last one (hypothesis over schedules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId
from hypothesis import given
from hypothesis import strategies as st

from billing.domain.models import Invoice, InvoiceStatus, Payment, PaymentStatus
from billing.errors import InvalidInput
from billing.plans import collections as plan
from billing.plans import payments as payment_plans

FINALIZED = datetime(2026, 11, 1, tzinfo=UTC)
CARD, NEW_CARD = str(ObjectId()), str(ObjectId())
SCHEDULES = st.lists(st.integers(0, 40), min_size=1, max_size=6, unique=True).map(sorted)


def invoice(status: InvoiceStatus = InvoiceStatus.OPEN, total: int = 500) -> Invoice:
    return Invoice(id=str(ObjectId()), org_id=str(ObjectId()), status=status, complete=True,
                   period_start=FINALIZED - timedelta(days=31), period_end=FINALIZED,
                   currency="usd", subtotal=total, total=total, created_at=FINALIZED,
                   finalized_at=FINALIZED, number=1)


def attempt(n: int, status: PaymentStatus, code: str | None = "card_declined",
            method: str = CARD) -> Payment:
    return Payment(id=str(ObjectId()), org_id=str(ObjectId()), invoice_id=str(ObjectId()),
                   attempt=n, status=status, amount=500, currency="usd", idempotency_key="k",
                   payment_method_id=method, failure_code=code, created_at=FINALIZED)


@given(days=SCHEDULES, failures=st.integers(0, 8), offset=st.integers(0, 50 * 24))
def test_never_due_before_its_day_nor_beyond_the_schedule(
    days: list[int], failures: int, offset: int
) -> None:
    now = FINALIZED + timedelta(hours=offset)
    history = [attempt(i + 1, PaymentStatus.FAILED) for i in range(failures)]
    result = plan.due(invoice(), history, CARD, days, now=now)
    if failures >= len(days):
        assert result.state is plan.State.DONE  # never more attempts than the schedule holds
        return
    due_at = FINALIZED + timedelta(days=days[failures])
    assert result.attempt == failures + 1
    assert (result.state is plan.State.DUE) == (due_at <= now)
    if result.state is plan.State.NOT_YET:
        assert result.at == due_at


@given(days=SCHEDULES, failures=st.integers(0, 8))
def test_uncollectible_only_after_the_last_attempt(days: list[int], failures: int) -> None:
    inv = invoice()
    failing = attempt(failures + 1, PaymentStatus.CONFIRMING)
    settled = payment_plans.settle(inv, failing, None, now=FINALIZED,
                                   failure=("card_declined", "declined"), failures=failures,
                                   days=days)
    became = settled.result[0].status
    assert (became is InvoiceStatus.UNCOLLECTIBLE) == (failures + 1 >= len(days))


def test_a_lost_card_waits_for_a_new_default_and_does_not_burn_attempts() -> None:
    lost = attempt(1, PaymentStatus.FAILED, code="lost_card")
    now = FINALIZED + timedelta(days=30)
    waiting = plan.due(invoice(), [lost], CARD, (0, 3), now=now)
    assert waiting.state is plan.State.NEEDS_METHOD
    again = plan.due(invoice(), [lost], NEW_CARD, (0, 3), now=FINALIZED)
    assert again.state is plan.State.DUE and again.attempt == 1  # not counted
    settled = payment_plans.settle(invoice(), attempt(2, PaymentStatus.CONFIRMING), None,
                                   now=FINALIZED, failure=("stolen_card", "x"), failures=0,
                                   days=(0,))
    assert settled.result[0].status is InvoiceStatus.OPEN


def test_a_new_default_makes_a_declined_invoice_due_at_once() -> None:
    declined = attempt(1, PaymentStatus.FAILED)
    assert plan.due(invoice(), [declined], CARD, (0, 3), now=FINALIZED).state is \
        plan.State.NOT_YET
    assert plan.due(invoice(), [declined], NEW_CARD, (0, 3), now=FINALIZED).state is \
        plan.State.DUE


@pytest.mark.parametrize("status", [PaymentStatus.REQUIRES_ACTION, PaymentStatus.PROCESSING,
                                    PaymentStatus.CONFIRMING, PaymentStatus.PENDING])
def test_an_attempt_stripe_holds_is_waiting(status: PaymentStatus) -> None:
    result = plan.due(invoice(), [attempt(1, status, code=None)], CARD, (0,),
                      now=FINALIZED + timedelta(days=9))
    assert result.state is plan.State.WAITING


@pytest.mark.parametrize("status", [InvoiceStatus.PAID, InvoiceStatus.VOID,
                                    InvoiceStatus.UNCOLLECTIBLE, InvoiceStatus.DRAFT])
def test_only_open_invoices_are_collected(status: InvoiceStatus) -> None:
    assert plan.due(invoice(status), [], CARD, (0,), now=FINALIZED).state is plan.State.DONE


def test_no_default_needs_a_method() -> None:
    assert plan.due(invoice(), [], None, (0,), now=FINALIZED).state is plan.State.NEEDS_METHOD


@pytest.mark.parametrize("bad", [[], [3, 1], [0, 0], [-1], [1.5], "0,3", [True], list(range(31)),
                                 None])
def test_bad_schedules_are_refused(bad: object) -> None:
    with pytest.raises(InvalidInput):
        plan.schedule(bad)


def test_the_default_schedule_is_valid() -> None:
    assert plan.schedule(plan.DEFAULT_SCHEDULE) == (0, 3, 5, 7)
