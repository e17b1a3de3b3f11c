"""`billing credit-note create ORG INVOICE (--amount N | --line ITEM=N ...) --reason R
--request-id ID [--memo TEXT] [--no-refund] [--apply] [--json]`: correct a finalised invoice.

A dry run (the default) shows the credit note that would be issued (its number, amount, how it
is settled: the amount due goes down on an unpaid invoice, a Stripe refund or a credit settled
outside Stripe on a paid one) and writes nothing, sends nothing. --apply issues it
(`credit_notes.create`): idempotent per --request-id, so repeating the same command after a
crash or a timeout finishes what the first one started and never credits or refunds twice.
Amounts are integer minor units (cents), as in the library and the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from billing import Billing
from billing.adapters import ids
from billing.cli import advice, connect, exit_codes, invoice_run, signals
from billing.cli.money import format_money
from billing.cli.output import emit_json
from billing.domain.models import CreditNote, CreditReason, Invoice, InvoiceStatus
from billing.domain.money import MAX_AMOUNT
from billing.errors import ConfigurationError, InvalidInput, InvalidMoney, shown

DRY_RUN_NOTICE = "dry run: nothing written, nothing refunded; add --apply to issue it"


def add_parser(commands: Any, *, parents: list[argparse.ArgumentParser]) -> None:
    """`credit-note create` under `commands` (the top-level subparsers)."""
    group = commands.add_parser(
        "credit-note", help="correct a finalised invoice with a credit note (and refund)",
        description="Credit notes: correct an open or paid invoice without editing it.")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", help="issue a credit note (dry run unless --apply)", parents=parents,
        description=" ".join((__doc__ or "").split("\n\n")[1].split()))
    create.add_argument("org", metavar="ORG", help="the org (24-hex id)")
    create.add_argument("invoice", metavar="INVOICE", help="the invoice (24-hex id)")
    how = create.add_mutually_exclusive_group(required=True)
    how.add_argument("--amount", metavar="N", help="a lump sum, in minor units (cents)")
    how.add_argument("--line", action="append", metavar="ITEM=N",
                     help="credit a line item (24-hex id) by N minor units; repeatable")
    create.add_argument("--reason", required=True, choices=[r.value for r in CreditReason],
                        help="why (Stripe's reasons)")
    create.add_argument("--request-id", required=True, metavar="ID",
                        help="your id for this correction: repeating it never credits twice")
    create.add_argument("--memo", metavar="TEXT", help="a note kept with the credit note")
    create.add_argument("--no-refund", action="store_true",
                        help="on a paid invoice: record the credit as settled outside Stripe "
                             "instead of refunding it")
    create.add_argument("--apply", action="store_true",
                        help="issue it (default: a dry run that changes nothing)")
    create.add_argument("--json", action="store_true",
                        help="print one JSON document (credit_note, invoice, applied, exit_code)")
    create.set_defaults(handler=main)


def arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The library call's keyword arguments, checked before anything connects."""
    kwargs: dict[str, Any] = {"reason": args.reason, "request_id": args.request_id,
                              "memo": args.memo, "refund": False if args.no_refund else None}
    if args.amount is not None:
        kwargs["amount"] = _minor_units(args.amount, "--amount")
    else:
        lines = []
        for entry in args.line:
            item, sep, amount = entry.partition("=")
            if not sep:
                raise InvalidInput(f"--line must be ITEM=N (a line item id and minor units), "
                                   f"got {shown(entry)}")
            lines.append((str(ids.object_id(item, name="--line item")),
                          _minor_units(amount, f"--line {item}")))
        kwargs["lines"] = lines
    return kwargs


def _minor_units(text: str, name: str) -> int:
    if not (text.isascii() and text.isdigit()):  # "²" and "١٢" are digits to str.isdigit
        raise InvalidInput(f"{name} must be a whole number of minor units (e.g. 1250 for 12.50), "
                           f"got {shown(text)}")
    # Checked before int(), which refuses more than 4300 digits (leading zeros too).
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(MAX_AMOUNT)):
        raise InvalidMoney(f"{name} exceeds the largest storable amount {MAX_AMOUNT}, got "
                           f"{shown(text)}")
    return int(digits)


