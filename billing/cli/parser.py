"""The command line grammar: `billing [--uri URI] [--database NAME] COMMAND ...`."""

from __future__ import annotations

import argparse
from typing import NoReturn

from billing.cli import (
    collect,
    credit_note_create,
    demo,
    events,
    exit_codes,
    invoice_bill_late,
    invoice_run,
    invoice_show,
    reconcile,
    setup,
)


class UsageError(Exception):
    """The arguments do not parse; `main` reports it with exit code USAGE."""


class _Parser(argparse.ArgumentParser):
    # argparse would print the usage and exit 2 itself; raising lets `main` print one line (and
    # the JSON error document with --json) like every other error.
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see: {self.prog} --help)")


def build() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="billing",
        description="Usage billing on MongoDB: set up the schema, seed a demo, run invoice "
                    "runs, reconcile.",
        epilog=exit_codes.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _connection_options(parser, default=None)
    # The same options after the command too (`billing invoice run --database X`, as
    # scripts/invoice-run passes them); SUPPRESS keeps a value given before the command.
    common = argparse.ArgumentParser(add_help=False)
    _connection_options(common, default=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    setup.add_parser(commands, parents=[common])
    demo.add_parser(commands, parents=[common])
    invoice = commands.add_parser(
        "invoice", help="invoice runs, one invoice, late usage",
        description="Invoice runs, one invoice, and conversations billed late.")
    actions = invoice.add_subparsers(dest="action", required=True, metavar="ACTION")
    invoice_run.add_parser(actions, parents=[common])
    invoice_show.add_parser(actions, parents=[common])
    invoice_bill_late.add_parser(actions, parents=[common])
    reconcile.add_parser(commands, parents=[common])
    credit_note_create.add_parser(commands, parents=[common])
    collect.add_parser(commands, parents=[common])
    events.add_parser(commands, parents=[common])
    return parser


def _connection_options(parser: argparse.ArgumentParser, *, default: str | None) -> None:
    parser.add_argument(
        "--uri", metavar="URI", default=default,
        help="MongoDB connection string of a replica set or sharded cluster (default: "
             "$MONGODB_URI, else the embedded database in $BILLING_DATA_DIR). Prefer "
             "MONGODB_URI: a password in --uri is visible in the process list",
    )
    parser.add_argument(
        "--database", metavar="NAME", default=default,
        help=f"database name (default: {invoice_run.DEFAULT_DATABASE}; "
             f"demo: {demo.DEFAULT_DATABASE})",
    )
