"""A collect/reconcile run interrupted (SIGTERM/Ctrl-C as KeyboardInterrupt in the sync code the
CLI runs; a cancelled task in async) while the lease's claim is answered: the server took the
lease, the run never learnt it, and the lease is not released."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

import billing._async.run_lease as async_lease
import billing._sync.run_lease as sync_lease
from billing import Billing
from billing.gateways import FakeGateway
from tests.support.drivers import LEASE, NOW, Clock, Driver

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", ["collect", "reconcile"])
def test_sync_run_interrupted_as_it_takes_its_lease_releases_it(
        client: Any, db_name: str, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    b = Billing(client, database=db_name, gateway=FakeGateway())
    b.setup()
    b.orgs.create(name="Acme", currency="usd", per_conversation=50, per_started_minute=10)
    real = sync_lease.claim_run_lease

    def claim(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)  # the server applied it...
        raise KeyboardInterrupt  # ...and SIGTERM (signals.Stopped) lands as the reply comes
    monkeypatch.setattr(sync_lease, "claim_run_lease", claim)
    run = b.collections.run if kind == "collect" else b.reconciliation.run
    with pytest.raises(KeyboardInterrupt):
        run(apply=True)
    monkeypatch.setattr(sync_lease, "claim_run_lease", real)
    print(list(b.database.reconciliation_leases.find({})))
    # README: SIGTERM is handled like Ctrl-C: the run releases its lease. The next run may start.
    run(apply=True)


def test_async_collect_cancelled_as_it_takes_its_lease_releases_it(
        mongo_uri: str, db_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    d = Driver("async", mongo_uri, db_name, clock=Clock(NOW), payment_lease_seconds=LEASE)
    try:
        d("orgs.create", name="Acme", currency="usd", per_conversation=50, per_started_minute=10)
        real = async_lease.claim_run_lease

        async def claim(*args: Any, **kwargs: Any) -> Any:
            out = await real(*args, **kwargs)
            asyncio.current_task().cancel()  # the caller's timeout, as the reply comes
            await asyncio.sleep(0)
            return out
        monkeypatch.setattr(async_lease, "claim_run_lease", claim)

        async def go() -> Any:
            try:
                return await d.b.collections.run(apply=True)
            except BaseException as exc:  # noqa
                return exc
        assert isinstance(d.loop.run_until_complete(go()), asyncio.CancelledError)
        monkeypatch.setattr(async_lease, "claim_run_lease", real)
        d("collections.run", apply=True)  # LeaseNotAcquired for the next 300 s
    finally:
        d.close()
