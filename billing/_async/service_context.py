"""What every service shares: the unit of work, the clock and the limits."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from billing._async.gateway import AsyncPaymentGateway
from billing._async.unit_of_work import AsyncUnitOfWork
from billing.errors import ConfigurationError
from billing.plans.collections import DEFAULT_SCHEDULE
from billing.plans.events import DEFAULT_RETENTION, Outbox, outbox


@dataclass(frozen=True)
class AsyncContext:
    uow: AsyncUnitOfWork
    now: Callable[[], datetime]
    max_docs_per_transaction: int
    gateway_or_none: AsyncPaymentGateway | None = None
    payment_lease_seconds: float = 60.0
    webhook_secret: str | None = None
    collection_schedule: tuple[int, ...] = DEFAULT_SCHEDULE
    event_retention: timedelta = DEFAULT_RETENTION

    def outbox(self, org: Mapping[str, Any] | None) -> Outbox | None:
        """The outbox of a transaction that read `org` (its document), or None without one."""
        return None if org is None else outbox(org, now=self.now(),
                                               retention=self.event_retention)

    @property
    def gateway(self) -> AsyncPaymentGateway:
        return self.require_gateway()

    def require_gateway(self) -> AsyncPaymentGateway:
        """The gateway; ConfigurationError if Billing was built without one."""
        if self.gateway_or_none is None:
            raise ConfigurationError(
                "no payment gateway: pass gateway=StripeGateway(stripe.StripeClient(key)) "
                "to Billing(...)")
        return self.gateway_or_none
