# Generated from billing/_async by tools/synchro.py: do not edit.
"""The lease a long run holds on its shard: one document per (scope, shard) with holder and expiry.

`reconcile --apply` (scope "shard"/"org", as before) and `collect --apply` (scope "collect")
each take one, so two runs of the same kind do not work on the same orgs at once; a lease that
expired (its holder died) is taken over. Correctness never rests on it: every repair and every
payment is guarded by the documents it reads.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from billing._sync.repositories.leases import (
    claim_run_lease,
    release_run_lease,
    renew_run_lease,
    run_lease_of,
)
from billing._sync.service_context import Context
from billing._sync.unit_of_work import Duplicate
from billing.errors import BillingError, LeaseNotAcquired


def lease_key(shard: tuple[int, int], oid: ObjectId | None, *, kind: str = "") -> str:
    """`shard:I/N` or `org:ID` for reconciliation; the same with `collect:` in front for
    collection runs."""
    key = f"org:{oid}" if oid is not None else f"shard:{shard[0]}/{shard[1]}"
    return f"{kind}:{key}" if kind else key


class RunLease:
    """One `reconciliation_leases` document: acquire, renew after every org, release."""

    def __init__(self, ctx: Context, run_id: str, key: str, seconds: float, *,
                 what: str = "reconciliation run") -> None:
        self._ctx = ctx
        self._holder = run_id
        self._key = key
        self._seconds = seconds
        self._what = what
        self._held = False
        # The run whose expired lease this one took over (holders are run ids), to close its
        # audit record; None when the lease was free or its holder is no run id.
        self.taken_from: ObjectId | None = None

    def acquire(self) -> None:
        now = self._ctx.now()
        direct = self._ctx.uow.direct
        # Held from before the claim is sent: a run interrupted while the server takes it
        # (a signal, a cancelled task) still releases it (release deletes only its own).
        self._held = True
        try:
            before = claim_run_lease(direct, self._key, self._holder, self._fields(now),
                                           now)
        except Duplicate:  # held by another run and not expired
            self._held = False
            held = run_lease_of(direct, self._key) or {}
            raise LeaseNotAcquired(
                f"another {self._what} ({held.get('holder')} on {held.get('host')}, "
                f"pid {held.get('pid')}) holds the lease {self._key} until "
                f"{held.get('expires_at')}; let it finish, or retry after that") from None
        holder = before.get("holder") if before is not None else None
        if holder != self._holder and isinstance(holder, str) and ObjectId.is_valid(holder):
            self.taken_from = ObjectId(holder)

    def renew(self) -> None:
        now = self._ctx.now()
        if not renew_run_lease(self._ctx.uow.direct, self._key, self._holder,
                                     self._fields(now)):
            self._held = False
            raise LeaseNotAcquired(
                f"lost the lease {self._key} (it expired and another run took it); this run "
                "stopped, its work so far stands")

    def release(self) -> None:
        if self._held:
            try:
                release_run_lease(self._ctx.uow.direct, self._key, self._holder)
            except BillingError:
                pass  # it expires on its own
            self._held = False

    def _fields(self, now: datetime) -> dict[str, Any]:
        return {"holder": self._holder, "expires_at": now + timedelta(seconds=self._seconds),
                "renewed_at": now, "host": socket.gethostname(), "pid": os.getpid()}
