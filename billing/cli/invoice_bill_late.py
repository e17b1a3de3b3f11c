"""`billing invoice bill-late --org ID --period YYYY-MM [--apply] [--json]`: bill conversations
recorded after their month was invoiced.

A dry run (the default) only reads: how many of the org's conversations that ended in the month
are still unbilled, and onto which invoice they would go (the month's draft, a new invoice, or
supplementary invoice 1, 2, ...). --apply bills them (`invoices.bill_late_usage`): never onto a
finalised invoice, each conversation once, safe to repeat.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any

from billing import Billing
from billing.adapters import ids
from billing.cli import advice, connect, exit_codes, invoice_run, invoice_run_table, signals
from billing.cli.money import format_money
from billing.cli.output import emit_json
from billing.domain.models import Invoice, InvoiceStatus, LateUsage
from billing.domain.periods import Period
from billing.errors import NothingToBill

DRY_RUN_NOTICE = "dry run: nothing changed; add --apply to bill them"
WIDTH = 100  # the longest line printed for people


def add_parser(actions: Any, *, parents: list[argparse.ArgumentParser]) -> None:
    """`bill-late` under `actions` (the subparsers of `invoice`)."""
    cmd = actions.add_parser(
        "bill-late", help="bill an org's conversations recorded after their month was invoiced",
        parents=parents, description=" ".join((__doc__ or "").split("\n\n")[1].split()),
    )
    cmd.add_argument("--org", required=True, metavar="ID", help="the org (24-hex id)")
    cmd.add_argument("--period", required=True, metavar="YYYY-MM",
                     help="the calendar month (UTC) the conversations ended in; it must have ended")
    cmd.add_argument("--apply", action="store_true",
                     help="bill them (default: a dry run that changes nothing)")
    cmd.add_argument("--json", action="store_true",
                     help="print one JSON document (what is late, the invoice, exit_code)")
    cmd.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    # Arguments are checked before anything connects: a typo costs no database round trip.
    period = Period.month(args.period)
    org_id = str(ids.object_id(args.org, name="--org"))
    database = connect.database_option(args.database, invoice_run.DEFAULT_DATABASE)
    with connect.billing_for(args.uri, database, notices=sys.stderr) as billing:
        with advice.unknown_org(org_id, database):
            usage, invoice = _run(billing, org_id, period, apply=args.apply)
        name = None if args.json else invoice_run_table.names_of(billing, [org_id]).get(org_id)
        # Shown before the embedded database (if any) takes its seconds to stop.
        return show(usage, invoice, period, apply=args.apply, as_json=args.json, org_name=name)


def _run(billing: Billing, org_id: str, period: Period, *, apply: bool
         ) -> tuple[LateUsage | None, Invoice | None]:
    """The dry run's reading, or the invoice --apply billed (None: nothing was late)."""
    if not apply:
        return billing.invoices.late_usage(org_id, period), None
    try:
        return None, billing.invoices.bill_late_usage(org_id, period)
    except NothingToBill:
        return None, None


def exit_code(usage: LateUsage | None, *, apply: bool) -> int:
    """OK when nothing is late or --apply billed it; FINDINGS_REMAIN when a dry run finds
    conversations to bill (as a reconcile dry run with findings)."""
    if not apply and usage is not None and usage.conversations:
        return exit_codes.FINDINGS_REMAIN
    return exit_codes.OK


def show(usage: LateUsage | None, invoice: Invoice | None, period: Period, *, apply: bool,
         as_json: bool, org_name: str | None) -> int:
    code = exit_code(usage, apply=apply)
    signals.outcome_shown()
    if as_json:
        emit_json({"period": period.label, "apply": apply,
                   "late": None if usage is None else usage.model_dump(mode="json"),
                   "invoice": None if invoice is None else invoice.model_dump(
                       mode="json", exclude={"payment_lease"}),
                   "exit_code": code}, sys.stdout)
    else:
        print(describe(usage, invoice, period, org_name=org_name), flush=True)
    return code


def describe(usage: LateUsage | None, invoice: Invoice | None, period: Period, *,
             org_name: str | None) -> str:
    """Lines of at most WIDTH characters, for a terminal, a mail or a ticket."""
    if usage is not None:
        who = _org(usage.org_id, org_name)
        if not usage.conversations:
            return _lines(f"{who}: no late conversations in {period.label}; nothing to bill")
        noun = "conversation" if usage.conversations == 1 else "conversations"
        return _lines(f"{who}: {usage.conversations:,} late {noun} in {period.label}",
                      f"would go onto {_target(usage)}", DRY_RUN_NOTICE)
    if invoice is None:
        return _lines(f"nothing to bill: no late conversations in {period.label}")
    kind = f"supplementary invoice {invoice.supplement}" if invoice.supplement \
        else "the month's invoice"
    state = "still a draft" if invoice.status is InvoiceStatus.DRAFT \
        else f"number {invoice.display_number}, {invoice.status.value}"
    return _lines(f"{_org(invoice.org_id, org_name)}: late conversations of {period.label} "
                  f"billed", f"onto {kind}: {invoice.id} ({state})",
                  f"{invoice.conversations:,} conversations on it, total "
                  f"{format_money(invoice.total, invoice.currency)}")


def _lines(*paragraphs: str) -> str:
    return "\n".join(textwrap.fill(p, WIDTH, subsequent_indent="  ") for p in paragraphs)


def _org(org_id: str, name: str | None) -> str:
    return f"org {name} ({org_id})" if name else f"org {org_id}"


def _target(usage: LateUsage) -> str:
    if usage.invoice_id is not None:
        kept = ", which stays a draft" if usage.stays_draft else ", then finalised"
        return f"the month's draft {usage.invoice_id}{kept}"
    if usage.supplement:
        return f"a new supplementary invoice {usage.supplement} (the month's invoice is final)"
    return "a new invoice for the month (it has none yet)"
