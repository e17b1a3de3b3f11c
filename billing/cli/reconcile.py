"""`billing reconcile [--apply] [--org ID] [--check KIND ...] [--shard I/N] [--json]`: find
what is inconsistent and, with --apply, repair it.

A dry run (the default) only reads: it lists each finding and what --apply would do. --apply
holds the shard's lease, repairs each finding in its own transaction and records the run in
`reconciliation_runs`; rerunning is safe. What each check repairs: billing.reconciliation.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from billing.adapters import ids
from billing.cli import connect, exit_codes, invoice_run, signals
from billing.cli.output import ProgressBar, emit_json, table
from billing.reconciliation import Check, Finding, ReconcileReport, parse_shard

CHECKS = [c.value for c in Check]
HEADERS = ("CHECK", "ORG", "COUNT", "SUMMARY", "ACTION", "RESULT")
DRY_RUN_NOTICE = "dry run: nothing changed; add --apply to repair"


def add_parser(commands: Any, *, parents: list[argparse.ArgumentParser]) -> None:
    """`reconcile` under `commands` (the top-level subparsers)."""
    cmd = commands.add_parser(
        "reconcile", help="find (and with --apply repair) inconsistencies", parents=parents,
        description=" ".join((__doc__ or "").split("\n\n")[1].split()),
    )
    cmd.add_argument("--apply", action="store_true",
                     help="repair what can be repaired (default: a dry run that changes nothing)")
    cmd.add_argument("--org", metavar="ID", help="only this org (24-hex id)")
    cmd.add_argument("--check", dest="checks", action="append", choices=CHECKS, metavar="KIND",
                     help=f"only this check, repeatable: {', '.join(CHECKS)} (default: all)")
    cmd.add_argument("--shard", default="0/1", metavar="I/N",
                     help="only the orgs of shard I of N, to split the work between processes "
                          "(default: 0/1, every org)")
    cmd.add_argument("--json", action="store_true",
                     help="print one JSON document (the report and exit_code) on stdout")
    cmd.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    # Arguments are checked before anything connects: a typo costs no database round trip.
    shard = parse_shard(args.shard)
    org_id = None if args.org is None else str(ids.object_id(args.org, name="--org"))
    database = args.database or invoice_run.DEFAULT_DATABASE
    with (connect.stripe_gateway() as gateway,
          connect.billing_for(args.uri, database, notices=sys.stderr, gateway=gateway) as billing):
        with ProgressBar(sys.stderr, "repairing" if args.apply else "checking") as bar:
            report = billing.reconciliation.run(apply=args.apply, org_id=org_id,
                                                checks=args.checks, shard=shard, progress=bar)
        # Shown before the embedded database (if any) takes its seconds to stop.
        return show(report, as_json=args.json)


def show(report: ReconcileReport, *, as_json: bool) -> int:
    """Print the report (table or one JSON document); returns the exit code."""
    code = exit_codes.for_report(report)
    signals.outcome_shown()
    if as_json:
        emit_json({**report.as_json(), "exit_code": code}, sys.stdout)
    else:
        print(render(report), flush=True)
        if not report.apply:
            print(DRY_RUN_NOTICE, file=sys.stderr, flush=True)
    return code


def render(report: ReconcileReport) -> str:
    index, total = report.shard
    mode = "apply" if report.apply else "dry run"
    lines = [f"Reconciliation ({mode}) of {report.orgs_scanned} org(s), shard {index}/{total}: "
             f"conversations that ended before {report.boundary:%Y-%m-%d} should be billed", ""]
    if report.findings:
        lines += [table(HEADERS, [_row(f) for f in report.findings], right=(2,)), ""]
    counts = ", ".join(f"{n} {check}" for check, n in report.counts.items())
    lines.append(f"Findings: {counts}; {len(report.outstanding)} outstanding")
    lines += [f"FAILED {f.check.value} (org {f.org_id}): {f.error}"
              for f in report.findings if f.error]
    if report.apply and report.outstanding:
        lines.append("Reported findings need a person; failed repairs may be retried: "
                     "rerunning is safe.")
    return "\n".join(lines)


def _row(f: Finding) -> list[str]:
    return [f.check.value, f.org_id, str(f.count), f.summary, f.action, f.result]
