"""Audit records of runs (`reconciliation_runs`, `collection_runs`): written outside every
repair or payment transaction, so a failed run is still recorded."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing._async.unit_of_work import AsyncDirect
from billing.adapters import schema

Doc = dict[str, Any]


async def open_reconciliation_run(direct: AsyncDirect, doc: Doc) -> None:
    await direct.insert_one(schema.RECONCILIATION_RUNS, doc)


async def abandon_reconciliation_run(direct: AsyncDirect, run_id: ObjectId, fields: Doc) -> None:
    """Close a record its run left `running` (the run died): only while it is still running."""
    await direct.update_one(schema.RECONCILIATION_RUNS, {"_id": run_id, "status": "running"},
                            {"$set": fields})


async def close_reconciliation_run(direct: AsyncDirect, run_id: ObjectId, fields: Doc) -> None:
    await direct.update_one(schema.RECONCILIATION_RUNS, {"_id": run_id}, {"$set": fields})


async def abandon_collection_run(direct: AsyncDirect, run_id: ObjectId, fields: Doc) -> None:
    """Close a record its run left `running` (the run died): only while it is still running."""
    await direct.update_one(schema.COLLECTION_RUNS, {"_id": run_id, "status": "running"},
                            {"$set": fields})


async def record_collection_run(direct: AsyncDirect, run_id: ObjectId, doc: Doc) -> None:
    """The collect run's record as it stands (created by its first write)."""
    await direct.update_one(schema.COLLECTION_RUNS, {"_id": run_id}, {"$set": doc}, upsert=True)
