"""`billing invoice run --period YYYY-MM [--org ID] [--json]`: invoice a closed month.

Every org (or one) is billed for the month, one at a time; an org's failure is reported and the
run goes on. Rerunning is safe: orgs already invoiced come back as `already_invoiced`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from billing import Billing
from billing.adapters import ids
from billing.cli import advice, connect, exit_codes, invoice_run_table, signals
from billing.cli.output import ProgressBar, emit_json
from billing.domain.periods import Period
from billing.invoice_runs import RunSummary

DEFAULT_DATABASE = "billing"


def add_parser(actions: Any, *, parents: list[argparse.ArgumentParser]) -> None:
    """`run` under `actions` (the subparsers of `invoice`)."""
    run = actions.add_parser(
        "run", help="invoice every org (or one) for a closed month", parents=parents,
        description=(__doc__ or "").split("\n\n")[1].replace("\n", " "),
    )
    run.add_argument("--period", required=True, metavar="YYYY-MM",
                     help="the calendar month to bill (UTC); it must have ended")
    run.add_argument("--org", metavar="ID", help="bill only this org (24-hex id)")
    run.add_argument("--json", action="store_true",
                     help="print one JSON document (the run summary and exit_code) on stdout")
    run.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    # Arguments are checked before anything connects: a typo costs no database round trip.
    period = Period.month(args.period)
    org_id = None if args.org is None else str(ids.object_id(args.org, name="--org"))
    database = connect.database_option(args.database, DEFAULT_DATABASE)
    with connect.billing_for(args.uri, database, notices=sys.stderr) as billing:
        with advice.unknown_org(org_id, database):
            summary = run_with_progress(billing, period, org_id=org_id)
        names = {} if args.json else invoice_run_table.org_names(billing, summary)
        # Shown before the embedded database (if any) takes its seconds to stop.
        return show(summary, names, as_json=args.json)


def run_with_progress(billing: Billing, period: Period, *, org_id: str | None = None
                      ) -> RunSummary:
    with ProgressBar(sys.stderr, f"invoicing {period.label}") as bar:
        return billing.invoices.run_period(period, org_id=org_id, progress=bar)


def show(summary: RunSummary, names: dict[str, str], *, as_json: bool,
         extra: dict[str, Any] | None = None) -> int:
    """Print the summary (table or one JSON document); returns the exit code."""
    code = exit_codes.for_summary(summary)
    signals.outcome_shown()
    if as_json:
        emit_json({**summary.as_json(), **(extra or {}), "exit_code": code}, sys.stdout)
    else:
        print(invoice_run_table.render(summary, names), flush=True)
    return code
