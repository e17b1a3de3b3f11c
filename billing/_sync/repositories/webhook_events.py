# Generated from billing/_async by tools/synchro.py: do not edit.
"""Processed webhook events, as reconciliation reads them."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from billing._sync.unit_of_work import Direct
from billing.adapters import schema


def mismatched_webhooks_of_org(direct: Direct, org_id: ObjectId
                                     ) -> list[dict[str, Any]]:
    """Webhooks of the org that disagreed with our attempt (`detail`, `processed_at`), on the
    `{org_id, outcome}` index."""
    return direct.find(schema.WEBHOOK_EVENTS, {"org_id": org_id, "outcome": "mismatch"},
                             sort=(), projection={"detail": 1, "processed_at": 1})
