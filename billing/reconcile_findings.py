"""Reconciliation findings, actions and the run report. Pure.

Policies (what `--apply` does for each kind):
- unbilled: conversations that ended before the last closed month boundary and are unbilled.
  Billed exactly once onto the month's invoice while it is a draft (or when none exists yet),
  otherwise onto a supplementary invoice for that month (supplement 1, 2, ...).
- dangling_link: a billed conversation whose line item is missing in every org, or a line item
  whose invoice is missing. A conversation linked to a line item of another org (its `org_id` was
  rewritten after billing, or is an array) is reported for a person, never released: releasing
  it would bill it twice. So are links whose conversations break the data contract (see
  malformed). A missing conversations line item is restored on its invoice when the invoice
  still records it (the period's invoice lacks its conversations item, counts exactly those
  conversations, and its stored subtotal misses a whole multiple of their count): they were
  charged there, so rebilling them would charge their minutes twice. With no invoice left for
  them the conversations are released (line_item_id back to null, conditional on the broken id)
  and billed again by the `unbilled` repair in the same run; when an invoice lacks its item but
  cannot tell the amount, the finding fails for a person to decide. An orphan line item (its
  invoice is gone) is deleted and its conversations released. Line items of void invoices are
  not findings: voiding writes their conversations off, by design (see the README).
- wrong_totals: an invoice whose subtotal or total differs from the sum of its line items.
  Recomputed from the line items unless the invoice is paid or void (money has moved or the
  invoice is closed): those are reported for a person.
- stale_draft: a draft whose billing was interrupted. Resumed and finalised.
- payment_method: Stripe is the truth for what is attached; the database for which org owns
  what. Pending attaches are finished when Stripe shows the method on the org's customer, or
  failed when it does not; unfinished detaches are detached; a method attached to the org's
  customer but unknown here is adopted (never detached: the org may use it); an active method
  that Stripe no longer has attached, or of an org without a customer, is marked detached; a
  default pointing at a missing or unusable method is cleared; a recorded customer that Stripe
  no longer has is forgotten (as customer.deleted does). The only detach in Stripe that
  reconciliation makes is of a method whose org no longer exists, and the only deletion is of
  an empty extra customer our metadata says billing created for the org; both findings say so.
- payment: payment attempts not settled after `stale_after` (a lost webhook, a process that died,
  a `processing` payment) are settled from Stripe's state, never charged again; webhooks whose
  amount, currency or customer disagreed with our attempt are reported for a person.
- usage_quantity: a conversations line item whose quantity differs from the number of the
  org's conversations linked to it (confirmed on one snapshot). Reported: money is a person's call.
- malformed: conversations billing cannot price (`started_at` or `ended_at` not one date, or
  ending before they start), and conversations that break the data contract's types
  (`line_item_id` neither null nor an ObjectId; `org_id` an array, a string, a number, null or
  missing). Billing skips them; reported, never changed.

A check that cannot finish for one org (bad data, a Stripe error) is recorded as a failed
finding of that org and the run goes on; only an unreachable database stops the run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from billing.domain.models import Invoice, InvoiceStatus, LineItem, LineItemKind

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
    params: dict[str, Any] = field(default_factory=dict, repr=False)  # what the repair needs

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


def restored_item(invoice: Invoice, item_id: str, linked: int) -> LineItem | None:
    """The conversations line item a broken writer deleted, rebuilt from what its invoice still
    records (conversation count, stored subtotal); None when the invoice cannot tell."""
    if (linked <= 0 or invoice.status is InvoiceStatus.VOID or invoice.conversations != linked
            or invoice.item(LineItemKind.CONVERSATIONS) is not None):
        return None
    missing = invoice.subtotal - sum(li.amount for li in invoice.line_items)
    if missing < 0 or missing % linked:
        return None
    return LineItem(id=item_id, org_id=invoice.org_id, invoice_id=invoice.id,
                    kind=LineItemKind.CONVERSATIONS, description="Conversations", quantity=linked,
                    unit_amount=missing // linked, amount=missing, currency=invoice.currency)


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
