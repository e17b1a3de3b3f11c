"""Billing events for the host: read an org's events after a number, or follow all of them.

Two ways to consume, both documented in the README:
- `poll(org_id, after=n)` returns the org's events numbered after `n`, in commit order, and the
  number to pass next; storing that number in the same transaction as the host's own effect
  gives exactly-once processing.
- `watch(resume_after=token)` follows every org's events as they commit (a change stream) and
  yields each with the resume token to store; after a restart it resumes right after the last
  token stored, losing and repeating nothing that the stream still holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from billing._async.repositories.events import event_docs_after, watch_event_inserts
from billing._async.service_context import AsyncContext
from billing._async.unit_of_work import AsyncChangeStream
from billing.adapters import ids
from billing.domain.models import Event
from billing.errors import InvalidInput, shown

MAX_PAGE = 1000
MAX_SEQ = 2**63 - 1  # event numbers are stored as int64


@dataclass(frozen=True)
class EventPage:
    events: list[Event]
    next_after: int  # pass as `after` next time (unchanged when there was nothing new)


@dataclass(frozen=True)
class WatchedEvent:
    event: Event
    resume_token: Mapping[str, Any]  # store it; pass as `resume_after` to continue from here


def event_of(doc: Mapping[str, Any]) -> Event:
    return Event(id=str(doc["_id"]), org_id=str(doc["org_id"]), seq=doc["seq"],
                 type=doc["type"], data=dict(doc.get("data") or {}),
                 created_at=doc["created_at"])


class AsyncEvents:
    def __init__(self, ctx: AsyncContext) -> None:
        self._ctx = ctx

    async def poll(self, org_id: Any, *, after: Any = 0, limit: Any = 100) -> EventPage:
        """The org's events numbered after `after` (at most `limit`, 1 to 1000), oldest first.
        Events are numbered 1, 2, 3... per org in commit order, without gaps, so a host that
        stores `next_after` with its own effect processes each event exactly once."""
        oid = ids.object_id(org_id, name="org_id")
        if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= MAX_SEQ:
            raise InvalidInput(f"after must be an event number (an int from 0 to {MAX_SEQ}), "
                               f"got {shown(after)}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be an int from 1 to {MAX_PAGE}, got {shown(limit)}")
        docs = await event_docs_after(self._ctx.uow.direct, oid, after, limit=limit)
        events = [event_of(d) for d in docs]
        return EventPage(events, events[-1].seq if events else after)

    async def watch(self, *, resume_after: Mapping[str, Any] | None = None,
                    org_id: Any = None) -> AsyncEventStream:
        """Follow events as they commit (all orgs, or one): the stream is open when this
        returns, so nothing committed after it is missed; from `resume_after` (a token it
        yielded), it continues right after that event. Needs a replica set or sharded cluster
        (change streams); a token older than the oplog's window raises DatabaseError: poll
        each org from its last number instead. Close it (or use it in `with`) when done."""
        oid = None if org_id is None else ids.object_id(org_id, name="org_id")
        if resume_after is not None and not isinstance(resume_after, Mapping):
            raise InvalidInput(f"resume_after must be a token from watch(), got "
                               f"{shown(resume_after)}")
        return AsyncEventStream(await watch_event_inserts(
            self._ctx.uow.direct, org_id=oid, resume_after=resume_after))


class AsyncEventStream:
    """Events as they commit, each with its resume token; iterate, then close."""

    def __init__(self, stream: AsyncChangeStream) -> None:
        self._stream = stream

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> WatchedEvent:
        change = await self._stream.next()  # errors translated
        return WatchedEvent(event_of(change["fullDocument"]), change["_id"])

    async def close(self) -> None:
        await self._stream.close()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
