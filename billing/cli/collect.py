"""`billing collect [--apply] [--org ID] [--shard I/N] [--json]`: charge the open invoices
that are due under their org's retry schedule.

A dry run (the default) only reads: it lists each open invoice that is due (and the amount),
waiting (3-D Secure, processing), not due yet, or needing a new card. --apply holds the shard's
lease, makes one attempt per due invoice through `pay` (never a second charge: see the README's
payment rule) and records the run in `collection_runs`. Payments need $STRIPE_API_KEY.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Mapping
from typing import Any

from billing.adapters import ids
from billing.cli import connect, exit_codes, invoice_run, invoice_run_table, signals
from billing.cli.money import format_money
from billing.cli.output import ProgressBar, emit_json
from billing.collection_runs import CollectionReport
from billing.errors import ConfigurationError
from billing.reconcile_findings import parse_shard

WIDTH = 100
DRY_RUN_NOTICE = "dry run: nothing charged; add --apply to collect"


def add_parser(commands: Any, *, parents: list[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser(
        "collect", help="charge the open invoices due under their retry schedule",
        parents=parents, description=" ".join((__doc__ or "").split("\n\n")[1].split()))
    cmd.add_argument("--apply", action="store_true",
                     help="charge what is due (default: a dry run that charges nothing)")
    cmd.add_argument("--org", metavar="ID", help="only this org (24-hex id)")
    cmd.add_argument("--shard", default="0/1", metavar="I/N",
                     help="only the orgs of shard I of N (default: 0/1, every org)")
    cmd.add_argument("--json", action="store_true",
                     help="print one JSON document (the run and exit_code) on stdout")
    cmd.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    shard = parse_shard(args.shard)
    org_id = None if args.org is None else str(ids.object_id(args.org, name="--org"))
    database = connect.database_option(args.database, invoice_run.DEFAULT_DATABASE)
    with (connect.stripe_gateway() as gateway,
          connect.billing_for(args.uri, database, notices=sys.stderr, gateway=gateway) as billing):
        if args.apply and gateway is None:
            raise ConfigurationError("collect --apply charges through Stripe: set "
                                     "STRIPE_API_KEY (nothing was charged)")
        with ProgressBar(sys.stderr, "collecting" if args.apply else "checking") as bar:
            report = billing.collections.run(apply=args.apply, org_id=org_id, shard=shard,
                                             progress=bar)
        names = {} if args.json else invoice_run_table.names_of(
            billing, {i.org_id for i in report.items} | {e["org_id"] for e in report.errors})
        return show(report, as_json=args.json, names=names)


def show(report: CollectionReport, *, as_json: bool,
         names: Mapping[str, str] | None = None) -> int:
    code = exit_codes.OK if report.ok else exit_codes.ORGS_FAILED
    signals.outcome_shown()
    if as_json:
        emit_json({**report.as_json(), "exit_code": code}, sys.stdout)
    else:
        print(render(report, names or {}), flush=True)
        if not report.apply:
            print(DRY_RUN_NOTICE, file=sys.stderr, flush=True)
    return code


def render(report: CollectionReport, names: Mapping[str, str]) -> str:
    mode = "apply" if report.apply else "dry run"
    lines = [f"Collection ({mode}) of {report.orgs_scanned} org"
             f"{'' if report.orgs_scanned == 1 else 's'}, shard {report.shard[0]}/"
             f"{report.shard[1]}", ""]
    def who(org_id: str) -> str:
        name = names.get(org_id)
        return f"{name} (org {org_id})" if name else f"org {org_id}"

    for item in report.items:
        number = f"#{item.number}" if item.number is not None else item.invoice_id
        when = f", due {item.due_at:%Y-%m-%d}" if item.due_at and item.result.value == \
            "not_due" else ""
        lines += textwrap.wrap(
            f"[{item.result.value}] {who(item.org_id)}: invoice {number} "
            f"{format_money(item.amount, item.currency)}, attempt {item.attempt}{when}"
            + (f": {item.detail}" if item.detail else ""),
            width=WIDTH, subsequent_indent="    ", break_on_hyphens=False)
    for entry in report.errors:  # an org that could not be read: none of its invoices are listed
        lines += textwrap.wrap(f"FAILED {who(entry['org_id'])}: {entry['error']}", width=WIDTH,
                               subsequent_indent="    ", break_on_hyphens=False)
    if report.items or report.errors:
        lines.append("")
    counts = ", ".join(f"{n} {r}" for r, n in report.counts.items() if n)
    charged = ", ".join(format_money(a, c) for c, a in sorted(report.charged().items()))
    failed = len(report.errors)
    lines.append(f"Invoices: {counts or 'none open'}"
                 + (f"; {'charged' if report.apply else 'due'}: {charged}" if charged else "")
                 + (f"; {failed} org{'' if failed == 1 else 's'} could not be read"
                    if failed else ""))
    return "\n".join(lines)
