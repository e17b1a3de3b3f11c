# Generated from billing/_async by tools/synchro.py: do not edit.
"""Orgs read a page at a time by `_id`: the scan of every long run (reconcile, collect)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bson import ObjectId

from billing._sync.unit_of_work import Direct
from billing.adapters import schema

ORG_PAGE = 100  # orgs per read: client memory depends on the page, not on the data size


def count_orgs_in_scope(direct: Direct, only: ObjectId | None) -> int:
    """How many orgs a run goes through, for its progress: every org from the collection's
    metadata (no scan), or whether the one org exists."""
    if only is None:
        return direct.estimated_count(schema.ORGS)
    return direct.count(schema.ORGS, {"_id": only})


def orgs_in_id_order(direct: Direct, only: ObjectId | None
                           ) -> Iterator[dict[str, Any]]:
    """Every org's document (or the one org's) in `_id` order, `ORG_PAGE` per read on the
    `_id` index; each page read after the previous one's last id, so orgs created meanwhile
    further on are seen and none twice."""
    last: ObjectId | None = None
    while only is None or last is None:  # one org: one page
        page_filter: dict[str, Any] = ({} if only is None else {"_id": only}) \
            if last is None else {"_id": {"$gt": last}}
        page = direct.find(schema.ORGS, page_filter, hint="_id_", limit=ORG_PAGE)
        if not page:
            return
        for doc in page:
            last = doc["_id"]
            yield doc
