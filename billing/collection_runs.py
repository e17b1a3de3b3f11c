"""A collection run: what each open invoice was found to be, what was charged, the JSON form.
Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Result(StrEnum):
    WOULD_CHARGE = "would_charge"  # dry run: due now
    PAID = "paid"  # charged by this run
    DECLINED = "declined"  # the attempt failed; the schedule says when the next one is
    WAITING = "waiting"  # Stripe holds an attempt (3-D Secure, processing, in flight)
    NOT_DUE = "not_due"  # the next attempt is scheduled later
    NEEDS_METHOD = "needs_method"  # no usable default, or declined for good: a new card is needed
    BUSY = "busy"  # another call holds the invoice right now (pay, another collect)
    FAILED = "failed"  # something else went wrong; the error says what


# Results that leave work for a person or a later run: exit code 1 (nothing due and every due
# invoice paid: 0). Not due and busy are normal states of a schedule. A dry run asks "is
# anything due?": only what it would charge, or could not read, counts there.
OPEN_RESULTS = frozenset({Result.WOULD_CHARGE, Result.DECLINED, Result.WAITING,
                          Result.NEEDS_METHOD, Result.FAILED})
DRY_RUN_OPEN = frozenset({Result.WOULD_CHARGE, Result.FAILED})


@dataclass
class Collected:
    org_id: str
    invoice_id: str
    number: int | None
    amount: int
    currency: str
    attempt: int  # the scheduled attempt this was (or would be)
    result: Result
    due_at: datetime | None = None
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"org_id": self.org_id, "invoice_id": self.invoice_id, "number": self.number,
                "amount": self.amount, "currency": self.currency, "attempt": self.attempt,
                "result": self.result.value,
                "due_at": self.due_at.isoformat() if self.due_at else None,
                "detail": self.detail}


@dataclass(frozen=True)
class OrgCollection:
    """One org's invoices in a run: the progress callback's third argument."""

    org_id: str
    items: list[Collected]
    error: str | None = None  # the org could not be collected (a bad document): nothing done

    @property
    def failed(self) -> bool:
        return self.error is not None or any(
            i.result in (Result.FAILED, Result.DECLINED) for i in self.items)


Progress = Callable[[int, int, OrgCollection], None]


@dataclass
class CollectionReport:
    run_id: str
    apply: bool
    shard: tuple[int, int]
    started_at: datetime
    items: list[Collected] = field(default_factory=list)
    orgs_scanned: int = 0
    finished_at: datetime | None = None
    # Orgs that could not be collected ({org_id, error}): the run went on with the others.
    errors: list[dict[str, str]] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(i.result.value for i in self.items)
        return {r.value: found.get(r.value, 0) for r in Result}

    @property
    def ok(self) -> bool:
        """Everything due was collected (a dry run: nothing is due), and every org could be
        read."""
        open_ = OPEN_RESULTS if self.apply else DRY_RUN_OPEN
        return not self.errors and not any(i.result in open_ for i in self.items)

    def charged(self) -> dict[str, int]:
        """Money taken (or, in a dry run, to be taken) per currency."""
        wanted = Result.PAID if self.apply else Result.WOULD_CHARGE
        out: Counter[str] = Counter()
        for i in self.items:
            if i.result is wanted:
                out[i.currency] += i.amount
        return dict(out)

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "mode": "apply" if self.apply else "dry-run",
            "shard": f"{self.shard[0]}/{self.shard[1]}",
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "orgs_scanned": self.orgs_scanned, "counts": self.counts, "ok": self.ok,
            "charged": self.charged(), "invoices": [i.as_json() for i in self.items],
            "errors": list(self.errors),
        }
