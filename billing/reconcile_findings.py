"""Reconciliation findings, actions and the run report. Pure.

What each check finds and what `--apply` does about it (the policies) is decided in
billing/plans/reconciliation; a finding carries its repair from there.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from billing.plans.reconciliation import Repair

SAMPLE_IDS = 20  # ids listed per finding; counts are exact


class Check(StrEnum):
    UNBILLED = "unbilled"
    DANGLING_LINK = "dangling_link"
    WRONG_TOTALS = "wrong_totals"
    STALE_DRAFT = "stale_draft"
    PAYMENT_METHOD = "payment_method"
    PAYMENT = "payment"
    MALFORMED = "malformed"
    USAGE_QUANTITY = "usage_quantity"


@dataclass
class Finding:
    check: Check
    org_id: str
    summary: str  # what is wrong, for people
    count: int = 1
    ids: list[str] = field(default_factory=list)  # a sample of the documents concerned
    action: str = ""  # what --apply does (or did)
    repairable: bool = True
    result: str = "found"  # found | repaired | failed | reported
    error: str | None = None
    repair: Repair | None = field(default=None, repr=False)  # what --apply does, typed

    @property
    def repair_kind(self) -> str | None:
        """The repair's name (`adopt`, `gone`...), or None for a finding only reported."""
        return None if self.repair is None else self.repair.kind

    def as_json(self) -> dict[str, Any]:
        out = {"check": self.check.value, "org_id": self.org_id, "summary": self.summary,
               "count": self.count, "ids": self.ids[:SAMPLE_IDS], "action": self.action,
               "result": self.result}
        if self.error:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class OrgScan:
    """What one org's scan found (and repaired): the progress callback's third argument."""

    org_id: str
    findings: list[Finding]

    @property
    def failed(self) -> bool:
        return any(f.result == "failed" for f in self.findings)


@dataclass
class ReconcileReport:
    run_id: str
    apply: bool
    checks: tuple[Check, ...]
    shard: tuple[int, int]
    started_at: datetime
    boundary: datetime  # conversations that ended before this should be billed
    findings: list[Finding] = field(default_factory=list)
    orgs_scanned: int = 0
    finished_at: datetime | None = None

    @property
    def counts(self) -> dict[str, int]:
        found = Counter[str]()
        for f in self.findings:
            found[f.check.value] += 1
        return {c.value: found.get(c.value, 0) for c in self.checks}

    @property
    def outstanding(self) -> list[Finding]:
        """Findings still wrong after this run (all of them in a dry run)."""
        return [f for f in self.findings if f.result != "repaired"]

    @property
    def clean(self) -> bool:
        return not self.outstanding

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "mode": "apply" if self.apply else "dry-run",
            "checks": [c.value for c in self.checks], "shard": f"{self.shard[0]}/{self.shard[1]}",
            "boundary": self.boundary.isoformat(), "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_s": round((self.finished_at - self.started_at).total_seconds(), 3)
            if self.finished_at else None,
            "orgs_scanned": self.orgs_scanned, "counts": self.counts,
            "outstanding": len(self.outstanding), "clean": self.clean,
            "findings": [f.as_json() for f in self.findings],
        }


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' with 0 <= I < N."""
    from billing.errors import InvalidInput, shown

    try:
        index, total = (int(part) for part in text.split("/"))
    except (ValueError, AttributeError):
        raise InvalidInput(f"shard {shown(text)} must look like I/N, e.g. 0/4") from None
    if not 0 <= index < total <= 4096:
        raise InvalidInput(f"shard {shown(text)}: need 0 <= I < N <= 4096")
    return index, total


def lease_seconds_of(value: Any) -> float:
    """A run's lease length: seconds above 0 and under a day (NaN refused), else InvalidInput."""
    from billing.errors import InvalidInput, shown

    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not 0 < value < 86_400:  # also refuses NaN
        raise InvalidInput(f"lease_seconds must be a number of seconds from 0 to 86400, "
                           f"got {shown(value)}")
    return float(value)


def shard_of(value: Any) -> tuple[int, int]:
    """A shard given as 'I/N' or (I, N), checked like `parse_shard`."""
    from billing.errors import InvalidInput, shown

    if isinstance(value, str):
        return parse_shard(value)
    if isinstance(value, tuple) and len(value) == 2 and all(
            isinstance(p, int) and not isinstance(p, bool) for p in value):
        return parse_shard(f"{value[0]}/{value[1]}")
    raise InvalidInput(f"shard must be (I, N) or 'I/N', got {shown(value)}")


def in_shard(org_id: Any, shard: tuple[int, int]) -> bool:
    """Orgs split by their id: ObjectIds are spread evenly by their random and counter bytes."""
    return int(str(org_id)[-6:], 16) % shard[1] == shard[0]
