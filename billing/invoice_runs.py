"""Invoice runs over many orgs: per-org outcomes, the summary and its JSON form. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from billing import errors
from billing.domain.models import Invoice
from billing.domain.periods import Period
from billing.errors import BillingError, NothingToBill


class Outcome(StrEnum):
    INVOICED = "invoiced"  # finalised by this run
    ALREADY_INVOICED = "already_invoiced"  # an earlier run did it (idempotent repeat)
    NOTHING_TO_BILL = "nothing_to_bill"
    FAILED = "failed"


@dataclass(frozen=True)
class OrgResult:
    org_id: str
    outcome: Outcome
    invoice: Invoice | None = None
    error: str | None = None  # error class and message; never a URI or key
    retryable: bool = False

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"org_id": self.org_id, "outcome": self.outcome.value}
        if self.invoice is not None:
            inv = self.invoice
            out.update(invoice_id=inv.id, number=inv.number, status=inv.status.value,
                       currency=inv.currency, total=inv.total, conversations=inv.conversations,
                       skipped_malformed=inv.skipped_malformed)
        if self.error is not None:
            out.update(error=self.error, retryable=self.retryable)
        return out


def result_of(org_id: str, started_at: datetime, invoice: Invoice | None = None,
              error: Exception | None = None) -> OrgResult:
    if isinstance(error, NothingToBill):
        return OrgResult(org_id, Outcome.NOTHING_TO_BILL)
    if isinstance(error, BillingError):
        return OrgResult(org_id, Outcome.FAILED, error=f"{type(error).__name__}: {error.message}",
                         retryable=error.retryable)
    if error is not None:  # unexpected: recorded so the run goes on
        return OrgResult(org_id, Outcome.FAILED, error=f"{type(error).__name__}: {error}")
    assert invoice is not None
    fresh = invoice.finalized_at is not None and invoice.finalized_at >= started_at
    return OrgResult(org_id, Outcome.INVOICED if fresh else Outcome.ALREADY_INVOICED, invoice)


@dataclass
class RunSummary:
    period: Period
    started_at: datetime
    total_orgs: int
    results: list[OrgResult] = field(default_factory=list)
    finished_at: datetime | None = None

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(r.outcome.value for r in self.results)
        return {o.value: found.get(o.value, 0) for o in Outcome}

    @property
    def ok(self) -> bool:
        return not any(r.outcome is Outcome.FAILED for r in self.results)

    def totals_by_currency(self) -> dict[str, int]:
        sums: Counter[str] = Counter()
        for r in self.results:
            if r.outcome is Outcome.INVOICED and r.invoice is not None:
                sums[r.invoice.currency] += r.invoice.total
        return dict(sums)

    def as_json(self) -> dict[str, Any]:
        return {
            "period": self.period.label,
            "period_start": self.period.start.isoformat(),
            "period_end": self.period.end.isoformat(),
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "orgs": self.total_orgs,
            "counts": self.counts,
            "invoiced_totals": self.totals_by_currency(),
            "ok": self.ok,
            "results": [r.as_json() for r in self.results],
        }


Progress = Callable[[int, int, OrgResult], None]  # (done, total, latest result)

# Errors that fail one org and let the run go on; others (configuration) stop it.
ORG_LEVEL_ERRORS: tuple[type[BillingError], ...] = (
    errors.StateConflict, errors.NotFound, errors.InvalidInput, errors.DatabaseError,
)


def org_level(exc: Exception) -> bool:
    """Whether `exc` fails one org of a run (recorded) rather than the whole run (raised): an
    unreachable database or bad configuration stops the run; anything else, even unexpected
    (bad data), is that org's failure."""
    if isinstance(exc, errors.DatabaseUnavailable | errors.ConfigurationError):
        return False
    return not isinstance(exc, BillingError) or isinstance(exc, ORG_LEVEL_ERRORS)
