# Generated from billing/_async by tools/synchro.py: do not edit.
"""The outbox of billing events: read an org's after a number, or follow them as they commit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bson import ObjectId

from billing._sync.unit_of_work import ChangeStream, Direct
from billing.adapters import schema

Doc = dict[str, Any]


def event_docs_after(direct: Direct, org_id: ObjectId, after: int, *,
                           limit: int) -> list[Doc]:
    """The org's events numbered after `after`, oldest first, at most `limit`."""
    return direct.find(schema.EVENTS, {"org_id": org_id, "seq": {"$gt": after}},
                             sort=(("seq", 1),), limit=limit)


def watch_event_inserts(direct: Direct, *, org_id: ObjectId | None = None,
                              resume_after: Mapping[str, Any] | None = None
                              ) -> ChangeStream:
    """A change stream of the events inserted (all orgs', or one's) from now or the token."""
    match: Doc = {"operationType": "insert"}
    if org_id is not None:
        match["fullDocument.org_id"] = org_id
    return direct.watch(schema.EVENTS, [{"$match": match}],
                              resume_after=None if resume_after is None else dict(resume_after))