def main(args: argparse.Namespace) -> int:
    org_id = str(ids.object_id(args.org, name="ORG"))
    invoice_id = str(ids.object_id(args.invoice, name="INVOICE"))
    kwargs = arguments(args)
    database = connect.database_option(args.database, invoice_run.DEFAULT_DATABASE)
    # A refund goes through Stripe ($STRIPE_API_KEY); without a key, crediting an unpaid
    # invoice or --no-refund still work, and a refund is refused before anything is written.
    with (connect.stripe_gateway() as gateway,
          connect.billing_for(args.uri, database, notices=sys.stderr, gateway=gateway) as billing,
          advice.unknown_org(org_id, database, option="ORG"), advice.refund_options()):
        if gateway is None and not args.no_refund and billing.invoices.get(
                org_id, invoice_id).status is InvoiceStatus.PAID:
            raise ConfigurationError(  # the library's advice names Billing(...): not the CLI's
                "the invoice is paid, so its credit is refunded through Stripe: set "
                "STRIPE_API_KEY, or pass --no-refund to record a credit settled outside "
                "Stripe (nothing was written)")
        note, invoice, issued = _run(billing, org_id, invoice_id, kwargs, apply=args.apply)
        signals.outcome_shown()
        if args.json:
            emit_json({"credit_note": json.loads(note.model_dump_json()),
                       "invoice": {"id": invoice.id, "status": invoice.status.value,
                                   "total": invoice.total, "amount_credited":
                                   invoice.amount_credited, "amount_due": invoice.amount_due,
                                   "currency": invoice.currency},
                       "applied": args.apply, "issued": issued, "exit_code": exit_codes.OK},
                      sys.stdout)
        else:
            print(render(note, invoice, applied=args.apply, issued=issued), flush=True)
        return exit_codes.OK


def _run(billing: Billing, org_id: str, invoice_id: str, kwargs: dict[str, Any], *,
         apply: bool) -> tuple[CreditNote, Invoice, bool]:
    """The credit note, the invoice as it is now, and whether the note exists (issued now, or
    earlier with the same request id)."""
    if apply:
        note = billing.credit_notes.create(org_id, invoice_id, **kwargs)
        return note, billing.invoices.get(org_id, invoice_id), True
    preview = billing.credit_notes.preview(org_id, invoice_id, **kwargs)
    return preview.credit_note, preview.invoice, preview.existing_id is not None


def render(note: CreditNote, invoice: Invoice, *, applied: bool, issued: bool) -> str:
    money = note.currency
    settled = {"amount_due": "the invoice's amount due goes down",
               "refund": "refunded through Stripe",
               "out_of_band": "settled outside Stripe (no refund)"}[note.settlement.value]
    verb = ("issued" if applied else "already issued with this request id" if issued
            else "would be issued")
    lines = [f"Credit note {note.display_number} {verb}: {format_money(note.amount, money)} "
             f"on invoice {invoice.display_number or invoice.id} ({note.reason.value})",
             f"  settlement  {settled}"]
    if note.refund is not None:
        lines.append(f"  refund      {note.refund.status.value}, "
                     f"{format_money(note.refund.amount, money)}"
                     + (f" ({note.refund.stripe_id})" if note.refund.stripe_id else ""))
    for line in note.lines:
        lines.append(f"  line item   {line.line_item_id}: {format_money(line.amount, money)}")
    lines.append(f"  invoice     {invoice.status.value}, total {format_money(invoice.total, money)}"
                 f", credited {format_money(invoice.amount_credited, money)}"
                 f", due {format_money(invoice.amount_due, money)}")
    if not issued and note.settlement.value == "amount_due":
        lines.append(f"  after       due {format_money(invoice.amount_due - note.amount, money)}")
    if not applied and not issued:
        lines.append(DRY_RUN_NOTICE)
    return "\n".join(lines)
