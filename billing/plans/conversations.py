"""Plans for recording conversations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from bson import ObjectId

from billing.adapters import queries, schema
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
        if not _same_times(existing, external_id, (started_at, ended_at), prefix=""):
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
    for held in existing:  # found by external_id: one string each, or the contract is broken
        if not isinstance(held.get("external_id"), str):
            raise _broken(held, held.get("external_id"), prefix="")
    known = {held["external_id"]: held for held in existing}
    out: list[Doc] = []
    writes: list[Write] = []
    for index, item in enumerate(items):
        found = known.get(item.external_id) if item.external_id is not None else None
        if found is not None:
            if not _same_times(found, item.external_id, item.span, prefix=f"items[{index}]: "):
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


def _same_times(found: Doc, external_id: str | None, span: tuple[datetime, datetime], *,
                prefix: str) -> bool:
    """Whether the conversation recorded under `external_id` has these times; StateConflict
    when the host wrote it breaking the data contract (billing could neither compare nor
    return it)."""
    if not queries.conforms(found) or not isinstance(found.get("external_id"), str):
        raise _broken(found, external_id, prefix=prefix)
    return (found["started_at"], found["ended_at"]) == span


def _broken(found: Doc, external_id: object, *, prefix: str) -> StateConflict:
    return StateConflict(
        f"{prefix}external_id {external_id!r} is held by conversation {found.get('_id')}, "
        "which breaks the data contract (a missing or non-date time, an org_id or line_item_id "
        "of the wrong type, an external_id that is not one string): fix or delete that "
        "document, then repeat; nothing was written")
