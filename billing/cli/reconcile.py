"""`billing reconcile [--apply] [--org ID] [--check KIND ...] [--shard I/N] [--json]`: find
what is inconsistent and, with --apply, repair it.

A dry run (the default) only reads: it lists each finding and what --apply would do. --apply
holds the shard's lease, repairs each finding in its own transaction and records the run in
`reconciliation_runs`; rerunning is safe. What each check repairs: billing.reconcile_findings.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Mapping
from typing import Any

from billing.adapters import ids
from billing.cli import connect, exit_codes, invoice_run, invoice_run_table, signals
from billing.cli.output import ProgressBar, emit_json
from billing.reconcile_findings import SAMPLE_IDS, Check, ReconcileReport, parse_shard

CHECKS = [c.value for c in Check]
WIDTH = 100  # the longest line printed for people (a terminal, a mail, a ticket)
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
    database = connect.database_option(args.database, invoice_run.DEFAULT_DATABASE)
    with (connect.stripe_gateway() as gateway,
          connect.billing_for(args.uri, database, notices=sys.stderr, gateway=gateway) as billing):
        with ProgressBar(sys.stderr, "repairing" if args.apply else "checking") as bar:
            report = billing.reconciliation.run(apply=args.apply, org_id=org_id,
                                                checks=args.checks, shard=shard, progress=bar)
        names = {} if args.json else invoice_run_table.names_of(
            billing, {f.org_id for f in report.findings})
        # Shown before the embedded database (if any) takes its seconds to stop.
        return show(report, as_json=args.json, names=names)


def show(report: ReconcileReport, *, as_json: bool,
         names: Mapping[str, str] | None = None) -> int:
    """Print the report (findings for people, or one JSON document); returns the exit code."""
    code = exit_codes.for_report(report)
    signals.outcome_shown()
    if as_json:
        emit_json({**report.as_json(), "exit_code": code}, sys.stdout)
    else:
        print(render(report, names or {}), flush=True)
        if not report.apply:
            print(DRY_RUN_NOTICE, file=sys.stderr, flush=True)
    return code


def render(report: ReconcileReport, names: Mapping[str, str] | None = None) -> str:
    """The report in lines of at most WIDTH characters: a heading, one block per finding (what,
    which org by name, a sample of ids with the count, the action and its result), counts."""
    names = names or {}
    index, total = report.shard
    mode = "apply" if report.apply else "dry run"
    lines = _wrap(f"Reconciliation ({mode}) of {plural(report.orgs_scanned, 'org')}, shard "
                  f"{index}/{total}: conversations that ended before "
                  f"{report.boundary:%Y-%m-%d} should be billed") + [""]
    for f in report.findings:
        org = names.get(f.org_id)
        who = f"{org} (org {f.org_id})" if org else f"org {f.org_id}"
        lines += _wrap(f"[{f.result}] {f.check.value}: {who}")
        lines += _wrap(f.summary, indent="    ")
        if f.ids and f.check is not Check.WRONG_TOTALS:
            shown = f.ids[:SAMPLE_IDS]
            more = f" (first {len(shown)} of {f.count})" if f.count > len(shown) else ""
            lines += _wrap(f"ids{more}: {', '.join(shown)}", indent="    ")
        lines += _wrap(f"action: {f.action}", indent="    ")
        if f.error:
            lines += _wrap(f"error: {f.error}", indent="    ")
        lines.append("")
    counts = ", ".join(f"{n} {check}" for check, n in report.counts.items())
    lines += _wrap(f"Findings: {counts}; {len(report.outstanding)} outstanding")
    if report.apply and report.outstanding:
        lines += _wrap("Reported findings need a person; failed repairs may be retried: "
                       "rerunning is safe.")
    return "\n".join(lines)


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _wrap(text: str, *, indent: str = "") -> list[str]:
    return textwrap.wrap(" ".join(text.split()), width=WIDTH, initial_indent=indent,
                         subsequent_indent=indent + "  ", break_long_words=True,
                         break_on_hyphens=False) or [indent.rstrip()]
