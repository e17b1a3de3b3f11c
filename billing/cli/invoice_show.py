"""`billing invoice show ORG INVOICE [--json]`: one invoice, as on-call reads it.

The invoice's header (number, status, period, supplement, totals, amounts credited, paid and
due), its line items, its payment attempts (status, amount, Stripe intent, failure code) and its
credit notes (number, amount, reason, settlement, refund). Amounts are shown in major units with
the currency; --json prints one document with amounts in minor units.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from billing.adapters import ids
from billing.cli import connect, exit_codes, invoice_run, invoice_run_table, signals
from billing.cli.money import format_money
from billing.cli.output import emit_json, table
from billing.domain.models import CreditNote, Invoice, Payment
from billing.domain.periods import Period


def add_parser(actions: Any, *, parents: list[argparse.ArgumentParser]) -> None:
    """`show` under `actions` (the subparsers of `invoice`)."""
    show = actions.add_parser(
        "show", help="print one invoice: header, line items, payments, credit notes",
        parents=parents,
        description=" ".join((__doc__ or "").split("\n\n")[1].split()),
    )
    show.add_argument("org", metavar="ORG", help="the org (24-hex id)")
    show.add_argument("invoice", metavar="INVOICE", help="the invoice (24-hex id)")
    show.add_argument("--json", action="store_true",
                      help="print one JSON document (invoice, payments, credit_notes, "
                           "exit_code) on stdout")
    show.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    # Arguments are checked before anything connects: a typo costs no database round trip.
    org_id = str(ids.object_id(args.org, name="ORG"))
    invoice_id = str(ids.object_id(args.invoice, name="INVOICE"))
    database = connect.database_option(args.database, invoice_run.DEFAULT_DATABASE)
    with connect.billing_for(args.uri, database, notices=sys.stderr) as billing:
        invoice = billing.invoices.get(org_id, invoice_id)
        payments = billing.invoices.payment_attempts(org_id, invoice_id)
        notes = billing.credit_notes.list(org_id, invoice_id)
        name = None if args.json else invoice_run_table.names_of(billing, [org_id]).get(org_id)
        # Shown before the embedded database (if any) takes its seconds to stop.
        signals.outcome_shown()
        if args.json:
            emit_json({**as_json(invoice, payments, notes), "exit_code": exit_codes.OK},
                      sys.stdout)
        else:
            print(render(invoice, payments, notes, org_name=name), flush=True)
        return exit_codes.OK


def as_json(invoice: Invoice, payments: Sequence[Payment], notes: Sequence[CreditNote]
            ) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(invoice.model_dump_json(exclude={"payment_lease"}))
    return {"invoice": {**doc, "amount_due": invoice.amount_due,
                        "period": Period(invoice.period_start, invoice.period_end).label},
            "payments": [json.loads(p.model_dump_json()) for p in payments],
            "credit_notes": [json.loads(n.model_dump_json(exclude={"refund": {"lease"}}))
                             for n in notes]}


def render(invoice: Invoice, payments: Sequence[Payment], notes: Sequence[CreditNote], *,
           org_name: str | None) -> str:
    """The header, then one table per section; a section with nothing in it says so."""
    sections = [
        _header(invoice, org_name),
        _section("Line items", ["kind", "description", "quantity", "unit price", "amount"],
                 [[li.kind.value, li.description, f"{li.quantity:,}",
                   format_money(li.unit_amount, li.currency), format_money(li.amount, li.currency)]
                  for li in invoice.line_items], right=(2, 3, 4)),
        _section("Payment attempts", ["attempt", "status", "amount", "intent", "failure code",
                                      "created"],
                 [[str(p.attempt), p.status.value, format_money(p.amount, p.currency),
                   p.intent_id or "-", p.failure_code or "-", _when(p.created_at)]
                  for p in payments], right=(0, 2)),
        _section("Credit notes", ["number", "status", "amount", "reason", "settlement",
                                  "refund", "created"],
                 [[n.display_number, n.status.value, format_money(n.amount, n.currency),
                   n.reason.value, n.settlement.value,
                   "-" if n.refund is None else f"{n.refund.status.value} "
                   f"{n.refund.stripe_id or '(not yet in Stripe)'}", _when(n.created_at)]
                  for n in notes], right=(2,)),
    ]
    return "\n\n".join(sections)


def _header(invoice: Invoice, org_name: str | None) -> str:
    money = invoice.currency
    number = invoice.display_number or "(no number: a draft)"
    org = f"{org_name} ({invoice.org_id})" if org_name else invoice.org_id
    kind = "the period's invoice" if invoice.supplement == 0 else "supplementary"
    rows = [
        ("org", org),
        ("invoice", invoice.id),
        ("period", Period(invoice.period_start, invoice.period_end).label),
        ("supplement", f"{invoice.supplement} ({kind})"),
        ("created", _when(invoice.created_at)),
        ("finalised", _when(invoice.finalized_at)),
        ("conversations", f"{invoice.conversations:,}"
         + (f" ({invoice.skipped_malformed} malformed skipped)"
            if invoice.skipped_malformed else "")),
        ("subtotal", format_money(invoice.subtotal, money)),
        ("total", format_money(invoice.total, money)),
        ("credited", format_money(invoice.amount_credited, money)),
        ("amount paid", format_money(invoice.amount_paid, money)
         + (f" on {_when(invoice.paid_at)}" if invoice.paid_at else "")),
        ("amount due", format_money(invoice.amount_due, money)),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join([f"Invoice {number} ({invoice.status.value})",
                      *(f"  {label.ljust(width)}  {value}" for label, value in rows)])


def _section(title: str, headers: list[str], rows: list[list[str]], *,
             right: Sequence[int] = ()) -> str:
    if not rows:
        return f"{title}: none"
    return f"{title}\n{table(headers, rows, right=right)}"


def _when(moment: Any) -> str:
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"
