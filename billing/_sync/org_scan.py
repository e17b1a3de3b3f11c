# Generated from billing/_async by tools/synchro.py: do not edit.
"""The org scan of a long run (collect, reconcile): the orgs of its shard, its lease renewed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bson import ObjectId

from billing._sync.repositories.org_pages import count_orgs_in_scope, orgs_in_id_order
from billing._sync.run_lease import RunLease
from billing._sync.unit_of_work import Direct
from billing.reconcile_findings import in_shard


def orgs_of_run(direct: Direct, only: ObjectId | None, shard: tuple[int, int],
                      lease: RunLease | None, *, total: int | None = None
                      ) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """`(done, total, org document)` for each org of the shard (or the one org), in `_id`
    order, the lease renewed before each; `done` counts every org passed, in the shard or not,
    against `total` (counted here unless the caller already has it), for progress."""
    if total is None:
        total = count_orgs_in_scope(direct, only)
    done = 0
    for doc in orgs_in_id_order(direct, only):
        done += 1
        if not in_shard(doc["_id"], shard):
            continue
        if lease is not None:
            lease.renew()
        yield done, total, doc
