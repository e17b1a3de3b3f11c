"""Plans for recording conversations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from bson import ObjectId

from billing.adapters import schema
from billing.adapters.writes import Write
from billing.domain.inputs import NewConversation
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


def batch_plan(
    org_doc: Doc | None, existing: Sequence[Doc], items: Sequence[NewConversation], *,
    org_id: ObjectId, now: datetime, make_id: Callable[[], ObjectId],
) -> Plan[list[Doc]]:
    """Record a batch: items whose `external_id` is already recorded (or repeated earlier in
    the batch) return that document; the rest are inserted. The same external_id with other
    times raises StateConflict naming the item's index, and nothing is written."""
    require_org(org_doc, org_id)
    known = {doc["external_id"]: doc for doc in existing}
    out: list[Doc] = []
    writes: list[Write] = []
    for index, item in enumerate(items):
        found = known.get(item.external_id) if item.external_id is not None else None
        if found is not None:
            if (found["started_at"], found["ended_at"]) != item.span:
                raise StateConflict(
                    f"items[{index}]: external_id {item.external_id!r} was already recorded "
                    "with other times: use a new external_id for a different conversation; "
                    "nothing in this batch was written")
            out.append(found)
            continue
        doc: Doc = {"_id": make_id(), "org_id": org_id, "started_at": item.started_at,
                    "ended_at": item.ended_at, "line_item_id": None, "recorded_at": now}
        if item.external_id is not None:
            doc["external_id"] = item.external_id
            known[item.external_id] = doc
        out.append(doc)
        writes.append(Write(schema.CONVERSATIONS, "insert", {}, doc))
    return Plan(out, writes)
