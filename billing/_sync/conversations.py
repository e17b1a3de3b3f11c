# Generated from billing/_async by tools/synchro.py: do not edit.
"""Conversations: written by the host backend, or through `record`; billing owns `line_item_id`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bson import ObjectId

from billing._sync.repositories.conversations import (
    conversation_doc_now,
    conversation_of_external_id,
    conversations_of_external_ids,
)
from billing._sync.repositories.orgs import org_doc_in
from billing._sync.service_context import Context
from billing._sync.unit_of_work import Transaction
from billing.adapters import documents, ids
from billing.domain.inputs import NewConversation
from billing.domain.models import Conversation
from billing.errors import BillingError, InvalidInput, NotFound, shown
from billing.plans.conversations import batch_plan, conversation_plan

MAX_BATCH = 1000  # conversations per record_many call: one transaction, MongoDB's guidance


class Conversations:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def record(
        self, org_id: Any, *, started_at: Any, ended_at: Any, external_id: Any = None
    ) -> Conversation:
        """Record a finished conversation, unbilled. Idempotent per `external_id`: recording the
        same external_id again returns the first document and writes nothing."""
        oid = ids.object_id(org_id, name="org_id")
        data = NewConversation.parse(started_at=started_at, ended_at=ended_at,
                                     external_id=external_id)

        def work(txn: Transaction) -> dict[str, Any]:
            org = org_doc_in(txn, oid)
            existing = None
            if data.external_id is not None:
                existing = conversation_of_external_id(txn, oid, data.external_id)
            plan = conversation_plan(
                org, existing, org_id=oid, started_at=data.started_at, ended_at=data.ended_at,
                external_id=data.external_id, now=self._ctx.now(), make_id=ObjectId,
            )
            txn.write(plan.writes)
            return plan.result

        return documents.conversation(self._ctx.uow.run(work))

    def record_many(self, org_id: Any, items: Sequence[Mapping[str, Any]]
                          ) -> list[Conversation]:
        """Record up to 1,000 finished conversations in one transaction, for backends that
        ingest in bulk; each item is a mapping with `started_at`, `ended_at` and optionally
        `external_id`, as for `record`. All or nothing: a bad item raises InvalidInput (or
        StateConflict for an external_id recorded with other times) naming its index, and
        nothing is written. Idempotent per `external_id`: a repeated batch writes nothing and
        returns the documents first recorded. Returns the conversations in the items' order."""
        oid = ids.object_id(org_id, name="org_id")
        if isinstance(items, str | bytes | Mapping) or not isinstance(items, Sequence):
            raise InvalidInput(f"items must be a list of mappings, got {shown(items)}")
        if not 1 <= len(items) <= MAX_BATCH:
            raise InvalidInput(f"items must hold 1 to {MAX_BATCH} conversations, got "
                               f"{len(items)}: split larger batches")
        parsed = [self._item(index, item) for index, item in enumerate(items)]
        keys = sorted({p.external_id for p in parsed if p.external_id is not None})

        def work(txn: Transaction) -> list[dict[str, Any]]:
            org = org_doc_in(txn, oid)
            existing = conversations_of_external_ids(txn, oid, keys)
            plan = batch_plan(org, existing, parsed, org_id=oid, now=self._ctx.now(),
                              make_id=ObjectId)
            txn.write(plan.writes)
            return plan.result

        return [documents.conversation(doc) for doc in self._ctx.uow.run(work)]

    @staticmethod
    def _item(index: int, item: Any) -> NewConversation:
        if not isinstance(item, Mapping):
            raise InvalidInput(f"items[{index}] must be a mapping with started_at and ended_at, "
                               f"got {shown(item)}; nothing was written")
        unknown = set(item) - {"started_at", "ended_at", "external_id"}
        if unknown:
            raise InvalidInput(f"items[{index}] has unknown fields {sorted(map(str, unknown))}; "
                               "nothing was written")
        try:
            return NewConversation.parse(started_at=item.get("started_at"),
                                         ended_at=item.get("ended_at"),
                                         external_id=item.get("external_id"))
        except BillingError as exc:
            raise type(exc)(f"items[{index}]: {exc.message}; nothing was written") from None

    def get(self, org_id: Any, conversation_id: Any) -> Conversation:
        oid = ids.object_id(org_id, name="org_id")
        cid = ids.object_id(conversation_id, name="conversation_id")
        doc = conversation_doc_now(self._ctx.uow.direct, oid, cid)
        if doc is None:
            raise NotFound(f"no conversation {cid} in org {oid}")
        return documents.conversation(doc)
