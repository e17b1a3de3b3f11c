"""`billing setup [--check | --shard] [--json]`: install or check the data contract.

Creates the collections, validators and indexes that are missing, updates validators that
differ, and applies pending migrations in order, each recorded and safe to rerun or interrupt;
prints what it changed. With --check it writes nothing and exits 1 when anything differs
(a missing or different index or validator, pending migrations, an unknown newer version).
Every other command refuses a database that `setup` has not brought to this version (exit 3).
With --shard, on a mongos, it then shards the tenant collections by org_id (docs/scaling.md).
In --json, "current" says whether the database now matches this version's data contract: true
after setup (it made every change or failed), and with --check true only when nothing differs.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from billing.cli import connect, exit_codes
from billing.cli.invoice_run import DEFAULT_DATABASE
from billing.cli.output import emit_json
from billing.schema_report import SchemaReport


def add_parser(commands: Any, *, parents: list[argparse.ArgumentParser]) -> None:
    setup = commands.add_parser(
        "setup", help="create or update collections, validators, indexes; apply migrations",
        parents=parents, description=(__doc__ or "").split("\n\n")[1].replace("\n", " "))
    mode = setup.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                       help="report what differs from the data contract, change nothing; "
                            "exit 1 if anything does")
    mode.add_argument("--shard", action="store_true",
                       help="after setup, shard the tenant collections by org_id (on a mongos "
                            "only; idempotent)")
    setup.add_argument("--json", action="store_true",
                       help="print one JSON document (the changes, current and exit_code) on "
                            "stdout")
    setup.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    database = connect.database_option(args.database, DEFAULT_DATABASE)
    with connect.billing_for(args.uri, database, notices=sys.stderr,
                             require_schema=False) as billing:
        report = billing.schema_drift() if args.check else billing.setup(shard=args.shard)
    return show(report, database, check=args.check, as_json=args.json)


def show(report: SchemaReport, database: str, *, check: bool, as_json: bool) -> int:
    code = exit_codes.OK if not check or report.current else exit_codes.FINDINGS_REMAIN
    if as_json:
        emit_json({"database": database, "mode": "check" if check else "apply",
                   **report.as_json(), "exit_code": code}, sys.stdout)
        return code
    if check:
        head = (f"database {database}: schema version {report.version}, current"
                if report.current else
                f"database {database}: schema version {report.version} of {report.target}; "
                f"setup would:")
    else:
        head = (f"database {database}: schema version {report.version}, nothing to change"
                if not report.changes else
                f"database {database}: now at schema version {report.version}:")
    print("\n".join([head, *(f"  - {change}" for change in report.changes)]), flush=True)
    return code
