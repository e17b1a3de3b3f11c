# Generated from billing/_async by tools/synchro.py: do not edit.
"""Audit records of runs (`reconciliation_runs`, `collection_runs`): written outside every
repair or payment transaction, so a failed run is still recorded."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing._sync.unit_of_work import Direct
from billing.adapters import schema

Doc = dict[str, Any]


def open_reconciliation_run(direct: Direct, doc: Doc) -> None:
    direct.insert_one(schema.RECONCILIATION_RUNS, doc)


def abandon_reconciliation_run(direct: Direct, run_id: ObjectId, fields: Doc) -> None:
    """Close a record its run left `running` (the run died): only while it is still running."""
    direct.update_one(schema.RECONCILIATION_RUNS, {"_id": run_id, "status": "running"},
                            {"$set": fields})


def close_reconciliation_run(direct: Direct, run_id: ObjectId, fields: Doc) -> None:
    direct.update_one(schema.RECONCILIATION_RUNS, {"_id": run_id}, {"$set": fields})


def abandon_collection_run(direct: Direct, run_id: ObjectId, fields: Doc) -> None:
    """Close a record its run left `running` (the run died): only while it is still running."""
    direct.update_one(schema.COLLECTION_RUNS, {"_id": run_id, "status": "running"},
                            {"$set": fields})


def record_collection_run(direct: Direct, run_id: ObjectId, doc: Doc) -> None:
    """The collect run's record as it stands (created by its first write)."""
    direct.update_one(schema.COLLECTION_RUNS, {"_id": run_id}, {"$set": doc}, upsert=True)
