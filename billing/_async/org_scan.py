"""The org scan of a long run (collect, reconcile): the orgs of its shard, its lease renewed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from bson import ObjectId

from billing._async.repositories.org_pages import count_orgs_in_scope, orgs_in_id_order
from billing._async.run_lease import AsyncRunLease
from billing._async.unit_of_work import AsyncDirect
from billing.reconcile_findings import in_shard


async def orgs_of_run(direct: AsyncDirect, only: ObjectId | None, shard: tuple[int, int],
                      lease: AsyncRunLease | None, *, total: int | None = None
                      ) -> AsyncIterator[tuple[int, int, dict[str, Any]]]:
    """`(done, total, org document)` for each org of the shard (or the one org), in `_id`
    order, the lease renewed before each; `done` counts every org passed, in the shard or not,
    against `total` (counted here unless the caller already has it), for progress."""
    if total is None:
        total = await count_orgs_in_scope(direct, only)
    done = 0
    async for doc in orgs_in_id_order(direct, only):
        done += 1
        if not in_shard(doc["_id"], shard):
            continue
        if lease is not None:
            await lease.renew()
        yield done, total, doc
