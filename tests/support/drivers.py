"""One scenario, two clients: drive `Billing` or `AsyncBilling` through the same sync calls.

    d = Driver("async", uri, db_name, clock=clock)
    d("invoices.pay", org.id, inv.id)         # awaited on the driver's own event loop
    d.during("create_intent", "invoices.void", org.id, inv.id)  # runs inside that gateway call

With the async flavour every call runs on one event loop owned by the driver, so an action
registered with `during` runs inside the awaited gateway call, as another task would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient, MongoClient

from billing import AsyncBilling, Billing
from billing.gateways import AsyncFakeGateway, FakeGateway

FLAVOURS = ("sync", "async")
NOW = datetime(2026, 11, 20, tzinfo=UTC)  # where the `d` fixture's clock starts
LEASE = 60  # seconds: the `d` fixture's payment lease


class Clock:
    """A clock tests move by hand (timestamps at millisecond precision)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Driver:
    def __init__(self, flavour: str, uri: str, database: str, *, clock: Clock,
                 **options: Any) -> None:
        self.flavour = flavour
        self.clock = clock
        self.sync_client: MongoClient[Any] = MongoClient(uri, timeoutMS=20_000)
        self.fake: Any
        if flavour == "sync":
            self.loop = None
            self.fake = FakeGateway()
            self.b: Any = Billing(self.sync_client, database=database, gateway=self.fake,
                                  webhook_secret="whsec_test", clock=clock, **options)
        else:
            self.loop = asyncio.new_event_loop()
            self.fake = AsyncFakeGateway()
            self.async_client: AsyncMongoClient[Any] = AsyncMongoClient(uri, timeoutMS=20_000)
            self.b = AsyncBilling(self.async_client, database=database, gateway=self.fake,
                                  webhook_secret="whsec_test", clock=clock, **options)
        self.db = Billing(self.sync_client, database=database).database  # for assertions
        self("setup")

    def _target(self, path: str) -> Callable[..., Any]:
        target: Any = self.b
        for part in path.split("."):
            target = getattr(target, part)
        return target  # type: ignore[no-any-return]

    def __call__(self, path: str, *args: Any, **kwargs: Any) -> Any:
        result = self._target(path)(*args, **kwargs)
        if self.loop is not None:
            return self.loop.run_until_complete(result)
        return result

    def during(self, gateway_method: str, path: str, *args: Any, **kwargs: Any) -> list[Any]:
        """Call `path` inside the next `gateway_method` call; its result or error lands in the
        returned list."""
        return self.during_with(gateway_method, path, lambda: args, **kwargs)

    def during_with(self, gateway_method: str, path: str, make_args: Callable[[], tuple[Any, ...]],
                    **kwargs: Any) -> list[Any]:
        """`during`, with the arguments made when the call comes (from what exists by then)."""
        out: list[Any] = []
        target = self._target(path)
        if self.loop is None:
            def action() -> None:
                try:
                    out.append(target(*make_args(), **kwargs))
                except Exception as exc:  # noqa: BLE001 - handed to the test
                    out.append(exc)
            self.fake.during(gateway_method, action)
        else:
            async def async_action() -> None:
                try:
                    out.append(await target(*make_args(), **kwargs))
                except Exception as exc:  # noqa: BLE001 - handed to the test
                    out.append(exc)
            self.fake.during(gateway_method, async_action)
        return out

    def during_do(self, gateway_method: str, action: Callable[[], None]) -> None:
        """Run a plain function (e.g. move the clock) inside the next `gateway_method` call."""
        if self.loop is None:
            self.fake.during(gateway_method, action)
        else:
            async def async_action() -> None:
                action()
            self.fake.during(gateway_method, async_action)

    def close(self) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(self.async_client.close())
            self.loop.close()
        self.sync_client.close()
