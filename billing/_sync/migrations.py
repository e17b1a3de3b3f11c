# Generated from billing/_async by tools/synchro.py: do not edit.
"""Schema versions: the data contract installed by `setup`, and the migrations between versions.

Each migration brings existing data from the version before it to its own. It must be safe to
run again and to interrupt at any point (an interrupted `setup` simply runs it again), so each
is a set of conditional updates that match only documents still in the old shape. It is
recorded in `schema_migrations` (`_id` = its version) only after it finished.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from billing.adapters import schema

Db = Any  # the pymongo database (async or sync)


def _baseline(db: Db) -> int:
    """Version 1: the collections, validators and indexes of the data contract (set up by
    `setup` itself before any migration runs); no documents to change."""
    return 0


def _confirming_payments(db: Db) -> int:
    """Version 2: a payment attempt confirmed by an earlier version was left `pending` with its
    intent recorded, so a `pending` attempt with an intent may have been confirmed: it becomes
    `confirming`, which is settled from Stripe's state before any new charge."""
    result = db[schema.PAYMENTS].update_many(
        {"status": "pending", "intent_id": {"$type": "string"}},
        {"$set": {"status": "confirming"}})
    return int(result.modified_count)


def _credit_notes(db: Db) -> int:
    """Version 3: credit notes. `setup` creates the `credit_notes` collection with its unique
    indexes (one note per org and request id, one per org and number) before migrations run;
    invoices and orgs written before it read `amount_credited` and `credit_note_seq` as 0, so no
    document changes. The version is what makes a database without those indexes refuse to
    run until `setup` has installed them."""
    return 0


def _external_id_lookup(db: Db) -> int:
    """Version 4: an index for `record`'s lookup by external_id (`setup` builds it before
    migrations run); no document changes. The version makes a database without it refuse to
    run until `setup` has built it: without it, each `record` scans the collection on
    SecantusDB."""
    return 0


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Db], int]  # returns how many documents it changed


MIGRATIONS = (
    Migration(1, "the data contract: collections, validators and indexes", _baseline),
    Migration(2, "payments: pending attempts with an intent become confirming",
              _confirming_payments),
    Migration(3, "credit notes: the credit_notes collection and its unique indexes",
              _credit_notes),
    Migration(4, "conversations: an index for the lookup by external_id", _external_id_lookup),
)
VERSION = MIGRATIONS[-1].version
