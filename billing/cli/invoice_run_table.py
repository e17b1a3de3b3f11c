"""An invoice run for people: one table row per org, then counts, totals and problems."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bson import ObjectId
from pymongo.errors import PyMongoError

from billing import Billing
from billing.adapters import schema
from billing.cli.money import format_money
from billing.cli.output import table
from billing.domain.models import LineItemKind
from billing.invoice_runs import OrgResult, Outcome, RunSummary

HEADERS = ("ORG", "INVOICE", "CONVERSATIONS", "MINUTES", "TOTAL", "STATUS", "OUTCOME")
RIGHT = (2, 3, 4)  # numeric columns


def org_names(billing: Billing, summary: RunSummary) -> dict[str, str]:
    """Names of the summary's orgs, for display; empty if they cannot be read (ids are shown)."""
    return names_of(billing, {r.org_id for r in summary.results})


def names_of(billing: Billing, org_ids: Iterable[str]) -> dict[str, str]:
    """Names of these orgs, for display; ids that are not orgs (or unreadable) are left out."""
    ids = [ObjectId(i) for i in org_ids if ObjectId.is_valid(i)]
    if not ids:
        return {}
    try:
        docs: list[dict[str, Any]] = list(
            billing.database[schema.ORGS].find({"_id": {"$in": ids}}, {"name": 1}))
    except PyMongoError:
        return {}
    return {str(d["_id"]): str(d.get("name", d["_id"])) for d in docs}


def row(result: OrgResult, name: str) -> list[str]:
    inv = result.invoice
    if inv is None:
        return [name, "-", "-", "-", "-", "-", result.outcome.value]
    minutes = inv.item(LineItemKind.MINUTES)
    return [name, inv.display_number or "-", str(inv.conversations),
            str(minutes.quantity if minutes else 0), format_money(inv.total, inv.currency),
            inv.status.value, result.outcome.value]


def render(summary: RunSummary, names: Mapping[str, str]) -> str:
    def name(result: OrgResult) -> str:
        return names.get(result.org_id, result.org_id)

    lines = [f"Invoice run for {summary.period.label}: {summary.total_orgs} org(s)", ""]
    if summary.results:
        lines += [table(HEADERS, [row(r, name(r)) for r in summary.results], right=RIGHT), ""]
    lines.append(", ".join(f"{n} {o.replace('_', ' ')}" for o, n in summary.counts.items()))
    totals = summary.totals_by_currency()
    if totals:
        lines.append("Invoiced by this run: " + ", ".join(
            format_money(amount, currency) for currency, amount in sorted(totals.items())))
    for r in summary.results:
        skipped = r.invoice.skipped_malformed if r.invoice else 0
        if skipped:
            lines.append(
                f"Skipped {skipped} malformed conversation(s) of {name(r)} (org {r.org_id}): "
                "started_at is not a date or is after ended_at; fix them, they stay unbilled")
    failed = [r for r in summary.results if r.outcome is Outcome.FAILED]
    for r in failed:
        retry = " (temporary: retry)" if r.retryable else ""
        lines.append(f"FAILED {name(r)} (org {r.org_id}): {r.error}{retry}")
    if failed:
        lines.append("Rerunning is safe: orgs already invoiced are not billed twice.")
    return "\n".join(lines)
