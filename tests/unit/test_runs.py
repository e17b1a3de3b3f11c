"""Invoice run outcomes and the run summary, as a person or a script reads them."""

from __future__ import annotations

import json
from datetime import timedelta

from billing.domain.models import Invoice, InvoiceStatus
from billing.errors import (
    ConfigurationError,
    CurrencyMismatch,
    InvalidInput,
    NotFound,
    NothingToBill,
    StateConflict,
    TransientDatabaseError,
)
from billing.invoice_runs import ORG_LEVEL_ERRORS, Outcome, RunSummary, result_of
from tests.unit.factories import NOW, OCT, invoice, org

STARTED = NOW


def opened(*, at: timedelta, currency: str = "usd", total: int = 100) -> Invoice:
    inv = invoice(org(currency=currency), status=InvoiceStatus.OPEN, complete=True)
    return inv.model_copy(update={"finalized_at": STARTED + at, "number": 1, "total": total,
                                  "subtotal": total})


def test_an_invoice_finalised_during_the_run_was_invoiced_by_it() -> None:
    assert result_of("o", STARTED, invoice=opened(at=timedelta(0))).outcome is Outcome.INVOICED
    assert result_of("o", STARTED, invoice=opened(at=timedelta(seconds=5))).outcome \
        is Outcome.INVOICED


def test_an_invoice_finalised_before_the_run_was_already_invoiced() -> None:
    result = result_of("o", STARTED, invoice=opened(at=-timedelta(milliseconds=1)))
    assert result.outcome is Outcome.ALREADY_INVOICED
    assert result.invoice is not None and result.error is None
    unfinalised = invoice(org(), status=InvoiceStatus.VOID)
    assert result_of("o", STARTED, invoice=unfinalised).outcome is Outcome.ALREADY_INVOICED


def test_nothing_to_bill_is_its_own_outcome() -> None:
    result = result_of("o", STARTED, error=NothingToBill("no conversations"))
    assert (result.outcome, result.error, result.retryable) == (Outcome.NOTHING_TO_BILL, None,
                                                                False)


def test_other_errors_fail_the_org_with_their_class_and_retryability() -> None:
    failed = result_of("o", STARTED, error=CurrencyMismatch("org now bills in eur"))
    assert failed.outcome is Outcome.FAILED
    assert failed.error == "CurrencyMismatch: org now bills in eur"
    assert failed.retryable is False
    transient = result_of("o", STARTED, error=TransientDatabaseError("election"))
    assert (transient.outcome, transient.retryable) == (Outcome.FAILED, True)


def test_org_level_errors_exclude_configuration_errors() -> None:
    for error in (StateConflict("x"), NotFound("x"), InvalidInput("x"),
                  TransientDatabaseError("x")):
        assert isinstance(error, ORG_LEVEL_ERRORS)
    assert not isinstance(ConfigurationError("x"), ORG_LEVEL_ERRORS)


def summary() -> RunSummary:
    run = RunSummary(OCT, STARTED, total_orgs=6)
    run.results += [
        result_of("a", STARTED, invoice=opened(at=timedelta(seconds=1), total=100)),
        result_of("b", STARTED, invoice=opened(at=timedelta(seconds=2), total=250)),
        result_of("c", STARTED, invoice=opened(at=timedelta(seconds=3), currency="eur", total=70)),
        result_of("d", STARTED, invoice=opened(at=-timedelta(days=1), total=9_999)),
        result_of("e", STARTED, error=NothingToBill("none")),
        result_of("f", STARTED, error=TransientDatabaseError("timed out")),
    ]
    return run


def test_counts_name_every_outcome() -> None:
    assert summary().counts == {"invoiced": 3, "already_invoiced": 1, "nothing_to_bill": 1,
                                "failed": 1}
    empty = RunSummary(OCT, STARTED, total_orgs=0)
    assert empty.counts == {o.value: 0 for o in Outcome}
    assert empty.ok and empty.totals_by_currency() == {}


def test_ok_is_false_when_any_org_failed() -> None:
    run = summary()
    assert not run.ok
    run.results = [r for r in run.results if r.outcome is not Outcome.FAILED]
    assert run.ok


def test_totals_count_only_invoices_of_this_run() -> None:
    assert summary().totals_by_currency() == {"usd": 350, "eur": 70}


def test_as_json_is_serialisable_and_complete() -> None:
    run = summary()
    run.finished_at = STARTED + timedelta(minutes=1)
    data = json.loads(json.dumps(run.as_json()))
    assert data["period"] == "2026-10" and data["orgs"] == 6 and data["ok"] is False
    assert data["invoiced_totals"] == {"usd": 350, "eur": 70}
    assert data["finished_at"] == "2026-11-05T12:01:00+00:00"
    assert [r["outcome"] for r in data["results"]] == [
        "invoiced", "invoiced", "invoiced", "already_invoiced", "nothing_to_bill", "failed"]
    first = data["results"][0]
    assert {"invoice_id", "number", "status", "currency", "total"} <= set(first)
    assert first["status"] == "open" and "error" not in first
    assert data["results"][-1]["error"] == "TransientDatabaseError: timed out"
    assert data["results"][-1]["retryable"] is True
    assert set(data["results"][4]) == {"org_id", "outcome"}


def test_an_unfinished_run_serialises_too() -> None:
    data = RunSummary(OCT, STARTED, total_orgs=0).as_json()
    assert data["finished_at"] is None
    json.dumps(data)
