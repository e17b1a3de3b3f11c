"""Plans for recording conversations."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bson import ObjectId

from billing.adapters import schema
from billing.adapters.writes import Write
from billing.errors import StateConflict
from billing.plans import Doc, Plan, require_org


def conversation_plan(
    org_doc: Doc | None, existing: Doc | None, *, org_id: ObjectId, started_at: datetime,
    ended_at: datetime, external_id: str | None, now: datetime, make_id: Callable[[], ObjectId],
) -> Plan[Doc]:
    """Record a conversation; an `external_id` already recorded returns the first one."""
    require_org(org_doc, org_id)
    if existing is not None:
        if (existing["started_at"], existing["ended_at"]) != (started_at, ended_at):
            raise StateConflict(
                f"external_id {external_id!r} was already recorded with other times: "
                "use a new external_id for a different conversation"
            )
        return Plan(existing)
    doc: Doc = {"_id": make_id(), "org_id": org_id, "started_at": started_at,
                "ended_at": ended_at, "line_item_id": None, "recorded_at": now}
    if external_id is not None:
        doc["external_id"] = external_id
    return Plan(doc, [Write(schema.CONVERSATIONS, "insert", {}, doc)])
