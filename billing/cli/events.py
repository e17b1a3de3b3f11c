"""`billing events tail --org ID [--after N] [--limit N] [--json]` and
`billing events tail --follow [--org ID] [--json]`: the billing events the host is told about.

Without --follow, the org's events numbered after N (default: its last --limit events), oldest
first. With --follow, every org's events (or one org's) as they commit, until interrupted;
with --json one JSON line per event, each with its resume token.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from billing.adapters import ids
from billing.cli import advice, connect, exit_codes, invoice_run, signals
from billing.cli.output import emit_json
from billing.domain.models import Event
from billing.errors import InvalidInput

LIMIT = 20  # events shown by default


def add_parser(commands: Any, *, parents: list[argparse.ArgumentParser]) -> None:
    events = commands.add_parser("events", help="billing events", description="Billing events.")
    actions = events.add_subparsers(dest="action", required=True, metavar="ACTION")
    tail = actions.add_parser(
        "tail", help="print an org's events, or follow every org's", parents=parents,
        description=" ".join((__doc__ or "").split("\n\n")[1].split()))
    tail.add_argument("--org", metavar="ID", help="the org (24-hex id); needed without --follow")
    tail.add_argument("--after", type=int, metavar="N", default=None,
                      help="only events numbered after N (default: the last --limit)")
    tail.add_argument("--limit", type=int, metavar="N", default=None,
                      help=f"at most N events, 1 to 1000 (default {LIMIT})")
    tail.add_argument("--follow", action="store_true",
                      help="keep printing events as they commit, until interrupted")
    tail.add_argument("--json", action="store_true",
                      help="JSON: one document (or, with --follow, one line per event)")
    tail.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    org_id = None if args.org is None else str(ids.object_id(args.org, name="--org"))
    if org_id is None and not args.follow:
        raise InvalidInput("events tail needs --org ID (or --follow for every org)")
    if args.follow and (args.after is not None or args.limit is not None):
        raise InvalidInput("--after and --limit page through an org's events without --follow; "
                           "--follow prints events as they commit from now on")
    limit = LIMIT if args.limit is None else args.limit
    if not 1 <= limit <= 1000:
        raise InvalidInput(f"--limit must be from 1 to 1000, got {limit}")
    database = connect.database_option(args.database, invoice_run.DEFAULT_DATABASE)
    with connect.billing_for(args.uri, database, notices=sys.stderr) as billing:
        latest = None
        if org_id is not None:  # an unknown org exits 2, also with --follow (never a silent wait)
            with advice.unknown_org(org_id, database):
                latest = billing.orgs.get(org_id).event_seq
        if args.follow:
            with billing.events.watch(org_id=org_id) as stream:
                for watched in stream:
                    if args.json:
                        emit_json({**_doc(watched.event),
                                   "resume_token": json.loads(json.dumps(
                                       watched.resume_token, default=str))}, sys.stdout)
                    else:
                        print(_line(watched.event), flush=True)
            return exit_codes.OK
        assert org_id is not None and latest is not None
        after = args.after
        if after is None:  # the last --limit events
            after = max(0, latest - limit)
        page = billing.events.poll(org_id, after=after, limit=limit)
        signals.outcome_shown()
        if args.json:
            emit_json({"org_id": org_id, "events": [_doc(e) for e in page.events],
                       "next_after": page.next_after, "exit_code": exit_codes.OK}, sys.stdout)
        else:
            print("\n".join(_line(e) for e in page.events) or "no events", flush=True)
        return exit_codes.OK


def _doc(event: Event) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(event.model_dump_json())
    return doc


def _line(event: Event) -> str:
    data = ", ".join(f"{k}={v}" for k, v in event.data.items()
                     if k in ("invoice_id", "number", "total", "amount_paid", "currency",
                              "payment_id", "failure_code", "check"))
    return f"{event.created_at:%Y-%m-%d %H:%M:%S} org {event.org_id} #{event.seq} " \
           f"{event.type}: {data}"
