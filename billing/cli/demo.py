"""`billing demo [--json]`: seed sample orgs and a month of conversations, then invoice it.

The demo database (default `billing_demo`) is dropped and reseeded on every run, so the demo
can be run again and again and prints the same invoices for the same month. It refuses a
database that holds anything it did not write.
"""

from __future__ import annotations

import argparse
import random
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from billing import Billing, Org
from billing.adapters import schema
from billing.cli import connect, invoice_run
from billing.domain.periods import Period, last_closed_month
from billing.errors import InvalidInput

DEFAULT_DATABASE = "billing_demo"
MARKER = "billing_demo"  # a collection holding one document: "this database is the demo's"

# name, currency, price per conversation and per started minute (minor units), conversations
ORGS = (
    ("Acme Support Inc.", "usd", 25, 8, 140),
    ("Brandt Logistik GmbH", "eur", 20, 6, 100),
    ("Kyoto Dental Clinic", "jpy", 30, 12, 60),
)


def add_parser(commands: Any, *, parents: list[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser("demo", help="seed sample data, then invoice the last closed month",
                               description=(__doc__ or "").replace("`", ""), parents=parents)
    demo.add_argument("--json", action="store_true",
                      help="print one JSON document (the run summary and exit_code) on stdout")
    demo.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    period = last_closed_month()
    database = connect.database_option(args.database, DEFAULT_DATABASE)
    with connect.billing_for(args.uri, database, notices=sys.stderr,
                             require_schema=False) as billing:
        reset(billing)
        billing.setup()
        orgs, conversations = seed(billing, period)
        if not args.json:
            print(f"Seeded database {database!r} (dropped and reseeded on every demo run): "
                  f"{len(orgs)} orgs, {conversations} conversations that ended in {period.label}, "
                  "and 1 malformed one.\n", flush=True)
        summary = invoice_run.run_with_progress(billing, period)
        seeded = {"database": database, "orgs": len(orgs), "conversations": conversations,
                  "malformed": 1}
        return invoice_run.show(summary, {o.id: o.name for o in orgs}, as_json=args.json,
                                extra={"seeded": seeded})


def reset(billing: Billing) -> None:
    """Drop the demo database, refusing one with collections the demo did not create."""
    db = billing.database
    names = db.list_collection_names()
    if names and MARKER not in names:
        raise InvalidInput(
            f"database {db.name!r} holds data that `billing demo` did not write, and the demo "
            f"drops its database: choose another with --database (default {DEFAULT_DATABASE})")
    db.client.drop_database(db.name)
    db[MARKER].insert_one({"_id": "demo", "note": "written by `billing demo`, which drops "
                           "and reseeds this database on every run"})


def seed(billing: Billing, period: Period) -> tuple[list[Org], int]:
    """Three orgs and their conversations, inserted as the host backend writes them, plus one
    malformed conversation (started_at is not a date), which the run skips and reports."""
    rng = random.Random(f"billing-demo-{period.label}")  # same month, same data
    now = datetime.now(UTC)
    orgs, docs = [], []
    for name, currency, per_conversation, per_minute, count in ORGS:
        org = billing.orgs.create(name=name, currency=currency, per_conversation=per_conversation,
                                  per_started_minute=per_minute)
        orgs.append(org)
        docs += [_conversation(org.id, period, rng, now) for _ in range(count)]
    malformed = _conversation(orgs[0].id, period, rng, now)
    malformed["started_at"] = "yesterday, roughly"
    conversations = len(docs)
    billing.database[schema.CONVERSATIONS].insert_many([*docs, malformed])
    return orgs, conversations


def _conversation(org_id: str, period: Period, rng: random.Random, now: datetime
                  ) -> dict[str, Any]:
    """Started anywhere in the period; lasting 5 s to 1 h, mostly a few minutes."""
    room = int((period.end - period.start).total_seconds()) - 2 * 3600
    started = period.start + timedelta(seconds=rng.randrange(room))
    duration = timedelta(seconds=min(max(rng.lognormvariate(5.3, 0.9), 5.0), 3600.0))
    ended = started + timedelta(milliseconds=int(duration.total_seconds() * 1000))
    return {"_id": ObjectId(), "org_id": ObjectId(org_id), "started_at": started,
            "ended_at": ended, "line_item_id": None, "recorded_at": now}
